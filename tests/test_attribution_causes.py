"""A flaky test's causes from real experiment counts: only a confirmed winner is a confirmed cause,
an unconfirmed one is suspected with its evidence, an unknown cause borrows no p-value, and a
tracing failure is named as such."""

from __future__ import annotations

from audit.flaky.attribution.case import Case
from audit.flaky.attribution.causes import Trace, causes_of
from audit.model.flaky import Counts, Site

T = "tests/test_coin.py::test_coin"
RECORD = {"nodeid": T, "trace_error": None, "empty_sites": [], "draws": {"random": {"sites": [
    {"path": "tests/test_coin.py", "line": 5, "function": "flip", "kind": "draw", "count": 60, "unseeded": 60,
     "names": ["random"], "via": [], "call_paths": [[T, "tests/test_coin.py::flip"]]}]}}}
TRACED = Trace({T: RECORD})


def _case(confirmation=None, confirmed_source="random", **released) -> Case:
    case = Case(T, pin=0, base=[0, 40], released={k: list(v) for k, v in released.items()})
    case.confirmed_source, case.confirmation = (confirmed_source, confirmation) if confirmation else (None, None)
    return case


def test_a_confirmed_winner_is_the_one_confirmed_cause():
    case = _case(random=(22, 60), torch=(16, 60), confirmation=(0, 30))
    [cause] = causes_of(case, TRACED)
    assert (cause.source, cause.status, cause.confirmed) == ("random", "confirmed", True)
    assert cause.counts == Counts(pinned=(0, 40), released=(22, 60), unit="executions", confirmation=(0, 30))
    assert cause.p_value < 1e-5 and cause.sites == [Site("tests/test_coin.py", 5, "flip")]
    assert "0/30 failed, failures vanish" in cause.evidence
    assert "also moved the rate alone, but not needed once this is pinned: torch RNG 16/60" in cause.evidence


def test_a_failed_confirmation_leaves_every_significant_source_suspected():
    case = _case(random=(22, 60), torch=(14, 60), confirmation=(8, 30))
    causes = causes_of(case, TRACED)
    assert [(c.source, c.status, c.confirmed) for c in causes] == [("random", "suspected", False),
                                                                   ("torch", "suspected", False)]
    assert causes[0].counts.confirmation == (8, 30) and causes[1].counts.confirmation is None
    assert "only python random pinned" in causes[0].evidence and "8/30 failed, failures remain" in causes[0].evidence


def test_a_winner_never_confirmed_is_suspected_and_says_so():
    [cause] = causes_of(_case(random=(22, 60)), TRACED)
    assert cause.status == "suspected" and cause.counts.confirmation is None
    assert "not confirmed" in cause.evidence


def test_a_confirmation_of_another_source_does_not_confirm_the_winner():
    # torch led when it was confirmed; more chunks made random the stronger source since
    case = _case(random=(30, 60), torch=(16, 60), confirmation=(0, 30), confirmed_source="torch")
    causes = causes_of(case, TRACED)
    assert causes[0].source == "random" and causes[0].status == "suspected"
    assert all(not c.confirmed for c in causes)


def test_an_unknown_cause_borrows_no_p_value_from_a_rejected_source():
    case = _case(random=(1, 60), torch=(0, 60), threads=(0, 12))
    [cause] = causes_of(case, TRACED)
    assert (cause.source, cause.status, cause.p_value, cause.counts) == ("unknown", "unknown", None, None)
    assert cause.evidence.startswith("pinned 0/40 failed; released: torch RNG 0/60, python random 1/60, threads 0/12")
    assert "not tried in the budget: numpy RNG, OS entropy, determinism, hash seed, order" in cause.evidence
    assert cause.to_json()["p_value"] is None
    assert "interaction" not in cause.hint and "python random 1/60" in cause.hint


def test_no_failure_released_anywhere_hints_at_an_interaction():
    [cause] = causes_of(_case(random=(0, 160), torch=(0, 160), threads=(0, 12)), TRACED)
    assert cause.status == "unknown" and "interaction of two sources" in cause.hint


def test_a_leading_suspect_the_budget_did_not_decide_is_undetermined_with_what_would_decide_it():
    # the case: 20/400 released against 0/120 pinned, p about 0.006
    case = Case(T, pin=0, base=[0, 120], released={"torch": [20, 400], "numpy": [0, 160], "random": [0, 160]})
    [cause] = causes_of(case, TRACED)
    assert (cause.source, cause.status, cause.confirmed) == ("torch", "undetermined", False)
    assert 1e-3 < cause.p_value < 0.05
    assert cause.counts == Counts(pinned=(0, 120), released=(20, 400), unit="executions", confirmation=None)
    assert cause.more_runs and 20 < cause.more_runs < 400
    assert f"about {cause.more_runs} more executions" in cause.evidence and "torch RNG released 20/400" in cause.evidence
    assert "interaction" not in cause.hint and "torch" in cause.hint
    assert cause.to_json()["status"] == "undetermined" and cause.to_json()["more_runs"] == cause.more_runs


def test_an_unknown_cause_when_no_pinned_setting_passes():
    case = Case(T, pinned_tries=[(1234, "1", 3, 40), (20261122, "2", 5, 40)])
    [cause] = causes_of(case, TRACED)
    assert cause.status == "unknown" and cause.p_value is None
    assert cause.evidence.startswith("fails under every pinned setting tried: seeds 1234, hash seed 1: 3/40 failed; "
                                     "seeds 20261122, hash seed 2: 5/40 failed")


def test_a_tracing_failure_is_shown_not_taken_for_no_draw_site():
    failed = Trace(error="tracing tests in /p failed (pytest exit 2):")
    [cause] = causes_of(_case(random=(22, 60), confirmation=(0, 30)), failed)
    assert cause.status == "confirmed" and cause.sites == []
    assert cause.trace_error == "tracing tests in /p failed (pytest exit 2):"
    assert "tracing failed" in cause.hint and "no project draw site" not in cause.hint
    missing = causes_of(_case(random=(22, 60)), Trace({}))[0]
    assert missing.trace_error == "the trace run wrote no record for this test"
    stopped = Trace({T: {**RECORD, "draws": {}, "trace_error": "RuntimeError: state unreadable"}})
    assert causes_of(_case(random=(22, 60)), stopped)[0].trace_error == "RuntimeError: state unreadable"
    assert causes_of(_case(random=(22, 60)), TRACED)[0].trace_error is None


def test_interpreter_sources_count_interpreters():
    case = _case(hashseed=(6, 10), confirmation=(0, 30), confirmed_source="hashseed")
    [cause] = causes_of(case, TRACED)
    assert cause.counts.unit == "interpreters" and cause.status == "confirmed"
    assert "hash seed released 6/10 interpreters failed" in cause.evidence
