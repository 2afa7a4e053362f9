"""``audit mutate`` on the layouts real projects have, with no configuration (real mutmut runs).

A src layout with its tests inside the package, pytest settings in ``setup.cfg``, no
``[tool.audit]`` at all: the first and the second (cached) run both work, the tests are never
mutated, and a mutant that breaks pytest itself (an internal error, exit 3) is no kill.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from audit.cli import main
from audit.model.schema import validate
from audit.mutate.bridge import HARNESS_ERROR, _Recorder, verdict_code
from audit.mutate.engine import mutmut_failure

CORE = '''
def scale(values, factor):
    return [v * factor for v in values]


def first_label(labels):
    return labels[0]
'''

# pytest calls this hook for every report: a mutant of first_label that raises in it is an
# INTERNALERROR (exit 3) of pytest, not a failing test
CONFTEST = '''
from toy.core import first_label


def pytest_runtest_logreport(report):
    first_label([report.outcome])
'''

TESTS = '''
from toy.core import scale


def test_scale():
    assert scale([1, 2], 3) == [3, 6]
'''


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_MUTATE_CACHE", str(tmp_path / "cache"))


def test_src_layout_reruns_unconfigured_never_mutates_tests_and_an_internal_error_is_no_kill(tmp_path, capsys):
    project = write(tmp_path / "proj", {
        "src/toy/__init__.py": "", "src/toy/core.py": CORE, "src/toy/tests/__init__.py": "",
        "src/toy/tests/conftest.py": CONFTEST, "src/toy/tests/test_core.py": TESTS,
        "setup.cfg": "[tool:pytest]\naddopts = -rs --strict-markers\n"})
    runs = []
    for name in ("first.json", "second.json"):  # the second run finds mutmut's copies in the scratch folder
        code = main(["mutate", str(project), "--operators", "mutmut_number,mutmut_swap_op", "--no-record",
                     "--json", str(tmp_path / name)])
        out = capsys.readouterr()
        assert code == 0, out.out + out.err
        data = json.loads((tmp_path / name).read_text())
        validate(data)
        runs.append({(m["function"], m["operator"]): (m["status"], m["killed_by"]) for m in data["mutants"]})
    assert runs[0] == runs[1] == {
        ("scale", "mutmut_swap_op"): ("killed", ["src/toy/tests/test_core.py::test_scale"]),
        ("first_label", "mutmut_number"): ("harness_error", []),   # labels[1]: IndexError inside a pytest hook
    }
    assert data["counts"]["harness_error"] == 1 and data["score"] == 100.0  # scored: the one real kill
    broken = next(m for m in data["mutants"] if m["status"] == "harness_error")
    assert broken["reason"].startswith("pytest exit 3 (pytest internal error)")
    assert "without a verdict" in out.out and "pytest exit 3" in out.out


# pytest's internal error in every mutant's run while TOY_BREAK is set (a broken plugin, say)
BREAKING_CONFTEST = '''
import os


def pytest_runtest_logreport(report):
    if os.environ.get("TOY_BREAK") and "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", ""):
        raise RuntimeError("broken harness")
'''


def test_a_mutant_without_a_verdict_is_checked_again_by_the_next_run(tmp_path, monkeypatch):
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": CORE, "tests/test_core.py": TESTS,
                                        "tests/conftest.py": BREAKING_CONFTEST,
                                        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['.']\n"})
    statuses = []
    for broken in ("1", ""):
        monkeypatch.setenv("TOY_BREAK", broken)
        main(["mutate", str(project), "--operators", "mutmut_swap_op", "--no-record", "--json", str(tmp_path / "m.json")])
        statuses.append([m["status"] for m in json.loads((tmp_path / "m.json").read_text())["mutants"]])
    assert statuses == [["harness_error"], ["killed"]]


# A test that passes under plain pytest and fails under mutmut (it sees mutmut's MUTANT_UNDER_TEST),
# the way pytorch-crf's torch.jit.script tests fail on trampolined methods ("Can't redefine method").
UNDER_MUTMUT_TESTS = '''
import os
from toy.core import scale


def test_scale():
    assert scale([1, 2], 3) == [3, 6]


def test_not_under_mutmut():
    assert "MUTANT_UNDER_TEST" not in os.environ
'''


def test_tests_that_cannot_run_under_trampolines_are_deselected_with_a_note_and_the_run_goes_on(tmp_path, capsys):
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": CORE,
                                        "tests/test_core.py": UNDER_MUTMUT_TESTS,
                                        "tox.ini": "[pytest]\naddopts = -q\npythonpath = .\n"})
    code = main(["mutate", str(project), "--operators", "mutmut_swap_op", "--no-record",
                 "--json", str(tmp_path / "m.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads((tmp_path / "m.json").read_text())
    assert [(m["status"], m["killed_by"]) for m in data["mutants"]] == [
        ("killed", ["tests/test_core.py::test_scale"])]
    [note] = data["notes"]
    assert "tests/test_core.py::test_not_under_mutmut" in note and "tests/test_core.py::test_scale" not in note
    assert "test_not_under_mutmut" in " ".join(out.split())


# A suite that imports "the installed library": the test puts an unmutated copy of the package first
# on sys.path, the way torchsde's tests drop sys.path[0] to reach an editable install of the user's tree.
INSTALLED_TESTS = '''
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "installed"))
from toy.core import scale


def test_scale():
    assert scale([1, 2], 3) == [3, 6]
'''


def test_mutants_run_when_the_tests_import_an_installed_copy_of_the_package(tmp_path):
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": CORE,
                                        "installed/toy/__init__.py": "", "installed/toy/core.py": CORE,
                                        "tests/test_core.py": INSTALLED_TESTS,
                                        "pyproject.toml": "[tool.audit.mutate]\npaths_to_mutate = ['toy']\n"})
    assert main(["mutate", str(project), "--operators", "mutmut_swap_op", "--no-record",
                 "--json", str(tmp_path / "m.json")]) == 0
    data = json.loads((tmp_path / "m.json").read_text())
    assert [(m["function"], m["status"], m["killed_by"]) for m in data["mutants"]] == [
        ("scale", "killed", ["tests/test_core.py::test_scale"])]


# A test module that trims sys.path at import, as each of torchsde's drops sys.path[0]: harmless once
# pytest has loaded its plugins, but mutmut's fork server imports the tests before forking each mutant.
TRIMMING_TESTS = '''
import sys

sys.path[:] = [p for p in sys.path if "site-packages" not in p]
from toy.core import scale


def test_scale():
    assert scale([1, 2], 3) == [3, 6]
'''


def test_mutants_run_when_a_test_module_trims_sys_path_at_import(tmp_path):
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": CORE,
                                        "tests/test_core.py": TRIMMING_TESTS,
                                        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['.']\n"})
    assert main(["mutate", str(project), "--operators", "mutmut_swap_op", "--no-record",
                 "--json", str(tmp_path / "m.json")]) == 0
    data = json.loads((tmp_path / "m.json").read_text())
    assert [(m["status"], m["killed_by"], m["reason"]) for m in data["mutants"]] == [
        ("killed", ["tests/test_core.py::test_scale"], "")]


# Parametrize values from a generator, as in torchsde's tests: consumed by the first collection, so
# a second collection of the same module object (mutmut's fork server imported it) finds no test.
GENERATOR_TESTS = '''
import pytest
from toy.core import scale


@pytest.mark.parametrize("factor", (f for f in (2, 3)))
def test_scale(factor):
    assert scale([1, 2], factor) == [factor, 2 * factor]
'''


def test_mutants_run_when_parametrize_values_come_from_a_generator(tmp_path):
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": CORE,
                                        "tests/test_core.py": GENERATOR_TESTS,
                                        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['.']\n"
                                                          "filterwarnings = ['ignore::DeprecationWarning']\n"})
    assert main(["mutate", str(project), "--operators", "mutmut_swap_op", "--no-record",
                 "--json", str(tmp_path / "m.json")]) == 0
    data = json.loads((tmp_path / "m.json").read_text())
    assert [(m["status"], m["killed_by"], m["reason"]) for m in data["mutants"]] == [
        ("killed", ["tests/test_core.py::test_scale[2]"], "")]


CLEAN_RUN_TESTS = '''
import os
from toy.core import scale


def test_scale():
    assert scale([1, 2], 3) == [3, 6]


def test_only_outside_the_clean_run():
    print("the clean run sets MUTANT_UNDER_TEST to", repr(os.environ.get("MUTANT_UNDER_TEST")))
    assert os.environ.get("MUTANT_UNDER_TEST") != ""
'''


def test_a_failing_clean_run_names_the_test_and_shows_its_output_exit_2(tmp_path, capsys):
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": CORE,
                                        "tests/test_core.py": CLEAN_RUN_TESTS,
                                        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['.']\n"})
    assert main(["mutate", str(project), "--operators", "mutmut_swap_op", "--no-record"]) == 2
    err = capsys.readouterr().err
    assert "clean run" in err and "tests/test_core.py::test_only_outside_the_clean_run" in err
    assert "the clean run sets MUTANT_UNDER_TEST to ''" in err   # the test's own output
    assert "Running clean tests" not in err and "\u280b" not in err  # no spinner lines


def recorder(failed=(), collect_errors=(), interrupted=False) -> _Recorder:
    rec = _Recorder()
    rec.failed.update({nodeid: "E   assert False" for nodeid in failed})
    rec.collect_errors.update({where: "ImportError" for where in collect_errors})
    rec.interrupted = interrupted
    return rec


def test_only_a_failed_test_is_a_kill():
    assert verdict_code(1, recorder(failed=["t.py::test_a"])) == 1
    assert verdict_code(0, recorder()) == 0
    assert verdict_code(2, recorder(interrupted=True)) == 2           # Ctrl-C: unchecked, as mutmut says
    for code, rec in [(3, recorder()), (4, recorder()), (2, recorder(collect_errors=["t.py"])),
                      (1, recorder()), (1, recorder(failed=["t.py::x"], collect_errors=["u.py"])), (-1, recorder())]:
        assert verdict_code(code, rec) == HARNESS_ERROR, (code, rec.__dict__)


def test_a_stats_failure_without_a_failing_test_shows_pytests_reason():
    text = mutmut_failure({"phase": "stats", "exit_code": 2, "failed": {},
                           "collect_errors": {"tests/test_x.py": "ImportError: no module named x"},
                           "reason": "pytest exit 2 (interrupted or collection error)\ncollection error in "
                                     "tests/test_x.py:\nImportError: no module named x"}, Path("proj"))
    assert text.startswith("mutmut's stats run")
    assert "ImportError: no module named x" in text and "tests/test_x.py" in text
    usage = mutmut_failure({"phase": "stats", "exit_code": 4, "failed": {}, "collect_errors": {},
                            "reason": "pytest exit 4 (pytest usage error)"}, Path("proj"),
                           "ERROR: unrecognized arguments: --frobnicate")
    assert "pytest usage error" in usage and "unrecognized arguments: --frobnicate" in usage
    empty = mutmut_failure({"phase": "stats", "exit_code": 5, "failed": {}, "collect_errors": {},
                            "reason": "pytest exit 5 (no tests collected)"}, Path("proj"))
    assert empty.startswith("no tests collected in proj")


def test_coverage_from_addopts_is_off_in_mutmuts_runs(tmp_path):
    pytest.importorskip("pytest_cov")
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": CORE, "tests/test_core.py": TESTS,
                                        "pytest.ini": "[pytest]\naddopts = --cov toy --cov-report html\n"
                                                      "pythonpath = .\n"})
    assert main(["mutate", str(project), "--operators", "mutmut_swap_op", "--no-record",
                 "--json", str(tmp_path / "m.json")]) == 0
    data = json.loads((tmp_path / "m.json").read_text())
    assert {m["status"] for m in data["mutants"]} == {"killed"}
    assert not list((tmp_path / "cache").rglob("htmlcov")) and not list((tmp_path / "cache").rglob(".coverage"))



SEED_CORE = '''
import torch


def clip(x):
    return x.clamp(max=1.0)
'''

# Only some seeds draw a value between 1 and 2: the mutant clamp(max=2.0) is caught by luck of the seed.
SEED_TESTS = '''
import torch
from toy.core import clip


def test_clip_bounds_values():
    assert clip(torch.randn(3)).max() <= 1.0
'''


def test_a_kill_that_depends_on_the_seed_is_marked_and_not_scored_as_detected(tmp_path, capsys):
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": SEED_CORE,
                                        "tests/test_core.py": SEED_TESTS,
                                        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['.']\n"})
    main(["mutate", str(project), "--operators", "mutmut_number", "--no-record", "--json", str(tmp_path / "m.json")])
    out = " ".join(capsys.readouterr().out.split())
    data = json.loads((tmp_path / "m.json").read_text())
    validate(data)
    [mutant] = data["mutants"]
    assert mutant["status"] == "seed_dependent", mutant
    assert 1 <= mutant["seed_kills"] < mutant["seed_runs"] == 5
    assert data["counts"]["seed_dependent"] == 1 and data["score"] == 0.0
    assert f"killed (seed-dependent, {mutant['seed_kills']} of 5 seeds)" in out


BRANCH_CORE = '''
def scale(values, factor, device="cpu"):
    if device == "cuda":
        return [v / factor for v in values]
    return [v * factor for v in values]
'''


def test_a_mutant_on_a_line_no_test_executes_is_no_coverage_not_survived(tmp_path):
    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": BRANCH_CORE,
                                        "tests/test_core.py": TESTS,
                                        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['.']\n"})
    assert main(["mutate", str(project), "--operators", "mutmut_swap_op", "--no-record",
                 "--json", str(tmp_path / "m.json")]) == 0
    data = json.loads((tmp_path / "m.json").read_text())
    by_line = sorted((m["line"], m["status"]) for m in data["mutants"])
    assert by_line == [(3, "killed"), (4, "no_coverage"), (5, "killed")], by_line


UNTESTED = '''

def sharpened(values, temperature):
    return [v / temperature for v in values]
'''


def test_changed_code_no_test_reaches_is_no_coverage_and_the_review_blocks_it(tmp_path, capsys):
    import subprocess

    project = write(tmp_path / "proj", {"toy/__init__.py": "", "toy/core.py": CORE, "tests/test_core.py": TESTS,
                                        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['.']\n"
                                                          "[tool.audit.review]\nml_only = false\n"})

    def git(*args):
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=project, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "base")
    ops = ["--operators", "mutmut_swap_op"]
    assert main(["mutate", str(project), *ops]) == 0
    with (project / "toy" / "core.py").open("a") as f:
        f.write(UNTESTED)
    git("commit", "-qam", "an untested function")
    capsys.readouterr()
    # mutmut stops early when no test reaches a mutated function: every mutant there is uncovered
    assert main(["mutate", str(project), *ops, "--since", "main~1", "--json", str(tmp_path / "m.json")]) == 0
    data = json.loads((tmp_path / "m.json").read_text())
    assert [(m["function"], m["status"]) for m in data["mutants"]] == [("sharpened", "no_coverage")]
    assert data["score"] == 0.0
    code = main(["review", str(project), "--baseline", "main~1", "--out", str(tmp_path / "review")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "1 mutants go undetected on lines changed" in out and "no coverage" in out
