"""The terminal table and the ml-audit.flaky/4 JSON writer, on a hand-made result."""

import json

from rich.console import Console

from audit.flaky.verdict import summarise
from audit.model.flaky import FlakyResult
from audit.model.schema import validate
from audit.report import flaky_json, flaky_table


def _row(nodeid, klass, **extra):
    row = {"nodeid": nodeid, "klass": klass, "unit": 1, "round": 0, "attempt": 0, "duration": 0.5,
           "outcome": {"pass": "passed", "fail": "failed"}[klass], "threads": 1, "deterministic": "on",
           "hashseed": "5", "order": "shuffle:9", "seeds": {"torch": 3}, "digest": "call: boom (t.py:3)",
           "draws": {"torch": True}, "fixture_draws": []}
    row.update(extra)
    return row


def _result():
    flaky = summarise("tests/t.py::test_flaky", [_row("x", "pass"), _row("x", "fail", masked=True)])
    flaky.nodeid = "tests/t.py::test_flaky"
    flaky.repro, flaky.repro_verified = "PYTHONHASHSEED=5 python -m pytest tests/t.py::test_flaky", True
    broken = summarise("tests/t.py::test_broken", [_row("y", "fail")] * 3)
    fine = summarise("tests/t.py::test_fine", [_row("z", "pass")] * 4)
    fine.confidence = "0 failures in 4 executions"
    settings = {"rng_varied": ["torch"], "rng_pinned": ["numpy", "random"], "hashseed": "varied per interpreter",
                "threads": [1, 2], "orders": ["file", "shuffle"], "determinism": ["off", "on"],
                "cuda": "not varied: no CUDA device", "master_seed": 17}
    return FlakyResult(project="/p", tests=[fine, broken, flaky], settings=settings, seconds=12.0,
                       executions=9, interpreters=2, stopped="budget spent")


def test_table_lists_bad_tests_first_with_settings_and_repro():
    console = Console(record=True, width=200)
    flaky_table.print_result(_result(), console)
    text = console.export_text()
    assert text.index("test_flaky") < text.index("test_broken")
    assert "test_fine" not in text.split("repro")[0]           # passing tests only with --all
    assert "1/2" in text and "3/3" in text and "threads=1; deterministic=on" in text
    assert "fails again when run" in text and "PYTHONHASHSEED=5 python -m pytest" in text
    assert "rerunfailures" in text
    assert "CUDA not varied: no CUDA device" in text and "plan seed 17" in text
    assert "3 tests: 1 flaky, 1 fail, 1 pass" in text
    everything = Console(record=True, width=200)
    flaky_table.print_result(_result(), everything, show_all=True)
    assert "test_fine" in everything.export_text()


def test_json_contract(tmp_path):
    path = flaky_json.write(_result(), tmp_path / "out" / "flaky.json")
    data = json.loads(path.read_text())
    validate(data)
    assert FlakyResult.from_json(data).to_json() == data
    assert data["schema"] == "ml-audit.flaky/4" and data["project"] == "/p" and data["settings"]["master_seed"] == 17
    by = {t["nodeid"]: t for t in data["tests"]}
    t = by["tests/t.py::test_flaky"]
    assert (t["verdict"], t["executions"], t["failures"], t["rate"]) == ("flaky", 2, 1, 0.5)
    assert t["interval"][0] < 0.5 < t["interval"][1] and t["causes"] == [] and t["masked_by_reruns"] == 1
    assert t["failing_settings"][0]["threads"] == 1 and t["repro"].startswith("PYTHONHASHSEED=5")
    assert by["tests/t.py::test_broken"]["verdict"] == "fail" and by["tests/t.py::test_broken"]["repro"] is None
    assert by["tests/t.py::test_fine"]["mean_duration"] == 0.5
    assert not list(tmp_path.joinpath("out").glob("*.tmp"))


def test_a_drawing_fixture_set_up_by_another_test_counts_as_the_tests_draw():
    # a module-scoped fixture built during an earlier test still feeds this one (attribution must
    # not skip that family's arm): the row's signature names the fixture's family
    row = _row("x", "pass", draws={"torch": False}, signature=[["fixture:holdout:torch", "ab12"]])
    assert summarise("tests/t.py::test_holdout", [row]).draws == ["torch"]
    assert summarise("tests/t.py::test_plain", [_row("x", "pass", draws={"torch": False})]).draws == []
