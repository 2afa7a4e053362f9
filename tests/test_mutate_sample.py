"""``audit mutate`` on sample_project against its ground truth (expected.toml).

Every ML operator whose pattern is in the code makes at least one mutant (checked on mutant
generation, the worker's own code path, without running tests). One real run, scoped to the
operators that expected.toml names (minutes, hence slow), checks that each planted weakness
leaves its mutant surviving and each strong test kills its mutant, that the project's files are
byte-identical afterwards, and that the Stryker report validates.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest

from audit.api import configure
from audit.mutate.bridge import generate
from audit.mutate.registry import select
from audit.mutate.engine import run_mutate
from audit.report import stryker

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SAMPLE = Path(__file__).resolve().parent.parent / "sample_project"
SCHEMA = json.loads((Path(__file__).parent / "data" / "stryker" / "mutation-testing-report-schema.json").read_text())

# A pattern in the source that each ML operator acts on (checked independently of the operators).
PATTERNS = {
    "drop_detach": r"\.detach\(\)", "drop_no_grad": r"no_grad\(\)|inference_mode\(\)",
    "drop_zero_grad": r"\.zero_grad\(", "drop_backward": r"\.backward\(", "drop_optimizer_step": r"opt\w*\.step\(",
    "drop_scheduler_step": r"sched\w*\.step\(", "flip_requires_grad": r"requires_grad",
    "drop_item": r"\+= .*\.item\(\)", "drop_eval": r"\.eval\(\)", "drop_train": r"\.train\(\)",
    "swap_train_eval": r"\.(eval|train)\(\)", "change_dim": r"\.(sum|mean|softmax|log_softmax|argmax)\(.*dim=",
    "change_axes": r"\.(transpose|permute|unsqueeze|squeeze)\(-?\d", "flip_keepdim": r"keepdim=|\.(sum|mean)\(dim=",
    "swap_reduction": r"reduction", "softmax_before_cross_entropy": r"cross_entropy\(",
    "change_seed": r"manual_seed\(|\.seed\(", "drop_seed": r"manual_seed\(|\.seed\(",
    "flip_shuffle": r"shuffle", "flip_drop_last": r"drop_last", "lower_precision": r"float32|\.float\(\)",
    "scale_hyperparam": r"\b(lr|eps|weight_decay)\s*[=:]",
}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).replace("'", '"')


def _matches(mutant, mutation: str) -> bool:
    """Does the mutant's diff show ``before -> after`` (whitespace and quote style ignored)?"""
    if not mutation or "->" not in mutation:
        return True
    before, after = (_norm(part) for part in mutation.split("->", 1))
    lines = mutant.diff.splitlines()[2:]
    removed = _norm("".join(ln[1:] for ln in lines if ln.startswith("-")))
    added = _norm("".join(ln[1:] for ln in lines if ln.startswith("+")))
    return before in removed and after in added


def _candidates(result, target: str, operator: str):
    path, _, function = target.partition("::")
    return [m for m in result.mutants if m.path == path and m.operator == operator
            and (m.function == function or m.function.split(".")[-1] == function.split(".")[-1])]


def _pick(candidates, mutation: str):
    """The mutants an expected.toml entry means: its ``mutation`` text only tells apart several.

    (A single candidate stands even when the text differs: for 2-D logits ``dim=-1 -> dim=0`` and
    our same-sign ``dim=-1 -> dim=-2`` are the same axis, and the same-sign rule is what keeps
    1-D twins out.)
    """
    if len(candidates) <= 1:
        return candidates
    return [m for m in candidates if _matches(m, mutation)] or candidates


@pytest.fixture(scope="module")
def expected():
    path = SAMPLE / "expected.toml"
    if not path.exists():
        pytest.skip("sample_project/expected.toml is not there yet")
    return tomllib.loads(path.read_text())


@pytest.fixture(scope="module")
def run(expected, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDIT_MUTATE_CACHE", str(tmp_path_factory.mktemp("mutate-cache")))
        return _run(expected)


def _run(expected):
    before = _tree(SAMPLE)
    cfg = configure(SAMPLE)
    operators = sorted({e["operator"] for kind in ("weakness", "strong") for e in expected.get(kind, [])})
    # planted flaky tests give no stable verdict; the config may not list them yet
    flaky = [e["nodeid"] for e in expected.get("flaky", [])]
    deselect = list(dict.fromkeys(cfg.mutate.deselect + flaky))
    result = run_mutate(configure(SAMPLE, "mutate", operators=",".join(operators), deselect=deselect))
    return result, before


def test_every_ml_operator_with_a_pattern_in_the_code_makes_a_mutant():
    code, made = [], set()
    for path in sorted((SAMPLE / "tinyclf").rglob("*.py")):
        text = path.read_text()
        code.append(text)
        _, records = generate(str(path.relative_to(SAMPLE)), text, select("ml"))
        made |= {r["operator"] for r in records}
    code = "\n".join(code)
    missing = [name for name, pattern in PATTERNS.items() if re.search(pattern, code) and name not in made]
    assert not missing, missing


@pytest.mark.slow
def test_planted_weaknesses_survive_and_strong_tests_kill(run, expected):
    result, _ = run
    problems = []
    for entry in expected.get("weakness", []):
        found = _pick(_candidates(result, entry["target"], entry["operator"]), entry.get("mutation", ""))
        if not found:
            problems.append(f"no {entry['operator']} mutant at {entry['target']} ({entry.get('mutation')})")
        elif not any(m.status == entry.get("expect", "survived") for m in found):
            problems.append(f"weakness {entry['target']} {entry['operator']}: {[m.status for m in found]}")
    for entry in expected.get("strong", []):
        found = _pick(_candidates(result, entry["target"], entry["operator"]), entry.get("mutation", ""))
        want = entry.get("expect", "killed")
        if not found:
            problems.append(f"no {entry['operator']} mutant at {entry['target']}")
        elif not all(m.status == want for m in found):
            problems.append(f"strong {entry['target']} {entry['operator']}: "
                            f"{[(m.id, m.status) for m in found]}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_sample_files_are_byte_identical_and_stryker_validates(run):
    result, before = run
    assert _tree(SAMPLE) == before
    jsonschema.validate(stryker.to_stryker(result), SCHEMA)
    assert result.score is not None and 0 < result.score < 100
