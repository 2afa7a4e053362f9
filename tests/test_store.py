"""The history store: round trips, migrations, refusal of foreign or damaged files, concurrency."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from audit.errors import AuditError
from audit.model.flaky import FlakyResult
from audit.model.mutate import GOLDEN, MutateResult
from audit.store import APPLICATION_ID, FLAKY_SCHEMA, MIGRATIONS, MUTATE_SCHEMA, SCHEMA_VERSION, Store
from test_store_history import build_history, load


def _flaky(nodeid: str | None = None) -> dict:
    """Real flaky-A, cut down to one test (the first flaky one, or *nodeid*)."""
    data = load("flaky-A")
    pick = next(t for t in data["tests"] if (t["nodeid"] == nodeid if nodeid else t["verdict"] == "flaky"))
    data["tests"] = [pick]
    return data


def test_round_trip_of_a_flaky_run(tmp_path):
    data = load("flaky-A")
    model = FlakyResult.from_json(data)
    with Store(tmp_path / "reports" / "audit.sqlite") as store:
        run_id = store.record_flaky(data, project="p", commit="c0ffee", branch="main",
                                    started_at="2026-11-01T10:00:00Z", duration=12.5, settings={"budget": 5})
        run = store.run(run_id)
        assert (run.kind, run.commit, run.branch, run.duration, run.settings) == ("flaky", "c0ffee", "main", 12.5,
                                                                                  {"budget": 5})
        assert run.started_at.isoformat() == "2026-11-01T10:00:00+00:00"
        rows = {t["nodeid"]: t for t in store.tests(run_id)}
        assert set(rows) == {t.nodeid for t in model.tests}
        for t in model.tests:
            row = rows[t.nodeid]
            assert (row["verdict"], row["executions"], row["failures"], row["rate"], row["interval"]) == \
                   (t.verdict, t.executions, t.failures, t.rate, list(t.interval))
            assert row["causes"] == [c.to_json() for c in t.causes]
            assert (row["mean_duration"], row["total_duration"]) == (t.mean_duration, t.total_duration)
        assert store.flaky_result(run_id).to_json() == model.to_json()
        assert store.result(run_id) == data


def test_a_model_object_is_recorded_as_its_json(tmp_path):
    model = MutateResult.from_json(load("mutate-B"))
    with Store(tmp_path / "a.sqlite") as store:
        run_id = store.record(model)
        assert store.result(run_id) == model.to_json() and store.run(run_id).score == pytest.approx(model.score)


def test_round_trip_of_a_mutate_run(tmp_path):
    data = load("mutate-A")
    model = MutateResult.from_json(data)
    with Store(tmp_path / "a.sqlite") as store:
        run_id = store.record_mutate(data, commit="abc", started_at="2026-11-02T00:00:00Z")
        stored = {m.id: m for m in store.mutants(run_id)}
        assert {m.id: m for m in model.mutants} == stored  # every field, ml and killer included
        assert any(m.ml for m in stored.values()) and {m.killer for m in stored.values()} > {GOLDEN}
        assert store.run(run_id).score == pytest.approx(model.score) and not store.run(run_id).partial
        assert store.mutate_result(run_id).to_json() == model.to_json()   # nothing the model holds is lost


def test_durations_are_the_models_fields_and_nothing_else(tmp_path):
    """Only ``total_duration`` (and the mean the model derives from it) is read; the other
    spellings a reader once guessed at are not, and a result without it stores no durations."""
    data = _flaky()
    (test,) = data["tests"]
    model = FlakyResult.from_json(data).tests[0]
    assert test["total_duration"] > 0
    unstated = _flaky()
    for key in ("total_duration", "mean_duration"):
        del unstated["tests"][0][key]
    unstated["tests"][0].update(duration=0.5, time=2.0, durations=[0.5, 1.5])
    with Store(tmp_path / "audit.sqlite") as store:
        (row,) = store.tests(store.record_flaky(data))
        assert (row["mean_duration"], row["total_duration"]) == (model.mean_duration, model.total_duration)
        (row,) = store.tests(store.record_flaky(unstated))
        assert (row["mean_duration"], row["total_duration"]) == (None, None)


def test_the_score_is_recomputed_by_the_model_never_read_as_a_fraction(tmp_path):
    """A version 1 result stating ``score: 0.8`` is not turned into 80 points: the score is the
    model's Tally over the mutants (none here, so no score)."""
    old = {"schema": "ml-audit.mutate/1", "project": "p", "score": 0.8, "mutants": []}
    listed = load("mutate-A")
    listed["schema"], listed["score"] = "ml-audit.mutate/1", 0.36
    with Store(tmp_path / "audit.sqlite") as store:
        assert store.run(store.record_mutate(old)).score is None
        assert store.run(store.record_mutate(listed)).score == pytest.approx(MutateResult.from_json(listed).score)


def test_version_1_mutants_get_ml_and_killer_from_the_operator_catalog(tmp_path):
    data = load("mutate-A")
    data["schema"] = "ml-audit.mutate/1"
    for m in data["mutants"]:
        del m["ml"], m["killer"]
    with Store(tmp_path / "audit.sqlite") as store:
        stored = {m.id: m for m in store.mutants(store.record_mutate(data))}
    real = {m["id"]: m for m in load("mutate-A")["mutants"]}
    assert {i: (m.ml, m.killer) for i, m in stored.items()} == {i: (m["ml"], m["killer"]) for i, m in real.items()}


def test_partial_runs_are_stored_as_partial(tmp_path):
    interrupted = MutateResult.from_json(load("mutate-A"))
    interrupted.interrupted = True          # what `audit mutate` saves on Ctrl-C
    assert interrupted.to_json()["partial"] is True
    with Store(tmp_path / "audit.sqlite") as store:
        full = store.record(load("mutate-A"))
        runs = [store.record(interrupted.to_json()), store.record(load("mutate-D-since")),
                store.record(load("mutate-A"), settings={"since": "HEAD~1"}),
                store.record(dict(load("mutate-A"), partial=True))]
        assert [store.run(r).partial for r in runs] == [True, True, True, True]
        assert [r.id for r in store.runs("mutate", full_only=True)] == [full]


def test_bad_results_are_refused_and_nothing_is_written(tmp_path):
    with Store(tmp_path / "a.sqlite") as store:
        with pytest.raises(AuditError, match="schema"):
            store.record_flaky({"schema": MUTATE_SCHEMA, "mutants": []})
        with pytest.raises(AuditError, match="nodeid"):
            store.record_flaky({"schema": FLAKY_SCHEMA, "tests": [{"verdict": "pass"}]})
        bad = _flaky()
        bad["tests"].append({"nodeid": "t::two", "executions": "many"})
        with pytest.raises(AuditError, match="does not match its schema"):
            store.record_flaky(bad)
        assert store.count() == 0
        assert store._db.execute("SELECT count(*) FROM tests").fetchone()[0] == 0


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (name TEXT)")
    db.execute("INSERT INTO customers VALUES ('ada')")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(AuditError, match="not an ml-audit history store"):
        Store(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"not a database at all\n" * 10, b"SQLite format 3\x00" + b"\x07" * 400])
def test_a_damaged_or_non_sqlite_file_is_refused_and_left_untouched(tmp_path, content):
    path = tmp_path / "audit.sqlite"
    path.write_bytes(content)
    with pytest.raises(AuditError, match="left untouched") as info:
        Store(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.sqlite"]


def test_a_truncated_store_is_refused(tmp_path):
    path = tmp_path / "audit.sqlite"
    build_history(path).close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AuditError, match="damaged"):
        Store(path).runs()


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "audit.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(AuditError, match="newer"):
        Store(path)


def test_a_version_1_store_migrates_forward_keeping_its_runs(tmp_path):
    path = tmp_path / "audit.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO runs (kind, project, commit_sha, branch, started_at, duration, settings, score, result)"
               " VALUES ('flaky', 'p', 'abc', 'main', '2026-10-01T00:00:00.000000+00:00', 3.0, '{}', NULL, ?)",
               (json.dumps(_flaky()),))
    db.execute("INSERT INTO tests (run_id, nodeid, verdict, executions, failures, rate, rate_low, rate_high,"
               " failing_settings, repro, causes) VALUES (1, 't::a', 'flaky', 10, 2, 0.2, 0.05, 0.5, '[]', NULL, '[]')")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        (run,) = store.runs()
        assert (run.commit, run.partial, run.tool_version) == ("abc", False, None)
        assert store.tests(run.id)[0]["rate"] == 0.2 and store.tests(run.id)[0]["mean_duration"] is None
        new = store.record_flaky(_flaky(), started_at="2026-10-08T00:00:00Z")
        assert store.tests(new)[0]["mean_duration"] == FlakyResult.from_json(_flaky()).tests[0].mean_duration


def test_readers_do_not_create_a_store(tmp_path):
    with pytest.raises(AuditError, match="no history store"):
        Store(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "audit.sqlite"
    Store(path).close()
    writer = textwrap.dedent(f"""
        import sys
        from audit.store import Store, FLAKY_SCHEMA
        store = Store({str(path)!r})
        for i in range(15):
            tests = [{{"nodeid": f"t.py::test_{{sys.argv[1]}}_{{i}}_{{k}}", "verdict": "pass", "executions": 3,
                      "failures": 0, "rate": 0.0, "interval": [0, 1], "failing_settings": [], "repro": None,
                      "causes": []}} for k in range(20)]
            store.record_flaky({{"schema": FLAKY_SCHEMA, "project": "p", "settings": {{}}, "tests": tests}},
                               commit=sys.argv[1])
        store.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, name]) for name in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with Store(path) as store:
        runs = store.runs()
        assert len(runs) == 45 and len({r.id for r in runs}) == 45
        assert sorted(r.commit for r in runs) == ["a"] * 15 + ["b"] * 15 + ["c"] * 15
        assert all(len(store.tests(r.id)) == 20 for r in runs)
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_store_held_locked_too_long_is_a_clear_error_and_nothing_is_lost(tmp_path, monkeypatch):
    import audit.store as store_module

    path = tmp_path / "audit.sqlite"
    with Store(path) as store:
        store.record_flaky(_flaky(), started_at="2026-11-01T00:00:00Z")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 200)
        with Store(path) as store:
            with pytest.raises(AuditError, match="locked by another process"):
                store.record_flaky(_flaky(), started_at="2026-11-02T00:00:00Z")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with Store(path) as store:
        assert store.count() == 1
