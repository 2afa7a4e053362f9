"""The polluter search: delta debugging over the tests that ran before the victim, and the probe
that says what state the polluter leaves, on a small real project."""

from __future__ import annotations

import textwrap
import time

import pytest

from audit.config import load_config
from audit.flaky.attribution.case import Case
from audit.flaky.attribution.lab import Lab
from audit.flaky.attribution.polluter import ddmin, find_polluter
from audit.model.flaky import StateChange

ITEMS = [f"t{i}" for i in range(8)]


def _oracle(culprits: set[str]):
    """The victim fails after a subset holding every culprit; the batches asked are kept."""
    asked = []

    def fails(subsets):
        asked.append([list(s) for s in subsets])
        return [culprits <= set(s) for s in subsets]

    return fails, asked


def test_ddmin_finds_one_polluter_in_few_batches():
    fails, asked = _oracle({"t5"})
    assert ddmin(ITEMS, fails) == ["t5"]
    assert len(asked) == 3   # halves, quarters, pairs: log2(8) batches


def test_ddmin_finds_two_polluters_that_only_fail_together():
    fails, asked = _oracle({"t1", "t6"})
    assert ddmin(ITEMS, fails) == ["t1", "t6"]
    assert all(len(batch) <= len(ITEMS) for batch in asked)


def test_ddmin_stops_when_the_budget_says_so():
    fails, asked = _oracle({"t5"})
    batches = iter([True, False])
    assert ddmin(ITEMS, fails, more=lambda: next(batches)) == ITEMS[4:]
    assert len(asked) == 1


def test_ddmin_keeps_a_set_that_cannot_shrink():
    fails, _ = _oracle({"t0"})
    assert ddmin(["t0"], fails) == ["t0"]


PROJECT = {
    "pytest.ini": "[pytest]\npythonpath = .\n",
    "pyproject.toml": "[tool.audit]\n",
    "helpers.py": "class Settings:\n    fast = False\n",
    "test_state.py": """
        import os
        import helpers

        def test_a():
            pass

        def test_sets_env():
            os.environ["ML_AUDIT_DEMO_MODE"] = "fast"

        def test_b():
            pass

        def test_flips_a_class():
            helpers.Settings.fast = True

        def test_c():
            pass

        def test_env_victim():
            assert os.environ.get("ML_AUDIT_DEMO_MODE") != "fast"

        def test_class_victim():
            assert not helpers.Settings.fast
    """,
}


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.delenv("ML_AUDIT_DEMO_MODE", raising=False)
    for name, text in PROJECT.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return Lab(load_config(tmp_path), workers=2, deadline=time.monotonic() + 300, seed=5)


def _case(victim: str, before: list[str]) -> Case:
    return Case(f"test_state.py::{victim}", pin=0, failing_order=[f"test_state.py::{t}" for t in before])


def test_the_probe_names_the_polluter_and_the_env_it_leaves(lab):
    case = _case("test_env_victim", ["test_a", "test_flips_a_class", "test_sets_env", "test_b", "test_c"])
    find_polluter(lab, case)
    assert case.polluter == "test_state.py::test_sets_env"
    assert case.state == [StateChange("env", "ML_AUDIT_DEMO_MODE", None, "fast")]


def test_delta_debugging_finds_a_polluter_the_probe_cannot_see(lab):
    # a class attribute is no simple module global: the probe has no suspect, ddmin runs
    case = _case("test_class_victim", ["test_a", "test_b", "test_sets_env", "test_flips_a_class", "test_c"])
    find_polluter(lab, case)
    assert case.polluter == "test_state.py::test_flips_a_class"
    assert case.state == []
    # the probe; its one suspect (test_sets_env), which does not reproduce it; ddmin's three
    # batches of two; a second probe of the culprit alone
    assert lab.interpreters == 1 + 1 + 6 + 1
