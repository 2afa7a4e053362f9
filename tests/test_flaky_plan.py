"""The plan: which settings each unit gets and how executions are spent (no pytest runs)."""

import json

import pytest

from audit.errors import AuditError
from audit.flaky.plan import Axes, Planner
from audit.flaky.runner import Unit
from audit.flaky.verdict import decide, summarise
from audit.flaky import repro

TESTS = [f"tests/test_m.py::test_{i}" for i in range(6)]


def axes(**kw):
    base = dict(rng=["torch", "numpy", "random"], hashseed=True, threads=[1, 2], default_threads=2,
                orders=["file", "reversed", "shuffle"], determinism=True, cuda=False)
    base.update(kw)
    return Axes(**base)


def row(nodeid, unit, klass="pass", drew=False, sig=(), rnd=0, duration=0.01, **extra):
    out = {"event": "row", "nodeid": nodeid, "unit": unit, "klass": klass, "round": rnd, "attempt": 0,
           "outcome": {"pass": "passed", "fail": "failed", "skip": "skipped"}[klass],
           "drew_any": drew, "signature": [list(s) for s in sig], "duration": duration,
           "draws": {"torch": drew}, "fixture_draws": [], "seeds": {"torch": 1}, "seed_base": 5,
           "seed_modes": {"torch": "fresh", "numpy": "fresh", "random": "fresh"}, "threads": 1,
           "deterministic": "off", "hashseed": "7", "order": "file", "digest": "", "masked": False}
    out.update(extra)
    return out


def measured(p, seconds=0.01, **extra):
    """The planner after a survey in which every test ran once in *seconds*."""
    p.record([row(t, 99, duration=seconds, **extra) for t in p.tests])
    return p


def test_axes_from_config_validates_and_fills_defaults():
    from types import SimpleNamespace as NS
    cfg = NS(rng=["numpy", "torch"], hashseed=False, threads=[], orders=["file", "file"], determinism=False)
    a = Axes.from_config(cfg)
    assert a.rng == ["torch", "numpy"] and 1 in a.threads and a.default_threads in a.threads
    assert a.orders == ["file"]
    described = a.describe()
    assert described["rng_pinned"] == ["random", "entropy"] and described["determinism"] == "not varied"
    assert "no CUDA" in described["cuda"] or a.cuda
    for bad in (dict(rng=["jax"]), dict(orders=["sideways"]), dict(threads=[0])):
        fields = dict(rng=["torch"], hashseed=True, threads=[1], orders=["file"], determinism=True)
        fields.update(bad)
        with pytest.raises(AuditError):
            Axes.from_config(NS(**fields))


def test_units_cycle_through_process_settings_and_are_serialisable():
    p = measured(Planner(TESTS, axes(), master_seed=11))
    units = [p.next_unit(seconds_left=500, workers=2) for _ in range(12)]
    assert {u.deterministic for u in units} == {"on", "off"}
    kinds = {u.order.split(":")[0] for u in units}
    assert kinds == {"file", "reversed", "shuffle"}
    assert len({u.hashseed for u in units}) == 12
    assert {u.env_threads for u in units} == {1, 2}
    for u in units:
        assert sorted(u.tests) == sorted(TESTS)
        if u.order == "reversed":
            assert u.tests == TESTS[::-1]
        assert Unit.from_json(u.to_json()) == u
        assert json.loads(u.to_json())["seeds"] == {"torch": "fresh", "numpy": "fresh", "random": "fresh", "entropy": 0}
    again = measured(Planner(TESTS, axes(), master_seed=11))
    assert [again.next_unit(500, 2).hashseed for _ in range(3)] == [u.hashseed for u in units[:3]]


def test_shuffled_order_is_reproducible_from_its_recorded_seed():
    import random
    p = measured(Planner(TESTS, axes(orders=["shuffle"], determinism=False), master_seed=3))
    u = p.next_unit(500, 2)
    seed = int(u.order.split(":")[1])
    expected = list(TESTS)
    random.Random(seed).shuffle(expected)
    assert u.tests == expected


def test_pinned_families_and_switched_off_axes():
    p = measured(Planner(TESTS, axes(rng=["numpy"], hashseed=False, determinism=False, threads=[3]), master_seed=1))
    u = p.next_unit(500, 2)
    assert u.seeds == {"torch": 0, "numpy": "fresh", "random": 0, "entropy": 0}   # families not varied stay pinned
    assert u.hashseed == "0" and u.deterministic is None and u.env_threads is None and u.threads == [3]


def test_budget_goes_to_tests_that_draw_fresh_randomness():
    p = Planner(TESTS, axes(), master_seed=1, durations={t: 0.01 for t in TESTS})
    p.next_unit(500, 2)
    # test_0 draws fresh randomness (different end states), test_1 reseeds itself (same state)
    p.record([row(TESTS[0], 0, drew=True, sig=[("torch", "a")]), row(TESTS[0], 0, drew=True, sig=[("torch", "b")]),
              row(TESTS[1], 0, drew=True, sig=[("torch", "z")]), row(TESTS[1], 0, drew=True, sig=[("torch", "z")])]
             + [row(t, 0) for t in TESTS[2:]], unit_seconds=4.0, startup=2.0)
    u = p.next_unit(500, 2)
    assert u.caps[TESTS[0]] > 1
    assert u.caps[TESTS[1]] == 1 and u.caps[TESTS[2]] == 1
    assert u.rounds == max(u.caps.values())


def test_flaky_tests_stop_and_the_budget_ends_the_plan():
    p = Planner(TESTS[:2], axes(), master_seed=1)
    p.record([row(TESTS[0], 0, "pass"), row(TESTS[0], 1, "fail"), row(TESTS[1], 0)], 3.0, 1.0)
    assert p.satisfied(TESTS[0]) and not p.satisfied(TESTS[1])
    assert p.next_unit(500, 2).tests == [TESTS[1]]
    assert p.next_unit(seconds_left=0.5, workers=2) is None
    assert "proven flaky" == p.confidence(TESTS[0])
    assert "rate <" in p.confidence(TESTS[1])


def test_runs_limit_satisfies_tests_after_n_executions():
    p = Planner(TESTS[:1], axes(), master_seed=1, runs=3)
    p.record([row(TESTS[0], i) for i in range(3)])
    assert p.satisfied(TESTS[0]) and p.next_unit(500, 2) is None


def test_a_test_that_hung_runs_alone_a_few_times_then_stops():
    p = Planner(TESTS[:2], axes(), master_seed=1)
    p.record([row(TESTS[0], 0, "fail", outcome="timeout"), row(TESTS[1], 0)])
    lone = [p.next_unit(500, 2) for _ in range(3)]
    assert all(u.tests == [TESTS[0]] and u.rounds == 1 and u.exclusive and u.kind == "alone" for u in lone)
    assert p.next_unit(500, 2).tests == [TESTS[1]]


def test_a_rerun_alone_waits_for_the_machine_and_nothing_starts_beside_it():
    p = Planner(TESTS[:2], axes(), master_seed=1)
    p.record([row(TESTS[0], 0, "fail", outcome="timeout"), row(TESTS[1], 0)])
    busy = Unit(id=50, tests=[TESTS[1]])
    assert p.next_unit(500, 2, running=[busy]) is None
    lone = p.next_unit(500, 2)
    assert lone.exclusive and p.next_unit(500, 2, running=[lone]) is None


def test_the_survey_splits_the_suite_across_the_workers_once():
    p = Planner(TESTS, axes(), master_seed=1)
    first = p.next_unit(500, 2)
    second = p.next_unit(500, 2, running=[first])
    assert first.tests == TESTS[:3] and second.tests == TESTS[3:]
    assert first.kind == second.kind == "survey" and first.caps == {t: 2 for t in TESTS[:3]}
    assert p.next_unit(500, 2, running=[first, second]) is None          # every test is being timed
    p.record([row(t, first.id) for t in first.tests], unit=first)
    assert sorted(p.next_unit(500, 2, running=[second]).tests) == TESTS[:3]   # the timed half goes on


def test_a_survey_unit_cut_short_hands_the_rest_of_its_chunk_on():
    p = Planner(TESTS, axes(), master_seed=1)
    first = p.next_unit(500, 1)
    assert first.tests == TESTS and first.max_seconds == 15.0
    p.record([row(TESTS[0], first.id)], unit=first)        # it stopped after one test
    second = p.next_unit(500, 1)
    assert second.kind == "survey" and second.tests == TESTS[1:]
    p.record([row(TESTS[1], second.id)], unit=second)      # cut short again: the rest is still surveyed
    third = p.next_unit(500, 1)
    assert third.kind == "survey" and third.tests == TESTS[2:]
    p.record([], unit=third, missing={TESTS[2]})            # not collected: it runs with the fast ones
    assert p.test_seconds[TESTS[2]] == 0.0 and TESTS[3] not in p.test_seconds
    fourth = p.next_unit(500, 1)
    assert fourth.kind == "survey" and fourth.tests == TESTS[3:]
    p.record([], unit=fourth)                              # a unit that timed nothing twice (stalled):
    p.record([], unit=p.next_unit(500, 1))                 # no more surveys for its tests
    assert p.next_unit(500, 1).kind == "fast"


def test_known_durations_spare_the_survey():
    p = Planner(TESTS, axes(), master_seed=1, durations={t: 0.01 for t in TESTS})
    assert p.next_unit(500, 2).kind == "fast"


def test_slow_tests_take_turns_and_never_join_the_fast_units():
    slow = TESTS[0]
    p = Planner(TESTS, axes(), master_seed=1, budget=150.0,
                durations={slow: 20.0, **{t: 0.01 for t in TESTS[1:]}})
    units = []
    for _ in range(8):
        u = p.next_unit(500, 2, running=[u for u in units[-1:]])
        units.append(u)
    fast = [u for u in units if u.kind == "fast"]
    turns = [u for u in units if u.kind == "slow"]
    assert fast and turns and all(slow not in u.tests for u in fast)
    assert all(u.tests == [slow] and u.rounds == 1 for u in turns)
    # at most half the workers run slow turns: with one already running, the next is fast
    assert p.next_unit(500, 2, running=[turns[0]]).kind == "fast"
    assert p.timeout_for(turns[0], 60.0) == 100.0 and p.timeout_for(fast[0], 60.0) == 60.0


def test_slow_tests_that_never_ran_get_every_worker_once_the_fast_ones_have_run():
    slow = TESTS[:2]
    p = Planner(TESTS, axes(), master_seed=1, budget=150.0,
                durations={**{t: 20.0 for t in slow}, **{t: 0.01 for t in TESTS[2:]}})
    turn = p.next_unit(500, 2, running=[])
    p.record([row(t, 1) for t in TESTS[2:]])              # every fast test has run once
    first = p.next_unit(500, 2, running=[turn])
    assert (turn.kind, turn.tests, first.kind, first.tests) == ("slow", slow[:1], "slow", slow[1:])
    p.record([row(t, 2, duration=20.0) for t in slow])    # now every slow test has run too
    assert p.next_unit(500, 2, running=[first]).kind == "fast"


def test_slow_tests_wait_after_their_first_pass_until_the_drawing_fast_tests_reach_the_floor():
    from audit.flaky.plan import DRAWING_FLOOR
    slow, fast = TESTS[0], TESTS[1:]
    p = Planner(TESTS, axes(), master_seed=1, budget=150.0,
                durations={slow: 20.0, **{t: 0.01 for t in fast}})
    p.record([row(slow, 1, duration=20.0)] + [row(t, 1, drew=True) for t in fast])   # one pass each
    kinds = [p.next_unit(500, 2, running=[]).kind for _ in range(6)]
    assert kinds == ["fast"] * 6
    plan = p.describe(seconds_left=150.0, workers=2)
    assert plan["fast"]["drawing"] == 5 and plan["fast"]["drawing_executions_each"] >= DRAWING_FLOOR
    p.record([row(t, 2 + i, drew=True) for t in fast for i in range(DRAWING_FLOOR)])
    assert "slow" in [p.next_unit(500, 2, running=[]).kind for _ in range(4)]


def test_a_test_that_needs_much_of_the_memory_runs_alone():
    p = Planner(TESTS[:3], axes(), master_seed=1, durations={t: 0.01 for t in TESTS[:3]}, memory_mb=1000.0)
    p.record([row(TESTS[0], 1, peak_rss_mb=500.0), row(TESTS[1], 1, peak_rss_mb=50.0),
              row(TESTS[2], 1, peak_rss_mb=50.0)])
    units = [p.next_unit(500, 2) for _ in range(6)]
    alone = [u for u in units if u and u.exclusive]
    assert alone and all(u.tests == [TESTS[0]] for u in alone)
    assert all(TESTS[0] not in u.tests for u in units if u and not u.exclusive)


def test_the_plan_says_what_each_kind_of_test_gets():
    p = Planner(TESTS, axes(), master_seed=1, budget=150.0, durations={TESTS[0]: 30.0, **{t: 0.01 for t in TESTS[1:]}})
    plan = p.describe(seconds_left=150.0, workers=2)
    assert plan["pass_seconds"] == 30.05 and plan["fast"]["tests"] == 5 and plan["slow"]["tests"] == 1
    assert plan["slow"]["executions_each"] == 4 and plan["fast"]["executions_each"] >= 20
    assert plan["slow"]["rate_bound"] > 0.5 > plan["fast"]["rate_bound"]


def test_verdicts():
    assert decide([row("t", 0, "pass"), row("t", 1, "fail")]) == "flaky"
    assert decide([row("t", 0, "fail"), row("t", 1, "fail")]) == "fail"
    assert decide([row("t", 0, "fail", outcome="error")]) == "error"
    assert decide([row("t", 0, "fail", outcome="timeout")]) == "error"
    assert decide([row("t", 0, "skip")]) == "skip"
    assert decide([row("t", 0, "pass"), row("t", 1, "skip")]) == "pass"
    assert decide([]) == "not run"      # never "error": a test the audit never reached did nothing wrong
    v = summarise("t", [row("t", 0, "pass")] * 3 + [row("t", 1, "fail", masked=True, digest="call: boom")])
    assert (v.verdict, v.executions, v.failures, v.masked) == ("flaky", 4, 1, 1)
    assert v.interval[0] < 0.25 < v.interval[1] and "rerunfailures" in v.evidence
    assert v.failing_settings[0].digest == "call: boom" and v.to_json()["causes"] == []


def test_a_pass_is_weak_evidence_until_its_executions_bound_the_rate():
    weak = summarise("t", [row("t", 0)] * 58, evidence_rate=0.05)
    strong = summarise("t", [row("t", 0)] * 59, evidence_rate=0.05)
    assert (weak.verdict, weak.evidence_strength) == ("pass", "weak")
    assert (strong.verdict, strong.evidence_strength) == ("pass", "strong")
    assert summarise("t", [row("t", 0)] * 30, evidence_rate=0.1).evidence_strength == "strong"
    flaky = summarise("t", [row("t", 0), row("t", 1, "fail")])
    assert flaky.evidence_strength is None and flaky.to_json()["evidence_strength"] is None
    # failing every time is strong evidence only once it rules out a flake failing half the time
    once = summarise("t", [row("t", 0, "fail")])
    five, six = (summarise("t", [row("t", i, "fail") for i in range(n)]) for n in (5, 6))
    assert [(v.verdict, v.evidence_strength) for v in (once, five, six)] == \
        [("fail", "weak"), ("fail", "weak"), ("fail", "strong")]
    from audit.report.flaky_table import verdict_text
    assert verdict_text(once) == "fail (weak evidence)" and verdict_text(six) == "fail"
    never = summarise("t", [], not_run_reason="the budget ended before it got a turn")
    assert (never.verdict, never.executions, never.not_run_reason) == ("not run", 0, "the budget ended before it got a turn")
    assert never.to_json()["not_run_reason"] == never.not_run_reason


def test_repro_candidates_shortest_first_with_the_tests_that_ran_before():
    rows = [row("a", 4, rnd=0), row("b", 4, rnd=0), row("c", 4, "fail", rnd=0), row("a", 4, rnd=1)]
    unit = {"hashseed": "99", "env_threads": 2, "deterministic": "on", "seeds": {}}
    cands = repro.candidates([rows[2]], {4: rows}, {4: unit}, ["-x"])
    assert [c.preceding for c in cands] == [[], ["a", "b"]]
    cmd = cands[1].command()
    assert cmd.startswith("PYTHONHASHSEED=99 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python -m pytest")
    assert " -x a b c " in cmd and "--audit-seed-base=5" in cmd and "--audit-deterministic=off" in cmd
    assert "--audit-threads=1" in cmd and "--audit-seed-torch=fresh" in cmd
    rerun = repro.build(row("c", 4, "fail", attempt=2, seeds={"torch": 42}), unit, [], [])
    assert "--audit-seed-torch=42" in rerun.command() and "--force-reruns=0" in rerun.command()


def test_a_hang_under_load_counts_only_if_it_hangs_alone_too():
    loaded = row("t", 1, "fail", outcome="timeout", digest="timeout: still running after 60s")
    clean = [row("t", 1)] * 3
    v = summarise("t", clean + [loaded] + [row("t", 2, alone=True)] * 2)
    assert (v.verdict, v.failures, v.executions) == ("pass", 0, 5)
    assert "1 timeout beside other tests not counted: it ran clean alone 2 times" in v.evidence
    assert v.outcomes["timeout"] == 1
    hung_alone = summarise("t", clean + [loaded, dict(loaded, alone=True)])
    assert hung_alone.verdict == "flaky" and "hung or crashed running alone too" in hung_alone.evidence
    only = summarise("t", [loaded])
    assert only.verdict == "error" and "not yet rerun alone" in only.evidence


def test_one_warm_up_execution_does_not_keep_a_fast_test_slow():
    stored = {t: 0.01 for t in TESTS} | {TESTS[0]: 0.32, TESTS[1]: 2.0}   # the last run's means
    p = Planner(TESTS, axes(), master_seed=1, durations=stored)
    assert p.slow(TESTS[0]) and p.slow(TESTS[1])
    p.record([row(TESTS[0], 1, duration=0.06), row(TESTS[1], 1, duration=1.9)])
    assert not p.slow(TESTS[0])          # median of 0.32 and 0.06: its first run here was a warm-up
    assert p.slow(TESTS[1])              # a test that is slow every time stays slow
    p.record([row(TESTS[0], 2, duration=0.9)] + [row(TESTS[0], 3 + i, duration=0.05) for i in range(3)])
    assert p.test_seconds[TESTS[0]] == pytest.approx(0.055)  # the warm-up and one outlier barely count


def test_detection_holds_the_handover_for_starved_drawing_tests_but_leaves_attribution_its_floor():
    import time
    from types import SimpleNamespace as NS
    from audit.flaky.engine import ATTRIBUTION_FLOOR, _Audit
    from audit.flaky.plan import DRAWING_FLOOR
    p = Planner(TESTS, axes(), master_seed=1, durations={t: 0.01 for t in TESTS})
    p.record([row(TESTS[0], 1), row(TESTS[0], 2, "fail")] + [row(t, 1, drew=True) for t in TESTS[1:]])
    audit = NS(planner=p, state=NS(meta={}), spent_before=0.0, t0=time.monotonic(), flaky_cfg=NS(budget=150.0))
    assert not _Audit._may_hand_over(audit)                  # a flaky test, but the drawing ones have 1 each
    audit.spent_before = (1 - ATTRIBUTION_FLOOR) * 150.0
    assert _Audit._may_hand_over(audit)                      # attribution keeps its floor of the budget
    audit.spent_before = 0.0
    p.record([row(t, 3 + i, drew=True) for t in TESTS[1:] for i in range(DRAWING_FLOOR)])
    assert _Audit._may_hand_over(audit)
