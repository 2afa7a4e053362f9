"""One piece of an engine's work, as every executor (audit.executor) takes it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audit.errors import AuditError


class ExecutorLost(AuditError):
    """The executor can no longer run jobs (a lost cluster): the engine keeps what it has."""


@dataclass
class Job:
    """``fn(*args, where=..., workdir=..., stop=..., procs=...)``, and what it needs to run."""

    kind: str                  # what the scheduler calls it: "unit", "repro", "shard"
    key: object
    payload: object
    fn: Callable
    args: tuple = ()
    cpus: int = 1              # CPUs it keeps busy (torch threads), asked of the cluster
    gpus: int = 0
    tries: int = field(default=0, compare=False)

    def call(self, where: Path, workdir: Path, stop=None, procs=None):
        return self.fn(*self.args, where=where, workdir=workdir, stop=stop, procs=procs)
