"""attribute() end to end on a small real project: a test that fails through two sources at once
(its winner's confirmation fails, so nothing is confirmed), a test no pinned setting fixes (an
unknown cause with no p-value), a test flaky through OS entropy (the entropy family, confirmed),
and a trace run that breaks (named in every cause it touches)."""

from __future__ import annotations

import textwrap

import pytest

from audit.config import load_config
from audit.flaky.attribution import attribute
from audit.model.flaky import FlakyResult, TestVerdict
from audit.model.schema import validate

TESTS = """
    import random
    import secrets

    import numpy as np

    def test_either_stream():
        assert not (random.random() < 0.3 or np.random.rand() < 0.3)

    def test_os_entropy():
        with open("/dev/urandom", "rb") as f:   # read as a file: nothing can pin it
            assert f.read(1)[0] < 128

    def test_token():
        assert secrets.randbelow(4) != 0

    def test_steady():
        assert sorted([2, 1]) == [1, 2]
"""
# the trace plugin is the one thing this project cannot load
CONFTEST = """
    def pytest_configure(config):
        if config.getoption("audit_trace", None):
            raise RuntimeError("this project refuses to be traced")
"""
EITHER, ENTROPY, TOKEN, STEADY = (f"test_mix.py::{n}" for n in ("test_either_stream", "test_os_entropy",
                                                                   "test_token", "test_steady"))


@pytest.fixture(scope="module")
def attributed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    (root / "pyproject.toml").write_text("[tool.audit]\n")
    (root / "test_mix.py").write_text(textwrap.dedent(TESTS))
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    verdicts = {EITHER: ("flaky", ["numpy", "random"]), ENTROPY: ("flaky", []), TOKEN: ("flaky", ["entropy"]),
                STEADY: ("pass", [])}
    tests = [TestVerdict(nodeid=n, verdict=v, executions=20, failures=5, skips=0, rate=0.25, interval=(0.1, 0.5),
                         draws=drawn) for n, (v, drawn) in verdicts.items()]
    result = FlakyResult(project=str(root), tests=tests, settings={"master_seed": 7}, seconds=1.0, executions=60,
                         interpreters=3, stopped="targets reached")
    return attribute(load_config(root), result, budget_seconds=240, workers=2)


def test_a_winner_whose_confirmation_fails_is_only_suspected(attributed):
    causes = attributed[EITHER]
    assert sorted(c.source for c in causes) == ["numpy", "random"]
    assert all(c.status == "suspected" and not c.confirmed for c in causes)
    winner = causes[0]
    assert winner.p_value < 1e-3 and winner.counts.pinned[0] == 0
    failed, runs = winner.counts.confirmation
    assert runs > 0 and failed > 0 and "failures remain" in winner.evidence


def test_no_pinned_setting_passing_gives_an_unknown_cause_without_a_p_value(attributed):
    [cause] = attributed[ENTROPY]
    assert (cause.source, cause.status, cause.p_value) == ("unknown", "unknown", None)
    assert cause.evidence.startswith("fails under every pinned setting tried: seeds 1234, hash seed 1: ")


def test_os_entropy_is_a_source_that_is_pinned_released_and_confirmed(attributed):
    first = attributed[TOKEN][0]
    assert (first.source, first.status) == ("entropy", "confirmed") and first.p_value < 1e-3
    assert first.counts.pinned[0] == 0 and first.counts.confirmation[0] == 0
    assert "OS entropy released" in first.evidence
    assert attributed.per_test[TOKEN] > 0
    pair = attributed.repros[TOKEN]
    assert pair["verified"] and pair["repro_runs"] == [3, 3] and pair["counterfactual_runs"] == [0, 3]
    assert "--audit-seed-entropy=" in pair["repro"] and "--audit-seed-numpy" not in pair["repro"]


def test_a_broken_trace_is_named_in_the_causes(attributed):
    for cause in attributed[EITHER]:
        assert cause.trace_error and cause.trace_error.startswith("tracing tests in"), cause.trace_error
        assert "tracing failed" in cause.hint and "no project draw site" not in cause.hint
    assert attributed.rng_hygiene == [] and attributed.interpreters > 0


def test_the_result_validates(attributed):
    tests = [{"nodeid": n, "verdict": "flaky", "executions": 1, "failures": 1, "rate": 1.0, "interval": [0, 1],
              "failing_settings": [], "repro": None, "causes": [c.to_json() for c in causes]}
             for n, causes in attributed.items()]
    validate({"schema": "ml-audit.flaky/3", "project": "mix", "settings": {}, "seconds": attributed.seconds,
              "executions": attributed.executions, "interpreters": attributed.interpreters,
              "stopped": "targets reached", "rng_graph": attributed.rng_graph, "tests": tests})
