"""The history store: round trips, migrations, refusal of foreign or damaged files, concurrency."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from audit.errors import AuditError
from audit.store import (APPLICATION_ID, FLAKY_SCHEMA, MIGRATIONS, MUTATE_SCHEMA, SCHEMA_VERSION, Store,
                         durations_of, mutation_score)
from test_store_history import flaky_result, mutate_result


def _flaky(nodeid="tests/test_a.py::test_one", **fields):
    test = {"nodeid": nodeid, "verdict": "flaky", "executions": 20, "failures": 5, "rate": 0.25,
            "interval": [0.1, 0.47], "failing_settings": [{"seed_torch": "fresh"}], "repro": "python -m pytest x",
            "causes": [{"source": "torch"}]}
    test.update(fields)
    return {"schema": FLAKY_SCHEMA, "project": "p", "settings": {"budget": 5}, "tests": [test]}


def test_round_trip_of_a_flaky_run(tmp_path):
    with Store(tmp_path / "reports" / "audit.sqlite") as store:
        run_id = store.record_flaky(_flaky(durations=[0.5, 1.5]), project="p", commit="c0ffee", branch="main",
                                    started_at="2026-11-01T10:00:00Z", duration=12.5, settings={"budget": 5})
        run = store.run(run_id)
        assert (run.kind, run.commit, run.branch, run.duration, run.settings) == ("flaky", "c0ffee", "main", 12.5,
                                                                                  {"budget": 5})
        assert run.started_at.isoformat() == "2026-11-01T10:00:00+00:00"
        (test,) = store.tests(run_id)
        assert test["verdict"] == "flaky" and test["failures"] == 5 and test["interval"] == [0.1, 0.47]
        assert test["causes"] == [{"source": "torch"}] and test["failing_settings"] == [{"seed_torch": "fresh"}]
        assert (test["mean_duration"], test["total_duration"]) == (1.0, 2.0)
        assert store.result(run_id)["tests"][0]["durations"] == [0.5, 1.5]


def test_round_trip_of_a_mutate_run_and_its_score(tmp_path):
    result = mutate_result({"drop_detach", "drop_eval"})
    with Store(tmp_path / "a.sqlite") as store:
        run_id = store.record_mutate(result, commit="abc", started_at="2026-11-02T00:00:00Z")
        mutants = store.mutants(run_id)
        assert len(mutants) == len(result["mutants"])
        by_id = {m["id"]: m for m in mutants}
        for m in result["mutants"]:
            stored = by_id[m["id"]]
            assert {k: stored[k] for k in ("operator", "path", "line", "function", "status", "diff", "killed_by")} == \
                   {k: m[k] for k in ("operator", "path", "line", "function", "status", "diff", "killed_by")}
        assert store.run(run_id).score == pytest.approx(mutation_score(result["mutants"]))
        assert not store.run(run_id).partial
        partial = store.record_mutate(result, settings={"since": "HEAD~1"})
        assert store.run(partial).partial
        assert [r.id for r in store.runs("mutate", full_only=True)] == [run_id]


def test_score_counts_timeouts_as_detected_and_reads_fractions_as_points():
    mutants = [{"status": s} for s in ("killed", "timeout", "survived", "no_coverage", "error")]
    assert mutation_score(mutants) == pytest.approx(50.0)
    assert mutation_score([], 0.8) == pytest.approx(80.0)
    assert mutation_score([], 73.0) == pytest.approx(73.0)
    assert mutation_score([]) is None


def test_durations_in_several_spellings():
    assert durations_of({"executions": 4, "duration": 0.5}) == (0.5, 2.0)
    assert durations_of({"executions": 4, "total_duration": 2.0}) == (0.5, 2.0)
    assert durations_of({"executions": 2, "durations": [1.0, 3.0]}) == (2.0, 4.0)
    assert durations_of({"executions": 3}) == (None, None)


def test_bad_results_are_refused_and_nothing_is_written(tmp_path):
    with Store(tmp_path / "a.sqlite") as store:
        with pytest.raises(AuditError, match="schema"):
            store.record_flaky({"schema": MUTATE_SCHEMA, "mutants": []})
        with pytest.raises(AuditError, match="nodeid"):
            store.record_flaky({"schema": FLAKY_SCHEMA, "tests": [{"verdict": "pass"}]})
        bad = _flaky()
        bad["tests"].append({"nodeid": "t::two", "executions": "many"})  # fails half-way through the write
        with pytest.raises(ValueError):
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
    with Store(path) as store:
        for week in range(3):
            store.record_flaky(flaky_result({}), started_at=f"2026-11-0{week + 1}T00:00:00Z")
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
               (str(_flaky()).replace("'", '"'),))
    db.execute("INSERT INTO tests (run_id, nodeid, verdict, executions, failures, rate, rate_low, rate_high,"
               " failing_settings, repro, causes) VALUES (1, 't::a', 'flaky', 10, 2, 0.2, 0.05, 0.5, '[]', NULL, '[]')")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        (run,) = store.runs()
        assert (run.commit, run.partial, run.tool_version) == ("abc", False, None)
        assert store.tests(run.id)[0]["rate"] == 0.2 and store.tests(run.id)[0]["mean_duration"] is None
        new = store.record_flaky(_flaky(duration=0.25), started_at="2026-10-08T00:00:00Z")
        assert store.tests(new)[0]["mean_duration"] == 0.25


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
