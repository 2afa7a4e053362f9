"""A flaky test whose failures are all about time gets the cause ``timing``, not ``unknown``.

The tests below fail on the parity of a microsecond clock, so about half their executions fail
whatever the seeds; the audit reruns each until it has seen both outcomes (a few executions) and
the 40 s budget allows hundreds, so a run that misses one has a chance far below one in a million.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from audit.cli import main
from audit.flaky.timing import failing_line, kind_of

SUITE = '''
import random
import time

import pytest


def _odd_microsecond():
    return time.perf_counter_ns() // 1000 % 2 == 1


def test_assert_on_elapsed():
    t_start = time.perf_counter()
    odd = _odd_microsecond()
    elapsed = time.perf_counter() - t_start + (10.0 if odd else 0.0)
    assert elapsed < 5.0


@pytest.mark.timeout(0.2, method="signal")
def test_hits_pytest_timeout():
    if _odd_microsecond():
        time.sleep(2)


def test_raises_timeout_error():
    if _odd_microsecond():
        raise TimeoutError("the worker did not answer in 1 s")


def test_coin():
    assert random.random() < 0.5
'''


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("timing") / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_clock.py").write_text(SUITE)
    out = root.parent / "result.json"
    code = main(["flaky", str(root), "--budget", "40", "--seed", "5", "--rng", "random", "--no-hashseed",
                 "--no-determinism", "--orders", "file", "--threads", "1", "--no-attribute", "--no-record", "--json", str(out)])
    assert code == 1
    return {t["nodeid"].split("::")[1]: t for t in json.loads(out.read_text())["tests"]}


@pytest.mark.parametrize("name, kind", [
    ("test_assert_on_elapsed", "an assertion on a measured duration"),
    ("test_hits_pytest_timeout", "pytest-timeout"),
    ("test_raises_timeout_error", "a timeout raised by the test"),
])
def test_timing_failures_are_named(result, name, kind):
    test = result[name]
    assert test["verdict"] == "flaky", test
    assert test["timing"] == kind
    (cause,) = test["causes"]
    assert cause["source"] == "timing" and cause["status"] == "suspected" and cause["p_value"] is None
    assert f"every one of its {test['failures']} failures" in cause["evidence"]


def test_a_random_failure_is_not_taken_for_timing(result):
    assert result["test_coin"]["verdict"] == "flaky"
    assert result["test_coin"]["timing"] is None and result["test_coin"]["causes"] == []


@pytest.mark.parametrize("message, line, kind", [
    ("AssertionError: assert 3 == 4", ">       assert total == expected", None),
    ("AssertionError: assert 0.61 < 0.5", ">       assert duration < 0.5", "an assertion on a measured duration"),
    ("hypothesis.errors.DeadlineExceeded: Test took 512.30ms, which exceeds the deadline of 200.00ms", "",
     "Hypothesis deadline exceeded"),
    ("ValueError: seconds must be positive", ">       parse(seconds=-1)", None),
])
def test_kinds_from_the_words(message, line, kind):
    assert kind_of(message, line) == kind


def test_the_failing_line_is_the_last_marked_one():
    text = textwrap.dedent("""\
        def test_x():
        >       helper()
        tests/t.py:3:
        def helper():
        >       assert elapsed < 1
        E       assert 2 < 1
        """)
    assert failing_line(text) == ">       assert elapsed < 1"
