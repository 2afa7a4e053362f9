"""Executes units of work: one pytest interpreter with its settings, returning rows.

A ``Unit`` is self-contained and serialisable (``to_json``/``from_json``): the environment of
the interpreter (hash seed, thread variables), the tests in their order, and what the plugin
does inside (seed modes, determinism, rounds, thread counts). ``run_unit`` runs it
through :mod:`audit.pytest_run`, which kills an execution that runs past the timeout and reports
the test a crash (segfault, ``os._exit``) took down; that becomes a row for the test, so one bad
test never stops the audit. ``Pool`` keeps one unit per worker running.
"""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audit.pytest_run import PytestRun, kill_group

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
    watch: list = field(default_factory=list)   # node ids whose first execution records the files it writes
    kind: str = "fast"                    # survey | fast | slow | alone (see audit.flaky.plan)
    exclusive: bool = False               # nothing else runs beside it (memory, a rerun of a hang)

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


def run_unit(cfg, unit: Unit, timeout: float, workdir: Path, stop: threading.Event | None = None,
             procs: dict | None = None, cwd: Path | None = None, forks=None) -> UnitResult:
    """Run *unit* in a fresh interpreter, or forked from one of *forks*' zygotes (in *cwd*,
    default ``cfg.run_dir``), and return its rows (never raises for a test's fault).

    A forked child that fails before its first test is run again fresh; when the fresh one gets
    further, the fork server is turned off for the rest of the audit."""
    workdir.mkdir(parents=True, exist_ok=True)
    unit_file = workdir / f"unit-{unit.id}.json"
    unit_file.write_text(unit.to_json())
    rows_file = workdir / f"rows-{unit.id}.jsonl"
    files = unit.files()   # only the files holding the unit's tests are collected (when they name real files)
    targets = files if all((Path(cfg.root) / f).is_file() for f in files) else None
    # --maxfail=0 undoes a configured -x: an audit wants every test, failing or not
    run = PytestRun(cfg, options=["-q", "--maxfail=0", "--audit-enable", f"--audit-unit={unit_file}",
                                  f"--audit-rows={rows_file}"],
                    targets=targets, env=unit.env(), plugins_off=unit.plugins_off,
                    rows_file=rows_file, log=workdir / f"log-{unit.id}.txt", cwd=cwd, forks=forks)
    limit = forks.ready_limit() if forks is not None else None
    out = run.run(test_timeout=timeout, stall=timeout + STALL_GRACE, stop=stop, procs=procs, key=unit.id,
                  ready_within=limit)
    if out.forked and out.startup is None and not out.interrupted:
        run.forks = None
        fresh = run.run(test_timeout=timeout, stall=timeout + STALL_GRACE, stop=stop, procs=procs, key=unit.id)
        if fresh.startup is not None:
            how = "hung" if out.stalled else (f"exited with {out.returncode}" if out.returncode is not None else "failed")
            forks.disable(f"a forked child {how} before its first test where a fresh interpreter did not")
        out = fresh
    elif forks is not None and out.startup is not None:
        (forks.child_startups if out.forked else forks.fresh_startups).append(out.startup)
    rows = [{**rec, "unit": unit.id, "hashseed": unit.hashseed, "order": unit.order, "alone": unit.exclusive}
            for rec in out.rows]
    if out.unfinished is not None:
        rows.append(_synthetic(unit, out.unfinished))
    return UnitResult(unit, rows, out.returncode, out.seconds, out.events, out.output_tail, out.interrupted,
                      out.startup)


def _synthetic(unit: Unit, unfinished: dict) -> dict:
    """The row for an execution the plugin could not finish: it hung or took the interpreter down."""
    return {"event": "row", **unfinished, "seeds": {}, "seed_modes": unit.seeds,
            "seed_base": None, "threads": None, "deterministic": unit.deterministic,
            "phases": {"call": unfinished["outcome"]}, "masked": False, "klass": "fail", "draws": {},
            "fixture_draws": [], "uses_drawing_fixtures": [], "drew_any": False,
            "unit": unit.id, "hashseed": unit.hashseed, "order": unit.order, "alone": unit.exclusive}


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
                kill_group(proc)
            while busy:
                job, value, exc = results.get()
                busy -= 1
                if exc is None and value is not None:
                    on_result(job, value)
            raise


def scratch_dir() -> Path:
    """A private folder outside the project for unit files, rows and logs."""
    return Path(tempfile.mkdtemp(prefix="ml-audit-flaky-"))
