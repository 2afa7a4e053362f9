"""Regenerate tests/data/results/: real ``audit flaky`` / ``audit mutate`` results on sample_project.

Run by hand, never in CI (minutes of CPU):

    PYTHONPATH=. python tests/data/make_results.py [--force]

The store, report and review tests read these files instead of hand-written dicts, so they see
exactly what the engines emit (``to_json()`` of the results model). A private git copy of
sample_project goes through four states, each audited through ``audit.api`` with a fixed seed
and small budgets, with record=False (the tests record them, with dates):

  A  the project as shipped                                 flaky-A (attributed), mutate-A
  B  a test weakened (a gradient assert deleted)            mutate-B
  C  a flaky test fixed, a flaky test with a hostile id added   flaky-C (attributed)
  D  a refactor of predict_proba(), mutated --since C       mutate-D-since (partial)
     and mutated fully with two operators only                mutate-D-few

Each result is written as soon as it exists, and an existing file is kept unless --force, so an
interrupted run carries on where it stopped. ``states.json`` records what each state changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SAMPLE = REPO / "sample_project"
OUT = HERE / "results"

TEST_PATHS = ["tests/test_augment.py", "tests/test_functional.py", "tests/test_evaluate.py", "tests/test_model.py"]
PATHS_TO_MUTATE = ["tinyclf"]
# The planted flaky tests in TEST_PATHS: mutation runs pin every seed, so they are left out.
DESELECT = ["tests/test_augment.py::test_gaussian_noise_is_small",
            "tests/test_augment.py::test_mixup_lambda_not_degenerate",
            "tests/test_augment.py::test_frame_dropout_keeps_most_frames",
            "tests/test_augment.py::test_frame_dropout_labels_are_kept",
            "tests/test_model.py::test_predictions_repeatable"]
FLAKY = {"budget": 85.0, "seed": 7, "attribute": True}   # one budget for detection and attribution
MUTATE = {"operators": "ml"}
FEW_OPERATORS = "drop_detach,change_dim"

WEAKENED = "tests/test_functional.py::test_consistency_loss_blocks_gradient_to_target"
FIXED = "tests/test_augment.py::test_frame_dropout_keeps_most_frames"
HOSTILE_TEST = '''

@pytest.mark.parametrize("label", ['<script>alert("x")</script>|`pipe`'])
def test_frame_dropout_labels_are_kept(label):
    kept = frame_dropout([label] * 10, p=0.1)
    assert len(kept) == 10
'''


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True).stdout.strip()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise SystemExit(f"{old!r} not in {path}: sample_project changed, update make_results.py")
    path.write_text(text.replace(old, new, 1))


def _configure(root: Path) -> None:
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text().replace('test_paths = ["tests"]', f"test_paths = {json.dumps(TEST_PATHS)}")
    start = text.index("deselect = [")
    text = text[:start] + f"deselect = {json.dumps(DESELECT)}" + text[text.index("]", start) + 1:]
    text = text.replace('paths_to_mutate = ["tinyclf"]', f"paths_to_mutate = {json.dumps(PATHS_TO_MUTATE)}")
    pyproject.write_text(text)
    (root / ".gitignore").write_text("reports/\n__pycache__/\nmutants/\n.pytest_cache/\n")


def _save(name: str, result) -> None:
    data = result.to_json()
    from audit.model.schema import validate

    validate(data)
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT / name}.json", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="regenerate results that already exist")
    args = parser.parse_args()
    from audit import api

    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ml-audit-results-"))
    os.environ["ML_AUDIT_STATE"] = str(work / "state")
    root = work / "tinyclf"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "mutants", "reports"))
    _configure(root)
    _git(root, "init", "-q", "-b", "main")
    commits = {}

    def commit(step: str, message: str) -> None:
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", message)
        commits[step] = _git(root, "rev-parse", "HEAD")

    def wanted(name: str) -> bool:
        return args.force or not (OUT / f"{name}.json").exists()

    commit("A", "tinyclf 0.3.1")
    if wanted("flaky-A"):
        _save("flaky-A", api.flaky(root, record=False, **FLAKY))
    if wanted("mutate-A"):
        _save("mutate-A", api.mutate(root, record=False, **MUTATE))

    _edit(root / "tests" / "test_functional.py", "    assert target.grad is None\n", "")
    commit("B", "simplify the consistency loss test")
    if wanted("mutate-B"):
        _save("mutate-B", api.mutate(root, record=False, **MUTATE))

    _edit(root / "tests" / "test_augment.py", "    assert len(kept) >= 17\n", "    assert len(kept) >= 10\n")
    with (root / "tests" / "test_augment.py").open("a") as f:
        f.write(HOSTILE_TEST)
    commit("C", "frame dropout: a looser bound, and labels")
    if wanted("flaky-C"):
        _save("flaky-C", api.flaky(root, record=False, **FLAKY))

    _edit(root / "tinyclf" / "functional.py", "    return torch.softmax(logits / temperature, dim=-1)\n",
          "    scaled = logits / temperature\n    return torch.softmax(scaled, dim=-1)\n")
    commit("D", "predict_proba: name the scaled logits")
    if wanted("mutate-D-since"):
        _save("mutate-D-since", api.mutate(root, record=False, **MUTATE, since=commits["C"]))
    if wanted("mutate-D-few"):
        _save("mutate-D-few", api.mutate(root, record=False, operators=FEW_OPERATORS))

    states = {"test_paths": TEST_PATHS, "paths_to_mutate": PATHS_TO_MUTATE, "deselect": DESELECT,
              "flaky": FLAKY, "mutate": MUTATE, "weakened": WEAKENED, "fixed": FIXED,
              "hostile": "tests/test_augment.py::test_frame_dropout_labels_are_kept"
                         '[<script>alert("x")</script>|`pipe`]',
              "steps": {"A": "as shipped", "B": f"deleted `assert target.grad is None` from {WEAKENED}",
                        "C": f"{FIXED}: bound 17 -> 10 (fixed); added test_frame_dropout_labels_are_kept",
                        "D": "functional.predict_proba: the scaled logits in a local; mutated --since C, "
                             f"and fully with only {FEW_OPERATORS}"}}
    (OUT / "states.json").write_text(json.dumps(states, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return _check(states)


def _check(states: dict) -> int:
    """Do the results show what the tests rely on? Flaky detection is statistical: say what is missing."""
    def flaky(name: str) -> set[str]:
        data = json.loads((OUT / f"{name}.json").read_text())
        return {t["nodeid"] for t in data["tests"] if t["verdict"] == "flaky"}

    def survived(name: str) -> set[tuple[str, str]]:
        data = json.loads((OUT / f"{name}.json").read_text())
        return {(m["operator"], m["function"]) for m in data["mutants"] if m["status"] == "survived"}

    weakened = ("drop_detach", "consistency_loss")
    missing = [what for what, ok in (
        (f"{states['fixed']} flaky in flaky-A", states["fixed"] in flaky("flaky-A")),
        (f"{states['fixed']} not flaky in flaky-C", states["fixed"] not in flaky("flaky-C")),
        (f"{states['hostile']} flaky in flaky-C", states["hostile"] in flaky("flaky-C")),
        ("a test flaky in both flaky-A and flaky-C", bool(flaky("flaky-A") & flaky("flaky-C"))),
        ("drop_detach in consistency_loss killed in mutate-A", weakened not in survived("mutate-A")),
        ("drop_detach in consistency_loss survived in mutate-B", weakened in survived("mutate-B")),
        ("a survivor in mutate-D-since", bool(survived("mutate-D-since"))),
    ) if not ok]
    for what in missing:
        print(f"missing: {what}; regenerate that result (delete it, or raise its budget)", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
