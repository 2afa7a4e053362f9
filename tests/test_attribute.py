"""Attribution's parts that need no sample audit: the statediff probe, deviations, inputs."""

import subprocess
import sys
import textwrap

import pytest

from audit.config import load_config
from audit.errors import AuditError
from audit.flaky import statediff
from audit.flaky.attribution import attribute
from audit.flaky.attribution.causes import deviation
from audit.model.flaky import FlakyResult, StateChange, TestVerdict


def _snap(**over):
    base = {"environ": {"A": "1"}, "cwd": "/x", "dtype": "torch.float32", "grad": True,
            "rng": {"random": "r0"}, "globals": {"pkg.mod.CACHE": "{}"}}
    base.update(over)
    return base


def test_diff_sees_env_dtype_and_globals_before_rng():
    after = _snap(environ={"A": "1", "EPOCHS": "2", "TORCHINDUCTOR_CACHE_DIR": "/tmp/t"},
                  dtype="torch.float64", rng={"random": "r1"}, globals={"pkg.mod.CACHE": "{'k': 1}"})
    assert statediff.diff(_snap(), after) == [
        StateChange("env", "EPOCHS", None, "2"), StateChange("dtype", "dtype", "torch.float32", "torch.float64"),
        StateChange("global", "pkg.mod.CACHE", "{}", "{'k': 1}"), StateChange("rng", "random", "r0", "r1")]
    assert statediff.diff(_snap(), _snap()) == []


def test_statediff_plugin_records_what_a_test_leaves(tmp_path):
    (tmp_path / "test_a.py").write_text(textwrap.dedent("""
        import os
        LEVEL = 0
        def test_polluter():
            global LEVEL
            LEVEL = 3
            os.environ["ML_AUDIT_DEMO"] = "on"
        def test_clean(monkeypatch):
            monkeypatch.setenv("ML_AUDIT_DEMO2", "x")
    """))
    out = tmp_path / "diff.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                           "audit.flaky.statediff", f"--audit-statediff={out}", "test_a.py"],
                          cwd=tmp_path, capture_output=True, text=True, env={"PYTHONDONTWRITEBYTECODE": "1",
                                                                             "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = statediff.read_changes(out)
    assert recs["test_a.py::test_polluter"] == [StateChange("env", "ML_AUDIT_DEMO", None, "on"),
                                                StateChange("global", "test_a.LEVEL", "0", "3")]
    assert recs["test_a.py::test_clean"] == []


def test_deviation_from_a_failed_equality():
    assert deviation(["call: assert 0.5000000001 == 0.5 (test_stats.py:9)"]) == pytest.approx(1e-10, rel=1e-3)
    assert deviation(["call: assert tensor(True) (x.py:1)"]) is None


def _result(**verdicts) -> FlakyResult:
    tests = [TestVerdict(nodeid=n, verdict=v, executions=10, failures=0, skips=0, rate=0.0, interval=(0.0, 0.3))
             for n, v in verdicts.items()]
    return FlakyResult(project="p", tests=tests, settings={"master_seed": 3}, seconds=1.0, executions=10,
                       interpreters=1, stopped="targets reached")


def test_nothing_flaky_costs_nothing(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.audit]\n")
    got = attribute(load_config(tmp_path), _result(**{"t.py::x": "pass"}), budget_seconds=10)
    assert dict(got) == {} and got.interpreters == 0 and got.rng_graph["nodes"] == []


def test_budget_must_be_positive_and_the_input_a_flaky_result(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.audit]\n")
    with pytest.raises(AuditError, match="budget"):
        attribute(load_config(tmp_path), _result(), budget_seconds=0)
    with pytest.raises(TypeError, match="FlakyResult"):
        attribute(load_config(tmp_path), {"tests": []}, budget_seconds=10)
