"""The Python API behind the ``audit`` command: what a user or a CI script can call directly.

Each function takes the project folder and keyword settings (the same names as the
``[tool.audit.<command>]`` keys), resolves the configuration and hands it to one engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit.config import load_config
from audit.project import project_root


def configure(path: str | Path = ".", section: str = "", **settings: Any):
    """The resolved configuration for *path*, with *settings* overriding one section."""
    return load_config(project_root(path), {section: settings})


def flaky(path: str | Path = ".", **settings: Any):
    """Rerun the suite under varied settings; returns the flaky result (see audit.flaky.engine)."""
    from audit.flaky.engine import run_flaky

    return run_flaky(configure(path, "flaky", **settings))


def mutate(path: str | Path = ".", **settings: Any):
    """Mutation-test the suite with ML-aware operators; returns the mutate result (audit.mutate.engine)."""
    from audit.mutate.engine import run_mutate

    return run_mutate(configure(path, "mutate", **settings))


def report(path: str | Path = ".", *, until=None, formats: list[str] | None = None, out: str | None = None,
           db: str | None = None, **settings: Any):
    """Write the weekly quality report from the history store; returns (report, written paths)."""
    from audit.report.write import write_report

    return write_report(configure(path, "report", **settings), until=until, formats=formats, out=out, db=db)


def review(path: str | Path = ".", *, baseline: list[str], current: list[str] | None = None,
           db: str | None = None, changed_since: str | None = None, **settings: Any):
    """Compare the current state with a baseline; returns a Review whose exit_code gates a release."""
    from audit.review import run_review

    return run_review(configure(path, "review", **settings), baseline=list(baseline), current=current, db=db,
                      changed_since=changed_since)
