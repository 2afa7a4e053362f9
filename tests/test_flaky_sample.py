"""``audit flaky`` on sample_project against expected.toml: the issue's "Done when", kept fast.

One audit (fixed plan seed, reduced budget) on a private copy of the project; every planted
flaky test must come out ``flaky`` with a repro command that fails again, every control must
get its verdict, and the project must be left exactly as it was.
"""

import os
import subprocess

import pytest

from audit.api import flaky as api_flaky
from audit.model.schema import validate

pytestmark = pytest.mark.slow

BUDGET = 100.0


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory):
    import shutil

    from conftest import SAMPLE

    root = tmp_path_factory.mktemp("flaky") / "sample_project"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "mutants",
                                                                "reports"))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    old = os.environ.get("ML_AUDIT_STATE")
    os.environ["ML_AUDIT_STATE"] = str(tmp_path_factory.mktemp("state"))
    try:
        result = api_flaky(root, budget=BUDGET, seed=20261122, record=False, attribute=False)
    finally:
        if old is None:
            os.environ.pop("ML_AUDIT_STATE", None)
        else:
            os.environ["ML_AUDIT_STATE"] = old
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return root, result, before, after


def test_every_planted_flaky_test_is_found_with_a_repro_that_fails(audit_run, expected):
    _, result, _, _ = audit_run
    verdicts = {t.nodeid: t for t in result.tests}
    missed = [f["nodeid"] for f in expected["flaky"] if verdicts[f["nodeid"]].verdict != "flaky"]
    assert not missed, [(n, verdicts[n].executions, verdicts[n].interpreters) for n in missed]
    for f in expected["flaky"]:
        t = verdicts[f["nodeid"]]
        assert t.repro_verified is True, (f["nodeid"], t.repro)
        assert 0 < t.failures < t.executions and t.interval[0] <= t.rate <= t.interval[1]
        if f.get("masked_by") == "rerunfailures":
            assert t.masked and "rerunfailures" in t.evidence


def test_every_control_gets_its_verdict(audit_run, expected):
    _, result, _, _ = audit_run
    verdicts = {t.nodeid: t.verdict for t in result.tests}
    wrong = {c["nodeid"]: verdicts[c["nodeid"]] for c in expected["control"]
             if verdicts[c["nodeid"]] != c["verdict"]}
    assert not wrong


def test_order_and_fixture_repros_fail_when_run_as_printed(audit_run, expected):
    root, result, _, _ = audit_run
    verdicts = {t.nodeid: t for t in result.tests}
    chosen = [f["nodeid"] for f in expected["flaky"] if f["source"] in ("order", "hashseed") or f.get("fixture")]
    assert chosen
    for nodeid in chosen:
        proc = subprocess.run(verdicts[nodeid].repro, shell=True, cwd=root, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), timeout=300)
        assert proc.returncode == 1 and "failed" in proc.stdout, (nodeid, verdicts[nodeid].repro, proc.stdout[-2000:])
    order = next(f for f in expected["flaky"] if f["source"] == "order")
    assert order["polluter"] in verdicts[order["nodeid"]].repro


def test_json_contract_and_project_untouched(audit_run):
    root, result, before, after = audit_run
    assert after == before
    data = result.to_json()
    validate(data)
    assert data["schema"] == "ml-audit.flaky/4" and data["settings"]["budget"] == BUDGET
    assert data["stopped"] in ("targets reached", "budget spent")
    assert data["settings"]["cuda"].startswith("not varied") or data["settings"]["cuda"].startswith("cuDNN")
    for t in data["tests"]:
        assert {"nodeid", "verdict", "executions", "failures", "rate", "interval", "failing_settings",
                "repro", "causes"} <= set(t)
        assert t["causes"] == []
