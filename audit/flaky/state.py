"""The resumable record of each ``audit flaky`` run, and the lock that keeps two runs apart.

Every run gets a folder of its own under the project's state folder (outside the project):
its plan seed, units, rows and time spent, appended as they arrive so that Ctrl-C keeps what was
measured. ``latest`` names the newest run, the one ``--resume`` continues. A second run of the
same project while one is going is refused with a message naming the first.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from audit.errors import AuditError

KEEP_RUNS = 3


@contextmanager
def exclusive(base: Path, what: str):
    """Hold the project's run lock for the duration, or refuse naming the run that holds it."""
    import fcntl

    base.mkdir(parents=True, exist_ok=True)
    with (base / "lock").open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise AuditError(f"another {what} of this project is running ({holder}); "
                             f"wait for it to finish or stop it first") from None
        f.truncate(0)
        f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


class RunState:
    """One run's folder: ``state.json`` (meta), ``units.jsonl``, ``rows.jsonl`` and ``work/``."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta

    @classmethod
    def new(cls, base: Path, meta: dict) -> "RunState":
        runs = base / "runs"
        path = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        (path / "work").mkdir(parents=True)
        state = cls(path, meta)
        state.save()
        (base / "latest").write_text(path.name)
        older = sorted(p for p in runs.iterdir() if p != path)
        for old in older[:max(0, len(older) - (KEEP_RUNS - 1))]:
            shutil.rmtree(old, ignore_errors=True)
        return state

    @classmethod
    def latest(cls, base: Path) -> "RunState":
        pointer = base / "latest"
        path = base / "runs" / pointer.read_text().strip() if pointer.is_file() else None
        if path is None or not (path / "state.json").is_file():
            raise AuditError(f"nothing to resume: no earlier audit of this project in {base}")
        return cls(path, json.loads((path / "state.json").read_text()))

    def load(self) -> tuple[list[dict], dict]:
        """The rows and the units (by id) saved so far; a line cut short by Ctrl-C is skipped."""
        rows = list(self._records("rows.jsonl"))
        units = {rec["id"]: rec for rec in self._records("units.jsonl")}
        return rows, units

    def _records(self, name: str):
        f = self.path / name
        if f.is_file():
            for line in f.read_text().splitlines():
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def save(self) -> None:
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=1))
        os.replace(tmp, self.path / "state.json")

    def append(self, unit_json: str, rows: list[dict]) -> None:
        with (self.path / "units.jsonl").open("a") as f:
            f.write(unit_json + "\n")
        with (self.path / "rows.jsonl").open("a") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")


def mark_recorded(path: str | Path, run_id: int) -> None:
    """Note in run folder *path* the history run id it was recorded as, so a resume that adds
    nothing does not record it twice."""
    state = RunState(Path(path), json.loads((Path(path) / "state.json").read_text()))
    state.meta["recorded_as"] = run_id
    state.save()
