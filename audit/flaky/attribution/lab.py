"""The lab: runs attribution's units of work two (or *workers*) at a time, within the budget.

Every experiment asks the lab for a unit with all sources pinned at a candidate setting except
those it releases, and hands batches of units (or other work, such as the trace) to
:meth:`Lab.run`. The lab keeps the clock and counts what was spent.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from audit.errors import AuditError
from audit.flaky.plan import Axes
from audit.flaky.runner import Pool, Unit, run_unit
from audit.flaky.sources import FAMILIES

PIN_SEEDS = (1234, 20261122, 777, 31337)      # pinned settings tried in turn until a test passes
PIN_HASHSEEDS = ("1", "2", "3", "4")


DEADLINE_GRACE = 3.0   # seconds a unit may run past the attribution deadline before it is stopped


class Lab:
    """Runs units in parallel and keeps the clock and the counters."""

    def __init__(self, cfg, workers: int, deadline: float, seed: int, progress=None, plugins_off=(), forks=None):
        self.cfg = cfg
        self.workers = workers
        self.deadline = deadline
        self.rand = random.Random(seed)
        self.progress = progress or (lambda **kw: None)
        self.workdir = Path(tempfile.mkdtemp(prefix="ml-audit-attribute-"))
        self.timeout = float(cfg.flaky.timeout)
        self.next_id = 0
        self.executions = 0
        self.interpreters = 0
        self.per_test: dict[str, int] = {}     # executions per node id
        self.last_batch = 5.0                  # seconds the last batch of jobs took
        axes = Axes.from_config(cfg.flaky)
        self.default_threads = axes.default_threads
        self.threads = axes.threads if len(axes.threads) > 1 else sorted({1, 2, axes.default_threads})
        self.plugins_off = list(plugins_off)
        self.forks = forks

    def close(self) -> None:
        """Remove the folder of unit files and rows: what the experiments measured is in the cases."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def room(self, most: float) -> bool:
        """Whether another batch fits: the time left exceeds what the last batch took (at most
        *most* seconds are asked for, at least two), so a small budget keeps going while its
        batches stay short and a large one keeps its margin."""
        return self.left() > max(2.0, min(most, self.last_batch))

    def unit(self, tests, *, pin: int, rounds: int = 1, release=(), order="file",
             hashseed: str | None = None, deterministic: str = "off", threads=None) -> Unit:
        """A unit with every source pinned at candidate *pin* except those in *release*."""
        seed = PIN_SEEDS[pin]
        if threads is None:
            threads = self.threads if "threads" in release else [self.default_threads]
        self.next_id += 1
        return Unit(id=self.next_id, tests=list(tests), order=order,
                    hashseed=hashseed or PIN_HASHSEEDS[pin],
                    deterministic="on" if "determinism" in release else deterministic,
                    seeds={f: ("fresh" if f in release else seed) for f in FAMILIES},
                    seed_base=self.rand.randrange(2 ** 32), rounds=rounds, threads=list(threads),
                    env_threads=threads[0] if len(threads) == 1 else None,
                    runs_without_draws=rounds, max_runs_per_test=rounds, stop_when_flaky=False,
                    max_seconds=max(1.0, self.left()), plugins_off=list(self.plugins_off))

    def run(self, jobs: list) -> list:
        """Run *jobs* (units, or callables for other work) in parallel; results in job order. The
        budget holds: no unit starts after the deadline (its result is None), and units still
        running a few seconds past it are stopped as Ctrl-C stops them, keeping their rows so far."""
        results: dict[int, object] = {}
        queue = list(enumerate(jobs))
        pool = Pool(self.workers)

        def next_job():
            if not queue or self.left() <= 0:
                return None
            i, job = queue.pop(0)
            if isinstance(job, Unit):
                return _Job(i, lambda: run_unit(self.cfg, job, self.timeout, self.workdir, pool.stop, pool.procs,
                                                forks=self.forks))
            return _Job(i, job)

        def on_result(job, value):
            results[job.index] = value
            if hasattr(value, "rows"):
                self.interpreters += 1
                self.executions += len(value.rows)
                for row in value.rows:
                    self.per_test[row["nodeid"]] = self.per_test.get(row["nodeid"], 0) + 1

        started = time.monotonic()
        overtime = threading.Timer(max(0.0, self.left()) + DEADLINE_GRACE, pool.stop.set)
        overtime.daemon = True
        overtime.start()
        try:
            pool.run(next_job, on_result)
        finally:
            overtime.cancel()
        self.last_batch = time.monotonic() - started
        return [results.get(i) for i in range(len(jobs))]


@dataclass
class _Job:
    """One job for the Pool, remembering its place in the batch."""

    index: int
    work: object

    def __call__(self):
        return self.work()


def failed(row: dict) -> bool:
    """A failing execution, counting one pytest-rerunfailures retried (masked)."""
    return row["klass"] == "fail" or bool(row.get("masked"))


def rows_of(res, nodeid: str) -> list[dict]:
    """The executions of *nodeid* in a unit's result (skips left out)."""
    return [r for r in (res.rows if res is not None else []) if r["nodeid"] == nodeid and r["klass"] != "skip"]


def count(res, nodeid: str) -> tuple[int, int]:
    """(failures, executions) of *nodeid* in a unit's result."""
    rows = rows_of(res, nodeid)
    return sum(failed(r) for r in rows), len(rows)


def check_unit(res) -> None:
    """Raise when pytest could not run a unit at all (not a test's failure: a broken setup)."""
    if res is not None and res.returncode not in (0, 1) and not res.rows and not res.interrupted:
        raise AuditError(f"pytest could not run the tests for attribution (exit {res.returncode}):\n"
                         f"{res.log_tail[-1500:]}")
