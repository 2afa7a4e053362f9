"""`audit flaky --attribute` fills each flaky test's causes in the table and the JSON contract."""

import json
import textwrap

from audit.cli import main


def test_attribute_names_the_source_site_and_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
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
    out = tmp_path / "flaky.json"
    code = main(["flaky", str(root), "--budget", "30", "--seed", "11", "--threads", "1", "--no-determinism",
                 "--attribute", "--attribute-budget", "120", "--no-record", "--json", str(out)])
    assert code == 1
    tests = {t["nodeid"]: t for t in json.loads(out.read_text())["tests"]}
    coin = tests["tests/test_coin.py::test_coin"]
    assert coin["verdict"] == "flaky"
    first = coin["causes"][0]
    assert first["source"] == "random" and first["p_value"] < 0.001
    assert first["status"] == "confirmed" and first["confirmed"] is True
    assert first["counts"]["pinned"][0] == 0 and first["counts"]["confirmation"][0] == 0
    assert {"path": "tests/test_coin.py", "function": "flip"}.items() <= first["sites"][0].items()
    assert first["hint"]
    assert tests["tests/test_coin.py::test_fine"]["causes"] == []
    printed = capsys.readouterr().out
    assert "why: random" in printed and "where: tests/test_coin.py:" in printed
