"""A dated history of real audit results, and checks that the store keeps it.

The results in ``tests/data/results/`` are real ``to_json()`` output of ``audit flaky`` and
``audit mutate`` on sample_project, made by ``tests/data/make_results.py`` (run by hand). That
script takes a copy of the project through four states (see ``states.json``):

  A  as shipped                          flaky-A, mutate-A
  B  a gradient assert deleted           mutate-B
  C  one flaky test fixed, one added     flaky-C        (the added one has a hostile node id)
  D  predict_proba refactored            mutate-D-since (changed lines only), mutate-D-few

``build_history`` records them into a store dated as a CI schedule would have, so that the
store, report and review tests all read what the engines really emit. What each test expects
is derived from those files, not restated by hand.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import pytest

from audit.model.flaky import FlakyResult
from audit.model.mutate import MutateResult
from audit.model.schema import validate
from audit.store import Store

RESULTS = Path(__file__).resolve().parent / "data" / "results"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


@lru_cache(maxsize=None)
def _text(name: str) -> str:
    return (RESULTS / f"{name}.json").read_text(encoding="utf-8")


def load(name: str) -> dict:
    """A fresh copy of the recorded result *name* (e.g. ``flaky-A``) as JSON data."""
    return json.loads(_text(name))


STATES = json.loads((RESULTS / "states.json").read_text(encoding="utf-8"))
HOSTILE, WEAKENED, FIXED = STATES["hostile"], STATES["weakened"], STATES["fixed"]


def flaky_ids(name: str) -> set[str]:
    return {t.nodeid for t in FlakyResult.from_json(load(name)).tests if t.verdict == "flaky"}


def survivors(name: str) -> list:
    return [m for m in MutateResult.from_json(load(name)).mutants if m.status == "survived"]


COMMITS = {step: step.lower() * 40 for step in "ABCD"}
# (state, result, when): A three weeks back, then B, C and D inside the last week.
TIMELINE = [
    ("A", "flaky-A", NOW - timedelta(days=20)),
    ("A", "mutate-A", NOW - timedelta(days=20, hours=-1)),
    ("B", "mutate-B", NOW - timedelta(days=3)),
    ("C", "flaky-C", NOW - timedelta(days=2)),
    ("D", "mutate-D-since", NOW - timedelta(days=1)),
]
# What the weekly report of the last 7 days must conclude, from the files themselves.
EXPECTED = {"new": flaky_ids("flaky-C") - flaky_ids("flaky-A"),
            "still": flaky_ids("flaky-C") & flaky_ids("flaky-A"),
            "fixed": flaky_ids("flaky-A") - flaky_ids("flaky-C"),
            "failing": set()}


def build_history(path, timeline=TIMELINE) -> Store:
    """Record *timeline*'s results into a store at *path*; returns the open store."""
    store = Store(path)
    for step, name, when in timeline:
        data = load(name)
        store.record(data, project="tinyclf", commit=COMMITS[step], branch="main", started_at=when,
                     duration=data.get("seconds") or data.get("elapsed"))
    return store


def run_of(store: Store, name: str):
    """The run that recorded result *name* in a store made by build_history."""
    when = next(w for _, n, w in TIMELINE if n == name)
    (run,) = [r for r in store.runs() if r.started_at == when]
    return run


def test_the_fixtures_are_real_results_that_validate_against_the_shipped_schemas():
    names = sorted(p.stem for p in RESULTS.glob("*-*.json"))
    assert {"flaky-A", "flaky-C", "mutate-A", "mutate-B", "mutate-D-since", "mutate-D-few"} <= set(names)
    for name in names:
        data = load(name)
        validate(data)
        model = FlakyResult if data["schema"].startswith("ml-audit.flaky") else MutateResult
        again = model.from_json(data).to_json()
        # every field survives the model's round trip (a field the model gained since the file was
        # made is written with its default); the mean is re-derived from the rounded total
        for written, read in zip(data.get("tests", []), again.get("tests", [])):
            assert read.pop("mean_duration") == pytest.approx(written.pop("mean_duration"), abs=5e-5)
        # an older version is read and written back as the current one (flaky /2 -> /3)
        assert again.pop("schema").split("/")[1] >= data.pop("schema").split("/")[1], name
        assert _subset(data, again), name
        assert "rows" not in data


def _subset(small, big) -> bool:
    """Every key of *small* is in *big* with the same value, recursively (lists item by item)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_subset, small, big))
    return small == big


def test_the_states_differ_the_way_the_script_says():
    assert EXPECTED["new"] == {HOSTILE} and EXPECTED["fixed"] == {FIXED} and EXPECTED["still"]
    weakened = [m for m in survivors("mutate-B") if m.function == "consistency_loss" and m.operator == "drop_detach"]
    assert weakened and not [m for m in survivors("mutate-A") if m.function == "consistency_loss"
                             and m.operator == "drop_detach"]
    assert load("mutate-D-since")["since"] and load("mutate-D-few")["operators"] != load("mutate-A")["operators"]


def test_history_is_recorded_in_order(tmp_path):
    store = build_history(tmp_path / "audit.sqlite")
    runs = store.runs()
    assert [r.kind for r in runs] == ["flaky", "mutate", "mutate", "flaky", "mutate"]
    assert [r.commit for r in runs] == [COMMITS[s] for s, _, _ in TIMELINE]
    assert all(a.started_at < b.started_at for a, b in zip(runs, runs[1:]))
    flaky_now = {t["nodeid"] for t in store.tests(store.latest("flaky").id) if t["verdict"] == "flaky"}
    assert flaky_now == flaky_ids("flaky-C")
    assert store.latest("flaky", before=NOW - timedelta(days=7)).commit == COMMITS["A"]
    assert [r.partial for r in runs] == [False, False, False, False, True]  # the --since run


def test_mutate_score_is_the_models(tmp_path):
    store = build_history(tmp_path / "audit.sqlite")
    for name in ("mutate-A", "mutate-B"):
        run = run_of(store, name)
        assert run.score == pytest.approx(MutateResult.from_json(load(name)).score)
        assert run.score == pytest.approx(load(name)["score"], abs=0.01)
    last = store.latest("mutate", full_only=True)
    assert {(m.operator, m.function) for m in store.mutants(last.id, status="survived")} == \
           {(m.operator, m.function) for m in survivors("mutate-B")}
