"""Attribution's parts that need no sample audit: the statediff probe, deviations, inputs."""

import subprocess
import sys
import textwrap

import pytest

from audit.config import load_config
from audit.errors import AuditError
from audit.flaky import statediff
from audit.flaky.attribute import _deviation, _nodeids, attribute


def _snap(**over):
    base = {"environ": {"A": "1"}, "cwd": "/x", "dtype": "torch.float32", "grad": True,
            "rng": {"random": "r0"}, "globals": {"pkg.mod.CACHE": "{}"}}
    base.update(over)
    return base


def test_diff_sees_env_dtype_and_globals_before_rng():
    after = _snap(environ={"A": "1", "EPOCHS": "2", "TORCHINDUCTOR_CACHE_DIR": "/tmp/t"},
                  dtype="torch.float64", rng={"random": "r1"}, globals={"pkg.mod.CACHE": "{'k': 1}"})
    changes = statediff.diff(_snap(), after)
    assert [c["kind"] for c in changes] == ["env", "dtype", "global", "rng"]
    text = statediff.describe(changes)
    assert text == ("os.environ['EPOCHS'] = '2'; torch.get_default_dtype() = torch.float64; "
                    "module global pkg.mod.CACHE = {'k': 1} left behind")


def test_describe_falls_back_to_rng_and_none():
    only_rng = statediff.diff(_snap(), _snap(rng={"random": "r2"}))
    assert statediff.describe(only_rng) == "the global random RNG stream position left behind"
    assert statediff.describe([]) is None


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
    import json
    recs = {r["nodeid"]: r["changes"] for r in map(json.loads, out.read_text().splitlines())}
    assert statediff.describe(recs["test_a.py::test_polluter"]) == (
        "os.environ['ML_AUDIT_DEMO'] = 'on'; module global test_a.LEVEL = 3 left behind")
    assert recs["test_a.py::test_clean"] == []


def test_deviation_from_a_failed_equality():
    assert _deviation(["call: assert 0.5000000001 == 0.5 (test_stats.py:9)"]) == pytest.approx(1e-10, rel=1e-3)
    assert _deviation(["call: assert tensor(True) (x.py:1)"]) is None


def test_nodeids_from_json_and_from_objects():
    class T:
        def __init__(self, nodeid, verdict):
            self.nodeid, self.verdict = nodeid, verdict

    class R:
        tests = [T("a", "pass"), T("b", "flaky")]

    assert _nodeids(R()) == (["a", "b"], ["b"])
    assert _nodeids({"tests": [{"nodeid": "a", "verdict": "flaky"}]}) == (["a"], ["a"])


def test_nothing_flaky_costs_nothing(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.audit]\n")
    cfg = load_config(tmp_path)
    got = attribute(cfg, {"tests": [{"nodeid": "t.py::x", "verdict": "pass"}], "settings": {}},
                    budget_seconds=10)
    assert dict(got) == {} and got.interpreters == 0 and got.rng_graph["nodes"] == []


def test_budget_must_be_positive(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.audit]\n")
    with pytest.raises(AuditError, match="budget"):
        attribute(load_config(tmp_path), {"tests": []}, budget_seconds=0)
