"""Where the engines' work runs: this machine's cores (``local``) or a Ray cluster (``ray``).

A :class:`Job` is a module-level function and serialisable arguments, so the same job runs in a
thread here or in a Ray task there. Each executor runs it in a tree of its own (``where``: a
mirror of the project) with a scratch folder (``workdir``), keeps ``slots`` CPUs' worth of jobs
in flight, and hands every value to ``on_result`` in the calling thread, so the scheduler's
state needs no locks. Engines choose an executor with :func:`make`; nothing else knows which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audit.job import Job

NAMES = ("local", "ray")


class LocalExecutor:
    """Today's pool: one thread per job, each in one of the project's mirrors (*dirs*)."""

    name = "local"

    def __init__(self, dirs: list[Path], workdir: Path, workers: int):
        self.dirs = list(dirs)
        self.workdir = workdir
        self.slots = max(1, workers)
        self.rescheduled = 0
        self.gpu_models: list[str] = []

    def run(self, next_job: Callable[[], Job | None], on_result: Callable[[Job, object], None]) -> None:
        from audit.flaky.runner import Pool

        pool = Pool(min(self.slots, len(self.dirs)))
        free = list(self.dirs)

        def take():
            job = next_job()
            if job is None:
                return None
            where = free.pop()
            return _Bound(job, lambda: job.call(where, self.workdir, pool.stop, pool.procs), where)

        def give(bound, value):
            free.append(bound.where)
            on_result(bound.job, value)

        pool.run(take, give)

    def close(self) -> None:
        pass


@dataclass
class _Bound:
    job: Job
    start: Callable
    where: Path

    def __call__(self):
        return self.start()


def check(cfg) -> None:
    """Fail early (exit 2, naming the extra) when *cfg* asks for Ray and Ray is not installed."""
    if cfg.executor == "ray":
        from audit.ray_cluster import require_ray

        require_ray()


def make(cfg, workdir: Path, workers: int):
    """The executor *cfg* asks for (``[tool.audit] executor``), ready to run jobs."""
    if cfg.executor == "ray":
        from audit.ray_executor import RayExecutor

        return RayExecutor.connect(cfg, workers)
    return LocalExecutor(cfg.run_dirs, workdir, workers)
