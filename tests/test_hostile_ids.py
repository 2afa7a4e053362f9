"""Node ids that are markup, paths, quotes, pipes or line breaks: every one reaches the table, the
repro lines, the JSON and the history store intact, and the run is never lost to them."""

from __future__ import annotations

import json
import shlex
import textwrap

from audit.cli import main

PARAMS = ["/", "/tmp", "cpu", "normal", "quo\"te's", "a|b", "line\nbreak"]

TESTS = '''
import os
import pytest

@pytest.mark.parametrize("p", PARAMS)
def test_param(p):
    path = os.environ["ALTERNATING_COUNTER"] + p.replace("/", "_").replace("\\n", "_")
    n = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(n + 1))
    assert n % 2 == 0
'''


def test_hostile_node_ids_survive_every_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALTERNATING_COUNTER", str(tmp_path / "counter"))
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_ids.py").write_text(TESTS.replace("PARAMS", repr(PARAMS)))
    (root / "pyproject.toml").write_text(textwrap.dedent("""\
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        disable_test_id_escaping_and_forfeit_all_rights_to_community_support = true
        """))
    out = tmp_path / "flaky.json"
    code = main(["flaky", str(root), "--no-attribute", "--runs", "2", "--budget", "300", "--seed", "5", "--json", str(out)])
    printed = capsys.readouterr().out
    ids = [f"tests/test_ids.py::test_param[{p}]" for p in PARAMS]
    data = json.loads(out.read_text())
    assert code == 1
    assert [t["nodeid"] for t in data["tests"]] == ids
    assert all(t["verdict"] == "flaky" and t["repro"] for t in data["tests"])
    for nodeid, test in zip(ids, data["tests"]):
        assert f"{nodeid} repro (" in printed
        assert shlex.quote(nodeid) in test["repro"] and test["repro"] in printed
    assert "recorded as run 1" in printed

