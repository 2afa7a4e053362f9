"""Executes units of work: one pytest interpreter with its settings, returning rows.

A ``Unit`` is self-contained and serialisable (``to_json``/``from_json``): the environment of
the interpreter (hash seed, thread variables), the tests in their order, and what the plugin
does inside (seed modes, determinism, rounds, thread counts). ``run_unit`` starts
``python -m pytest`` on it, watches the rows the plugin appends, kills an execution that runs
past the timeout, and turns a crash (segfault, ``os._exit``) into a row for the test that was
running, so one bad test never stops the audit. ``Pool`` keeps one unit per worker running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audit.project import pytest_command, pytest_env

POLL_SECONDS = 0.05
STALL_GRACE = 120.0   # seconds without news outside a test (import, collection) before giving up


@dataclass
class Unit:
    """One pytest invocation and what its plugin does; rows come back from ``run_unit``."""

    id: int
    tests: list[str]                      # node ids, in the order to run them
    order: str = "file"                   # file | reversed | shuffle:<seed> | given
    hashseed: str = "0"                   # PYTHONHASHSEED of the interpreter
    deterministic: str | None = None      # on | off | None (not varied)
    seeds: dict = field(default_factory=dict)   # family -> "fresh" | int
    seed_base: int = 0
    rounds: int = 1
    threads: list = field(default_factory=list)  # per-test torch thread counts, cycled by round
    thread_offset: int = 0
    env_threads: int | None = None        # OMP/MKL_NUM_THREADS at start (None: the default)
    runs_without_draws: int = 2           # executions of a test that draws no randomness
    max_runs_per_test: int = 1000
    caps: dict = field(default_factory=dict)   # node id -> most executions in this unit
    stop_when_flaky: bool = True
    max_seconds: float = 0.0              # stop starting rounds after this long (0: no limit)
    cuda: bool = False
    plugins_off: list = field(default_factory=list)   # pytest plugins not loaded (-p no:NAME)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Unit":
        return cls(**json.loads(text))

    def env(self) -> dict[str, str]:
        # idle OpenMP threads sleep instead of spinning: several sessions share the cores,
        # and spinning then costs seconds per parallel op without changing any result
        env = {"PYTHONHASHSEED": str(self.hashseed), "OMP_WAIT_POLICY": "PASSIVE"}
        if self.env_threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.env_threads)
        if self.cuda and self.deterministic == "on":
            env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        return env

    def files(self) -> list[str]:
        """The test files to give pytest: only those holding the unit's tests."""
        seen: dict[str, None] = {}
        for nodeid in self.tests:
            seen.setdefault(nodeid.split("::", 1)[0], None)
        return list(seen)


@dataclass
class UnitResult:
    unit: Unit
    rows: list[dict]
    returncode: int | None
    seconds: float
    events: list[dict] = field(default_factory=list)  # missing / end records
    log_tail: str = ""
    interrupted: bool = False
    startup: float | None = None    # seconds from launch until the first test could start


class Stopped(Exception):
    """Raised inside a worker when the audit is being stopped (Ctrl-C)."""


def _read_new(path: Path, offset: int) -> tuple[list[dict], int]:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # leave a half-written line for the next read
    records = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return records, offset + end


def run_unit(cfg, unit: Unit, timeout: float, workdir: Path,
             stop: threading.Event | None = None, procs: dict | None = None) -> UnitResult:
    """Run *unit* in a fresh interpreter and return its rows (never raises for a test's fault)."""
    workdir.mkdir(parents=True, exist_ok=True)
    unit_file = workdir / f"unit-{unit.id}.json"
    rows_file = workdir / f"rows-{unit.id}.jsonl"
    log_file = workdir / f"log-{unit.id}.txt"
    unit_file.write_text(unit.to_json())
    rows_file.unlink(missing_ok=True)
    off = [a for name in unit.plugins_off for a in ("-p", f"no:{name}")]
    # --maxfail=0 undoes a configured -x: an audit wants every test, failing or not
    cmd = pytest_command(cfg, "-q", "--maxfail=0", "-p", "no:randomly", *off, "--audit-enable",
                         f"--audit-unit={unit_file}", f"--audit-rows={rows_file}")
    # only the files holding the unit's tests are collected (when node ids name real files)
    files = unit.files()
    if all((Path(cfg.root) / f).is_file() for f in files):
        cmd = cmd[: len(cmd) - len(cfg.test_paths)] + files
    started = time.monotonic()
    with log_file.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=cfg.root, env=pytest_env(unit.env()), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    if procs is not None:
        procs[unit.id] = proc
    rows, events, offset = [], [], 0
    running: dict | None = None
    running_since = started
    interrupted = False
    ready_at = None
    last_activity = started
    try:
        while True:
            done = proc.poll() is not None
            new, offset = _read_new(rows_file, offset)
            if new:
                last_activity = time.monotonic()
            for rec in new:
                if rec["event"] == "start":
                    running, running_since = rec, time.monotonic()
                elif rec["event"] == "row":
                    rec["unit"], rec["hashseed"], rec["order"] = unit.id, unit.hashseed, unit.order
                    rows.append(rec)
                    running = None
                else:
                    if rec["event"] == "ready":
                        ready_at = time.monotonic() - started
                    events.append(rec)
            if done:
                break
            if stop is not None and stop.is_set():
                interrupted = True
                _kill(proc)
                break
            if running is not None and time.monotonic() - running_since > timeout:
                _kill(proc)
                rows.append(_synthetic(unit, running, "timeout",
                                       f"timeout: still running after {timeout:.0f}s", timeout))
                running = None
                break
            if running is None and time.monotonic() - last_activity > timeout + STALL_GRACE:
                _kill(proc)  # stuck outside any test: collection, a session fixture, exit
                events.append({"event": "stalled", "seconds": time.monotonic() - last_activity})
                break
            time.sleep(POLL_SECONDS)
    finally:
        if proc.poll() is None:
            _kill(proc)
        if procs is not None:
            procs.pop(unit.id, None)
    rc = proc.returncode
    if stop is not None and stop.is_set():
        interrupted = True  # killed by the pool on Ctrl-C, whichever loop test saw it first
    if running is not None and not interrupted:
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"interpreter exited with {rc}"
        rows.append(_synthetic(unit, running, "crashed", f"crashed: {how} during the test",
                               time.monotonic() - running_since))
    tail = log_file.read_text(errors="replace")[-4000:] if log_file.exists() else ""
    return UnitResult(unit, rows, rc, time.monotonic() - started, events, tail, interrupted, ready_at)


def _synthetic(unit: Unit, start: dict, outcome: str, digest: str, seconds: float) -> dict:
    """The row for an execution the plugin could not finish: it hung or took the interpreter down."""
    return {"event": "row", "nodeid": start["nodeid"], "round": start.get("round", 0),
            "attempt": start.get("attempt", 0), "seeds": {}, "seed_modes": unit.seeds,
            "seed_base": None, "threads": None, "deterministic": unit.deterministic,
            "phases": {"call": outcome}, "digest": digest, "duration": round(seconds, 3),
            "outcome": outcome, "masked": False, "klass": "fail", "draws": {},
            "fixture_draws": [], "uses_drawing_fixtures": [], "drew_any": False,
            "unit": unit.id, "hashseed": unit.hashseed, "order": unit.order}


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class Pool:
    """Keeps ``workers`` jobs running at once; each job is a callable run in its own thread.

    The scheduler asks ``next_job()`` for work whenever a worker is free and hands each result
    to ``on_result`` in the calling thread, so plan state needs no locks.
    """

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self.stop = threading.Event()
        self.procs: dict = {}

    def run(self, next_job, on_result) -> None:
        import queue

        results: queue.Queue = queue.Queue()
        busy = 0

        def worker(job):
            try:
                results.put((job, job(), None))
            except BaseException as exc:  # noqa: BLE001 - reported to the scheduler
                results.put((job, None, exc))

        try:
            while True:
                while busy < self.workers and not self.stop.is_set():
                    job = next_job()
                    if job is None:
                        break
                    busy += 1
                    threading.Thread(target=worker, args=(job,), daemon=True).start()
                if busy == 0:
                    return
                job, value, exc = results.get()
                busy -= 1
                if exc is not None:
                    raise exc
                on_result(job, value)
        except BaseException:
            self.stop.set()
            for proc in list(self.procs.values()):
                _kill(proc)
            while busy:
                job, value, exc = results.get()
                busy -= 1
                if exc is None and value is not None:
                    on_result(job, value)
            raise


def scratch_dir() -> Path:
    """A private folder outside the project for unit files, rows and logs."""
    return Path(tempfile.mkdtemp(prefix="ml-audit-flaky-"))
