"""Recording a finished run in the history store, for every caller of the API alike.

A store that cannot take the run (damaged, foreign, read-only, locked) never costs the run: the
result is kept and the reason is returned for the caller to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audit import vcs
from audit.errors import AuditError


@dataclass
class Recorded:
    """Where a run went in the history store, or why it could not go there."""

    path: Path
    run_id: int | None = None
    error: str | None = None
    again: bool = True          # False: the same result was recorded before, as run_id


def record(cfg, result: dict, *, db: str | None, duration: float | None, settings: dict) -> Recorded:
    """Record *result* (a flaky or mutate result's JSON) in the project's history store."""
    import sqlite3

    from audit.store import Store, store_path

    path = store_path(cfg, db)
    try:
        with Store(path) as store:
            run_id = store.record(result, project=str(cfg.root), commit=vcs.head_commit(cfg.root),
                                  branch=vcs.branch(cfg.root), duration=duration, settings=settings)
    except (AuditError, sqlite3.Error, OSError) as exc:
        return Recorded(path, error=str(exc))
    return Recorded(path, run_id=run_id)
