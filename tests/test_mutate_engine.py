"""``audit mutate`` end to end on a small synthetic torch project (real mutmut runs)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audit.cli import main
from audit.config import load_config
from audit.model.schema import validate
from audit.mutate import engine

CORE = '''
import torch
import torch.nn.functional as F


def probs(logits):
    return torch.softmax(logits, dim=-1)


@torch.no_grad()
def predict(model, x):
    model.eval()
    return model(x).argmax(dim=1)


def step(model, opt, x, y):
    model.train()
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()
'''

TESTS = '''
import torch
from tinyml.core import predict, probs, step


def model():
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 2))


def test_probs_rows_sum_to_one():
    p = probs(torch.randn(4, 3))
    assert torch.allclose(p.sum(dim=1), torch.ones(4))


def test_predict_is_repeatable():
    m = model().eval()
    x = torch.randn(64, 3)
    assert torch.equal(predict(m, x), predict(m, x))


def test_step_changes_weights():
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = m[0].weight.clone()
    step(m, opt, torch.randn(8, 3), torch.tensor([0, 1] * 4))
    assert not torch.equal(before, m[0].weight)


def test_threads_raised_by_user_code_do_not_hang_forked_children():
    torch.set_num_threads(2)
    a = torch.randn(300, 300)
    assert (a @ a).shape == (300, 300)
'''


# A two-function toy for the fast real runs: each mutant's verdict is known in advance.
TOY_CORE = '''
import torch


def probs(logits):
    return torch.softmax(logits, dim=-1)


def predict(model, x):
    model.eval()
    return model(x).argmax(dim=1)
'''

TOY_TESTS = '''
import time

import torch
from tinyml.core import predict, probs


def test_probs_rows_sum_to_one():
    time.sleep(float(__import__("os").environ.get("TOY_SLEEP", "0")))
    p = probs(torch.randn(4, 3))
    assert torch.allclose(p.sum(dim=1), torch.ones(4))


def test_predict_is_repeatable():
    m = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 2)).eval()
    x = torch.randn(64, 3)
    first = predict(m, x)
    assert first.shape == (64,)
    assert torch.equal(first, predict(m, x))
'''
TOY_OPERATORS = "change_dim,drop_eval,swap_train_eval"


def make_toy(root: Path) -> Path:
    project = make_project(root, TOY_TESTS)
    (project / "tinyml" / "core.py").write_text(TOY_CORE)
    return project


def make_project(root: Path, tests: str = TESTS) -> Path:
    (root / "tinyml").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "tinyml" / "__init__.py").write_text("")
    (root / "tinyml" / "core.py").write_text(CORE)
    (root / "tests" / "test_core.py").write_text(tests)
    (root / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    '''))
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Every file's hash and every folder, so that a new __pycache__ or mutants/ shows too."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_MUTATE_CACHE", str(tmp_path / "cache"))


def test_a_real_run_gives_each_mutant_its_verdict_and_killer(tmp_path):
    project = make_toy(tmp_path / "proj")
    before = tree_digest(project)
    out = tmp_path / "m.json"
    code = main(["mutate", str(project), "--operators", TOY_OPERATORS, "--json", str(out), "--no-record",
                 "--max-children", "2"])
    assert tree_digest(project) == before  # byte-identical, and no file or folder added
    data = json.loads(out.read_text())
    validate(data)
    verdicts = {(m["function"], m["operator"]): (m["status"], m["killed_by"]) for m in data["mutants"]}
    assert verdicts == {
        ("probs", "change_dim"): ("killed", ["tests/test_core.py::test_probs_rows_sum_to_one"]),
        ("predict", "change_dim"): ("killed", ["tests/test_core.py::test_predict_is_repeatable"]),
        ("predict", "swap_train_eval"): ("killed", ["tests/test_core.py::test_predict_is_repeatable"]),
        ("predict", "drop_eval"): ("survived", []),  # the test puts the model in eval mode itself
    }
    assert data["counts"] == {"killed": 3, "survived": 1, "timeout": 0, "no_coverage": 0, "unchecked": 0,
                              "error": 0, "seed_dependent": 0, "harness_error": 0, "score": 75.0}
    # the repeatability test draws (torch.randn): its kills were re-checked under 4 more seeds and held
    assert {(m["seed_kills"], m["seed_runs"]) for m in data["mutants"] if m["function"] == "predict"
            and m["status"] == "killed"} == {(5, 5)}
    assert (data["score"], data["partial"], data["interrupted"]) == (75.0, False, False)
    assert data["by_operator"]["drop_eval"]["survived"] == 1
    assert code == 0


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_exits_130_and_keeps_what_was_measured(tmp_path, stop):
    project = make_toy(tmp_path / "proj")
    out = tmp_path / "m.json"
    cache = tmp_path / "ctrl-c-cache"
    env = {**os.environ, "AUDIT_MUTATE_CACHE": str(cache), "TOY_SLEEP": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "audit", "mutate", str(project), "--operators", TOY_OPERATORS,
                             "--json", str(out), "--no-record", "--max-children", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    killed = []
    while time.monotonic() < deadline and proc.poll() is None and not killed:
        killed = list(cache.glob("*/killers/*"))  # a mutant's verdict is in: mutation testing is under way
        time.sleep(0.1)
    assert killed, "no mutant was killed before the run ended"
    time.sleep(0.5)  # mutmut records that verdict; the slow probs mutant (2 s) runs last and is not done
    proc.send_signal(stop)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    data = json.loads(out.read_text())
    validate(data)
    assert data["interrupted"] is True and data["partial"] is True
    assert len(data["mutants"]) == 4
    assert data["counts"]["unchecked"] >= 1 and data["counts"]["killed"] >= 1
    assert "PARTIAL" in stdout and "not checked" in stdout


@pytest.mark.slow
def test_mutate_end_to_end_scores_records_killers_and_leaves_the_tree_alone(tmp_path):
    project = make_project(tmp_path / "proj")
    before = tree_digest(project)
    out = tmp_path / "out"
    ops = "drop_eval,change_dim,drop_optimizer_step,drop_zero_grad,drop_no_grad"
    code = main(["mutate", str(project), "--operators", ops, "--json", str(out / "m.json"),
                 "--stryker", str(out / "s.json"), "--max-children", "2"])
    after = tree_digest(project)
    assert set(after) - set(before) == {"reports", "reports/audit.sqlite"}  # the history store, nothing else
    assert {path: after[path] for path in before} == before  # byte-identical
    data = json.loads((out / "m.json").read_text())
    from audit.store import Store
    with Store(project / "reports" / "audit.sqlite", create=False) as store:
        assert [run.kind for run in store.runs()] == ["mutate"]
    assert data["schema"] == "ml-audit.mutate/2" and data["partial"] is False
    by = {(m["function"], m["operator"]): m for m in data["mutants"]}
    assert set(by) == {("probs", "change_dim"), ("predict", "drop_no_grad"), ("predict", "drop_eval"),
                       ("predict", "change_dim"), ("step", "drop_zero_grad"), ("step", "drop_optimizer_step")}
    assert by["probs", "change_dim"]["status"] == "killed"
    assert by["probs", "change_dim"]["killed_by"] == ["tests/test_core.py::test_probs_rows_sum_to_one"]
    assert by["step", "drop_optimizer_step"]["status"] == "killed"
    assert by["step", "drop_optimizer_step"]["killed_by"] == ["tests/test_core.py::test_step_changes_weights"]
    # the test puts the model in eval mode itself, and nothing checks the gradient mode or zero_grad
    for key in [("predict", "drop_eval"), ("predict", "drop_no_grad"), ("step", "drop_zero_grad")]:
        assert by[key]["status"] == "survived", by[key]
        assert by[key]["killed_by"] == []
    assert by["predict", "drop_no_grad"]["line"] == 10
    assert "-@torch.no_grad()" in by["predict", "drop_no_grad"]["diff"]
    assert "timeout" not in {m["status"] for m in data["mutants"]}  # fork + OpenMP did not hang
    assert data["by_operator"]["drop_eval"] == {"killed": 0, "survived": 1, "timeout": 0, "no_coverage": 0, "unchecked": 0,
                                                "error": 0, "seed_dependent": 0, "harness_error": 0, "score": 0.0}
    killed = sum(m["status"] == "killed" for m in data["mutants"])
    assert data["score"] == pytest.approx(round(100 * killed / 6, 2))
    assert code == 0  # no fail_under

    # A different operator set must not reuse verdicts: x_predict__mutmut_1 was drop_eval (survived)
    # and is now swap_train_eval, which the repeatability test kills (dropout on).
    code = main(["mutate", str(project), "--operators", "swap_train_eval", "--json", str(out / "m2.json"),
                 "--fail-under", "100"])
    second = json.loads((out / "m2.json").read_text())
    predict = [m for m in second["mutants"] if m["function"] == "predict"]
    assert [(m["id"], m["status"]) for m in predict] == [("tinyml.core.x_predict__mutmut_1", "killed")]
    assert code == 1  # step's swap survives (nothing checks the mode there): score below 100
    assert {path: digest for path, digest in tree_digest(project).items() if not path.startswith("reports")} == before


def test_failing_suite_is_a_usage_error_naming_the_tests(tmp_path, capsys):
    project = make_project(tmp_path / "proj", TESTS + "\n\ndef test_broken():\n    assert 1 == 2\n")
    assert main(["mutate", str(project), "--operators", "drop_eval"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "fails before any mutation" in err and "tests/test_core.py::test_broken" in err


def test_deselected_failures_do_not_stop_the_run_before_mutation(tmp_path):
    project = make_project(tmp_path / "proj", TESTS + "\n\ndef test_broken():\n    assert 1 == 2\n")
    cfg = load_config(project, {"mutate": {"deselect": ["tests/test_core.py::test_broken"],
                                           "operators": "drop_eval"}})
    result = engine.run_mutate(cfg)
    assert [m.status for m in result.mutants] == ["survived"] and not result.notes


def test_unknown_operator_and_bad_paths_are_usage_errors(tmp_path, capsys):
    project = make_project(tmp_path / "proj")
    assert main(["mutate", str(project), "--operators", "drop_evall"]) == 2
    assert "did you mean drop_eval" in " ".join(capsys.readouterr().err.split())
    assert main(["mutate", str(tmp_path / "missing")]) == 2


def test_since_maps_changed_lines_to_source_files(tmp_path):
    project = make_project(tmp_path / "proj")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=project, check=True)
    core = project / "tinyml" / "core.py"
    core.write_text(core.read_text().replace("opt.zero_grad()", "opt.zero_grad(set_to_none=True)"))
    (project / "tests" / "test_core.py").write_text(TESTS + "\n# touched\n")
    cfg = load_config(project)
    assert engine._allowed_lines(cfg, "HEAD", ["tinyml"]) == {"tinyml/core.py": [18]}

    subprocess.run([*git, "commit", "-qam", "change"], cwd=project, check=True)
    quiet = engine.run_mutate(load_config(project, {"mutate": {"since": "HEAD", "fail_under": 90.0}}))
    assert quiet.mutants == [] and quiet.passed and quiet.exit_code == 0


def test_scratch_copy_mirrors_the_project_and_skips_caches(tmp_path):
    project = make_project(tmp_path / "proj")
    (project / ".git").mkdir()
    (project / "tinyml" / "__pycache__").mkdir()
    (project / "tinyml" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"x")
    dest = tmp_path / "copy"
    engine.sync_copy(project, dest, set(), keep={"mutants"})
    assert (dest / "tinyml" / "core.py").read_text() == CORE
    assert not (dest / ".git").exists() and not (dest / "tinyml" / "__pycache__").exists()
    (project / "tests" / "test_core.py").unlink()
    (dest / "mutants").mkdir()
    engine.sync_copy(project, dest, set(), keep={"mutants"})
    assert not (dest / "tests" / "test_core.py").exists() and (dest / "mutants").is_dir()
    assert os.stat(dest / "tinyml" / "core.py").st_mtime_ns == os.stat(project / "tinyml" / "core.py").st_mtime_ns


def test_worker_pins_torch_to_one_thread_against_user_code():
    code = ("import torch; from audit.mutate.worker import guard_threads; guard_threads(); "
            "torch.set_num_threads(4); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
