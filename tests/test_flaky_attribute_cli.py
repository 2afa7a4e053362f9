"""`audit flaky` attributes by default within its one budget: each flaky test's cause in the table
and the JSON contract, with a minimal verified repro and its counterfactual."""

import json
import textwrap

from audit.cli import main
from audit.model.schema import validate

BUDGET = 40.0


def _project(tmp_path):
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_coin.py").write_text(textwrap.dedent("""
        import random

        def flip():
            return random.random()

        def test_coin():
            assert flip() < 0.6

        def test_fine():
            assert sorted([3, 1, 2]) == [1, 2, 3]
    """))
    return root


def test_one_default_run_names_the_source_site_fix_and_repro_within_the_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = _project(tmp_path)
    out = tmp_path / "flaky.json"
    code = main(["flaky", str(root), "--budget", str(BUDGET), "--seed", "11", "--threads", "1", "--no-determinism",
                 "--no-record", "--json", str(out)])
    assert code == 1
    data = json.loads(out.read_text())
    validate(data)
    assert data["schema"] == "ml-audit.flaky/4" and data["settings"]["attribute"] is True
    assert data["wall_seconds"] <= 1.1 * BUDGET                       # detection and attribution together
    assert 0 < data["attribution"]["budget"] < BUDGET and data["attribution"]["seconds"] <= data["attribution"]["budget"] + 5
    tests = {t["nodeid"]: t for t in data["tests"]}
    coin = tests["tests/test_coin.py::test_coin"]
    assert coin["verdict"] == "flaky"
    first = coin["causes"][0]
    assert first["source"] == "random" and first["p_value"] < 0.001
    assert first["status"] == "confirmed" and first["confirmed"] is True
    assert first["counts"]["pinned"][0] == 0 and first["counts"]["confirmation"][0] == 0
    assert {"path": "tests/test_coin.py", "function": "flip"}.items() <= first["sites"][0].items()
    assert first["hint"]
    assert data["attribution"]["per_test"]["tests/test_coin.py::test_coin"] > 0
    # the repro is the test alone with only its cause's option, failing 3/3; the counterfactual passes 3/3
    assert coin["repro_verified"] is True and coin["repro_runs"] == [3, 3] and coin["counterfactual_runs"] == [0, 3]
    assert "--audit-seed-random=" in coin["repro"] and "--audit-seed-torch" not in coin["repro"]
    assert coin["repro"].count("tests/test_coin.py::") == 1 and "--audit-seed-random=" in coin["counterfactual"]
    assert tests["tests/test_coin.py::test_fine"]["causes"] == []
    printed = capsys.readouterr().out
    assert "why: random" in printed and "where: tests/test_coin.py:" in printed
    assert "counterfactual, the cause pinned (failed 0/3 runs)" in printed


def test_no_attribute_is_detection_only(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = _project(tmp_path)
    out = tmp_path / "flaky.json"
    code = main(["flaky", str(root), "--budget", "15", "--seed", "11", "--threads", "1", "--no-determinism",
                 "--no-attribute", "--no-record", "--json", str(out)])
    assert code == 1
    data = json.loads(out.read_text())
    assert data["settings"]["attribute"] is False and data["attribution"] == {}
    assert all(t["causes"] == [] for t in data["tests"])
