"""The history store: one SQLite file that every ``audit flaky`` / ``audit mutate`` run is written to.

The weekly report and the pre-release review read it; nothing else keeps state between runs.
Each run is one row in ``runs`` (when, which commit and branch, settings, the full result JSON)
plus one row per test (``tests``) or per mutant (``mutants``), written in one transaction.

Why SQLite and these pragmas: CI jobs and developers may record into the same file at once, so
the file is in WAL mode with a busy timeout and every write takes the write lock up front
(``BEGIN IMMEDIATE``). The schema version lives in ``PRAGMA user_version`` and only ever moves
forward through ``MIGRATIONS``; a file that is not ours, is damaged, or was written by a newer
ml-audit is refused with a clear error and left exactly as it was.
"""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import audit
from audit.errors import AuditError
from audit.history import catalog_fields, covers_part, load_flaky, load_mutate, result_kind
from audit.model import flaky as flaky_model
from audit.model import mutate as mutate_model
from audit.model.flaky import FlakyResult
from audit.model.mutate import Mutant, MutateResult

FLAKY_SCHEMA = flaky_model.SCHEMA
MUTATE_SCHEMA = mutate_model.SCHEMA


# "MLAU": marks the file as an ml-audit store (PRAGMA application_id), so a foreign SQLite
# database is never mistaken for an empty store and written into.
APPLICATION_ID = 0x4D4C4155
BUSY_TIMEOUT_MS = 30_000
_SQLITE_MAGIC = b"SQLite format 3\x00"

# One entry per schema version; entry i takes a store from version i to i + 1. Append only.
MIGRATIONS: list[str] = [
    # 1: runs, per-test verdicts, per-mutant outcomes.
    """
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL CHECK (kind IN ('flaky', 'mutate')),
        project     TEXT NOT NULL,
        commit_sha  TEXT,
        branch      TEXT,
        started_at  TEXT NOT NULL,          -- ISO 8601, UTC
        duration    REAL,                   -- seconds
        settings    TEXT NOT NULL,          -- JSON
        score       REAL,                   -- mutation score 0-100 (mutate runs)
        result      TEXT NOT NULL           -- the full result JSON, as handed in
    );
    CREATE TABLE tests (
        run_id           INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        nodeid           TEXT NOT NULL,
        verdict          TEXT NOT NULL,
        executions       INTEGER NOT NULL,
        failures         INTEGER NOT NULL,
        rate             REAL NOT NULL,
        rate_low         REAL,
        rate_high        REAL,
        failing_settings TEXT NOT NULL,     -- JSON list
        repro            TEXT,
        causes           TEXT NOT NULL,     -- JSON list
        PRIMARY KEY (run_id, nodeid)
    );
    CREATE TABLE mutants (
        run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        mutant_id  TEXT NOT NULL,
        operator   TEXT NOT NULL,
        path       TEXT NOT NULL,
        line       INTEGER,
        function   TEXT,
        status     TEXT NOT NULL,
        diff       TEXT NOT NULL,
        killed_by  TEXT NOT NULL,           -- JSON list of node ids
        PRIMARY KEY (run_id, mutant_id)
    );
    """,
    # 2: test durations (the report's slowest tests and rerun cost), the ml-audit version that
    # wrote each run, whether a mutate run covered only changed lines, and the report's indexes.
    """
    ALTER TABLE tests ADD COLUMN mean_duration REAL;
    ALTER TABLE tests ADD COLUMN total_duration REAL;
    ALTER TABLE runs ADD COLUMN tool_version TEXT;
    ALTER TABLE runs ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_by_kind_time ON runs (kind, started_at);
    CREATE INDEX runs_by_commit ON runs (commit_sha);
    CREATE INDEX mutants_by_status ON mutants (run_id, status);
    """,
    # 3: per mutant, whether an ML operator made it and the kind of test that kills it
    # (ml-audit.mutate/2); rows recorded before are filled from the operator catalog on reading.
    """
    ALTER TABLE mutants ADD COLUMN ml INTEGER;
    ALTER TABLE mutants ADD COLUMN killer TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Run:
    """One recorded run (without its per-test / per-mutant rows)."""

    id: int
    kind: str
    project: str
    commit: str | None
    branch: str | None
    started_at: datetime
    duration: float | None
    settings: dict
    score: float | None
    partial: bool
    tool_version: str | None

    @property
    def label(self) -> str:
        sha = (self.commit or "no-commit")[:8]
        return f"run {self.id} ({self.kind}, {self.started_at:%Y-%m-%d %H:%M}, {sha})"


# ---------------------------------------------------------------------------------------------
# Conversions shared by the store, the report and the review.

def to_utc(value: datetime | str | float | int | None) -> datetime:
    """A timezone-aware UTC datetime from a datetime, an ISO 8601 string or a Unix time."""
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), timezone.utc)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise AuditError(f"not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, datetime):
        raise AuditError(f"not a time: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _as_json(result: Any) -> dict:
    """A result as its JSON dict: results model objects are written with their own ``to_json``."""
    return result.to_json() if hasattr(result, "to_json") else result


# ---------------------------------------------------------------------------------------------

class Store:
    """The history store at *path*; created (with its folder) on first write.

    ``Store(path, create=False)`` opens an existing store only: a missing file is an error rather
    than an empty store. ``Store(path, readonly=True)`` is how readers (report, review) open it:
    never written, so a store in a read-only folder, or on a read-only mount, still reads.
    """

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if not self.path.exists():
            if readonly or not create:
                raise AuditError(f"no history store at {self.path}: run `audit flaky` or `audit mutate` first")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_file():
            raise AuditError(f"history store {self.path} is not a file")
        else:
            self._check_header()
        try:
            self._db = self._connect()
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._open()
        except sqlite3.OperationalError as exc:
            self.close()
            if "locked" in str(exc) or "busy" in str(exc) or "readonly" in str(exc):
                raise _unavailable(self.path, exc) from None
            raise AuditError(f"history store {self.path} cannot be opened ({exc}); it was left untouched") from None
        except sqlite3.DatabaseError as exc:
            self.close()
            raise AuditError(f"history store {self.path} is damaged or not an ml-audit store ({exc}); "
                             "it was left untouched: move it away or point --db elsewhere") from None

    # -- opening, checking, migrating -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A connection; a reader's is read-only, and where even WAL's shared-memory file cannot
        be made (a read-only folder) it reads the file as it stands (SQLite's ``immutable``)."""
        options = dict(timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        if not self.readonly:
            return sqlite3.connect(self.path, **options)
        uri = self.path.resolve().as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, **options)
        try:
            db.execute("PRAGMA user_version").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, **options)

    def _check_header(self) -> None:
        with self.path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if head and head != _SQLITE_MAGIC:
            raise AuditError(f"{self.path} is not an SQLite database, so not an ml-audit history store; "
                             "it was left untouched: move it away or point --db elsewhere")

    def _open(self) -> None:
        self._check_identity()
        if self.readonly and self.version < SCHEMA_VERSION:
            raise AuditError(f"history store {self.path} was written by an older ml-audit (schema "
                             f"{self.version}); record one run into it (`audit flaky` or `audit mutate`) "
                             "to bring it up to date, then read it")
        if self.version < SCHEMA_VERSION:
            with self._write():  # re-checked under the write lock: another run may have migrated it
                if self._check_identity() < SCHEMA_VERSION:
                    for step in range(self.version, SCHEMA_VERSION):
                        for statement in MIGRATIONS[step].split(";"):
                            if statement.strip():
                                self._db.execute(statement)
                    self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {check}")
        if self.readonly:
            return
        try:  # WAL persists in the file once set; a read-only store keeps whatever mode it has
            self._db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            pass

    def _check_identity(self) -> int:
        """The schema version, after making sure the file is ours (or empty) and not from the future."""
        app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and (app_id != 0 or tables or version):
            raise AuditError(f"{self.path} is an SQLite database but not an ml-audit history store "
                             f"(application_id {app_id:#x}, {tables} schema objects); it was left untouched")
        if version > SCHEMA_VERSION:
            raise AuditError(f"history store {self.path} has schema version {version}, newer than this "
                             f"ml-audit ({audit.__version__}) knows ({SCHEMA_VERSION}): upgrade ml-audit")
        return version

    @property
    def version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding the write lock from the start: all of it is written or none."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _unavailable(self.path, exc) from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------

    def _insert_run(self, kind, result, project, commit, branch, started_at, duration, settings, score,
                    partial) -> int:
        cur = self._db.execute(
            "INSERT INTO runs (kind, project, commit_sha, branch, started_at, duration, settings, score,"
            " result, tool_version, partial) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, project or result.get("project") or "", commit, branch, _iso(to_utc(started_at)),
             _number(duration), json.dumps(settings if settings is not None else result.get("settings", {}),
                                           default=str, sort_keys=True),
             score, json.dumps(result, default=str), audit.__version__, int(bool(partial))),
        )
        return int(cur.lastrowid)

    def record_flaky(self, result: dict | FlakyResult, *, project: str | None = None, commit: str | None = None,
                     branch: str | None = None, started_at=None, duration: float | None = None,
                     settings: dict | None = None) -> int:
        """Record one ``audit flaky`` result (schema ml-audit.flaky/1, /2 or /3); returns its run id.

        Durations are the model's ``total_duration`` and ``mean_duration``; a result that does not
        state ``total_duration`` (version 1 did not have to) is stored with no durations, not zero.
        """
        data = _as_json(result)
        flaky = load_flaky(data)
        with self._write() as db:
            run_id = self._insert_run("flaky", data, project, commit, branch, started_at, duration,
                                      settings, None, False)
            rows = []
            for raw, t in zip(data["tests"], flaky.tests):
                timed = _number(raw.get("total_duration")) is not None
                rows.append((run_id, t.nodeid, t.verdict, t.executions, t.failures, t.rate,
                             _number(t.interval[0]), _number(t.interval[1]),
                             json.dumps([s.to_json() for s in t.failing_settings], default=str), t.repro,
                             json.dumps([c.to_json() for c in t.causes], default=str),
                             t.mean_duration if timed else None, t.total_duration if timed else None))
            db.executemany(
                "INSERT OR REPLACE INTO tests (run_id, nodeid, verdict, executions, failures, rate, rate_low,"
                " rate_high, failing_settings, repro, causes, mean_duration, total_duration)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return run_id

    def record_mutate(self, result: dict | MutateResult, *, project: str | None = None, commit: str | None = None,
                      branch: str | None = None, started_at=None, duration: float | None = None,
                      settings: dict | None = None) -> int:
        """Record one ``audit mutate`` result (schema ml-audit.mutate/1 or /2); returns its run id.

        The score is the model's (percent of the checked mutants). The run is marked partial when
        the result is (mutants left unchecked, or interrupted) or covers changed lines only
        (``since`` in the result or its settings): partial runs are kept out of score trends.
        """
        data = _as_json(result)
        mutate = load_mutate(data)
        given = settings if settings is not None else data.get("settings") or {}
        partial = covers_part(mutate, data) or bool(given.get("since"))
        with self._write() as db:
            run_id = self._insert_run("mutate", data, project, commit, branch, started_at, duration,
                                      settings, mutate.score, partial)
            db.executemany(
                "INSERT OR REPLACE INTO mutants (run_id, mutant_id, operator, path, line, function, status, diff,"
                " killed_by, ml, killer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, m.id, m.operator, m.path, m.line, m.function, m.status, m.diff, json.dumps(m.killed_by),
                  int(m.ml), m.killer) for m in mutate.mutants])
        return run_id

    def record(self, result: dict | FlakyResult | MutateResult, **meta) -> int:
        """Record a flaky or mutate result, whichever its schema says."""
        kind = result_kind(_as_json(result))
        return (self.record_flaky if kind == "flaky" else self.record_mutate)(result, **meta)

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def _run(row: sqlite3.Row) -> Run:
        return Run(id=row["id"], kind=row["kind"], project=row["project"], commit=row["commit_sha"],
                   branch=row["branch"], started_at=to_utc(row["started_at"]), duration=row["duration"],
                   settings=json.loads(row["settings"]), score=row["score"], partial=bool(row["partial"]),
                   tool_version=row["tool_version"])

    def runs(self, kind: str | None = None, *, since=None, until=None, commit: str | None = None,
             full_only: bool = False) -> list[Run]:
        """Recorded runs, oldest first, filtered by kind, time window [since, until] and commit."""
        where, args = [], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if since is not None:
            where.append("started_at >= ?")
            args.append(_iso(to_utc(since)))
        if until is not None:
            where.append("started_at <= ?")
            args.append(_iso(to_utc(until)))
        if commit:
            where.append("(commit_sha = ? OR commit_sha LIKE ?)")
            args.extend([commit, commit + "%" if len(commit) >= 7 else commit])
        if full_only:
            where.append("partial = 0")
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY started_at, id"
        return [self._run(r) for r in self._db.execute(sql, args)]

    def run(self, run_id: int) -> Run | None:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._run(row) if row else None

    def latest(self, kind: str, *, until=None, before=None, commit: str | None = None,
               full_only: bool = False) -> Run | None:
        """The most recent run of *kind* (at or before *until*, strictly before *before*, at *commit*)."""
        runs = self.runs(kind, until=until, commit=commit, full_only=full_only)
        if before is not None:
            cut = to_utc(before)
            runs = [r for r in runs if r.started_at < cut]
        return runs[-1] if runs else None

    def commits(self, kind: str, *, full_only: bool = False) -> set[str]:
        """The commits at which a run of *kind* was recorded."""
        sql = "SELECT DISTINCT commit_sha FROM runs WHERE kind = ? AND commit_sha IS NOT NULL"
        rows = self._db.execute(sql + (" AND partial = 0" if full_only else ""), (kind,))
        return {r[0] for r in rows}

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM runs").fetchone()[0]

    def tests(self, run_id: int) -> list[dict]:
        """Per-test rows of a flaky run, as dicts shaped like the flaky result's tests."""
        out = []
        for r in self._db.execute("SELECT * FROM tests WHERE run_id = ? ORDER BY nodeid", (run_id,)):
            out.append({"nodeid": r["nodeid"], "verdict": r["verdict"], "executions": r["executions"],
                        "failures": r["failures"], "rate": r["rate"], "interval": [r["rate_low"], r["rate_high"]],
                        "failing_settings": json.loads(r["failing_settings"]), "repro": r["repro"],
                        "causes": json.loads(r["causes"]), "mean_duration": r["mean_duration"],
                        "total_duration": r["total_duration"]})
        return out

    def mutants(self, run_id: int, status: str | None = None) -> list[Mutant]:
        """The mutants of a mutate run (those with *status*, if given), by file and line."""
        sql, args = "SELECT * FROM mutants WHERE run_id = ?", [run_id]
        if status:
            sql += " AND status = ?"
            args.append(status)
        return [self._mutant(r) for r in self._db.execute(sql + " ORDER BY path, line, mutant_id", args)]

    @staticmethod
    def _mutant(r: sqlite3.Row) -> Mutant:
        ml, killer = (bool(r["ml"]), r["killer"]) if r["killer"] is not None else catalog_fields(r["operator"])
        return Mutant(id=r["mutant_id"], operator=r["operator"], path=r["path"], line=r["line"] or 0,
                      function=r["function"] or "", status=r["status"], diff=r["diff"],
                      killed_by=json.loads(r["killed_by"]), ml=ml, killer=killer)

    def result(self, run_id: int) -> dict:
        """The result JSON exactly as it was recorded."""
        row = self._db.execute("SELECT result FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise AuditError(f"no run {run_id} in the history store {self.path}")
        return json.loads(row["result"])

    def flaky_result(self, run_id: int) -> FlakyResult:
        """The recorded flaky result of run *run_id*, read through the results model."""
        return load_flaky(self.result(run_id))

    def mutate_result(self, run_id: int) -> MutateResult:
        """The recorded mutate result of run *run_id*, read through the results model."""
        return load_mutate(self.result(run_id))

    def test_history(self, nodeids: Iterable[str], *, since=None, until=None) -> dict[str, list[tuple[Run, dict]]]:
        """For each node id, its (run, test row) in every flaky run of the window, oldest first."""
        wanted = set(nodeids)
        runs = {r.id: r for r in self.runs("flaky", since=since, until=until)}
        out: dict[str, list[tuple[Run, dict]]] = {n: [] for n in wanted}
        if not runs or not wanted:
            return out
        for run_id, run in runs.items():
            for t in self.tests(run_id):
                if t["nodeid"] in wanted:
                    out[t["nodeid"]].append((run, t))
        for series in out.values():
            series.sort(key=lambda pair: (pair[0].started_at, pair[0].id))
        return out


def _unavailable(path: Path, exc: Exception) -> AuditError:
    if "readonly" in str(exc):
        return AuditError(f"history store {path} is read-only: nothing can be recorded in it ({exc})")
    return AuditError(f"history store {path} stayed locked by another process for over "
                      f"{BUSY_TIMEOUT_MS // 1000} s ({exc}); nothing was written: try again")


def store_path(cfg, override: str | None = None) -> Path:
    """The store file for a project: ``--db`` if given, else ``[tool.audit] db`` under the root."""
    path = Path(override or cfg.db).expanduser()
    return path if path.is_absolute() else Path(cfg.root) / path
