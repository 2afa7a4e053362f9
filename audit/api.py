"""The Python API behind the ``audit`` command: what a user or a CI script can call directly.

Each function takes the project folder and keyword settings (the same names as the
``[tool.audit.<command>]`` keys, checked once by :mod:`audit.config`), runs the engines in order,
writes the files asked for and records the run in the history store, exactly as the command
line does: the CLI only parses arguments, prints and maps the result to an exit code.
"""

from __future__ import annotations

from pathlib import Path
import time
from typing import Any, Callable

from audit.atomic import check_writable
from audit.executor import check as check_executor
from audit.config import load_config
from audit.errors import AuditError
from audit.project import project_root


def configure(path: str | Path = ".", section: str = "", top: dict | None = None, **settings: Any):
    """The resolved configuration for *path*, with *settings* overriding one section and *top*
    the top-level keys (``executor``, ``address``)."""
    overrides = {"": dict(top or {})}
    overrides.setdefault(section, {}).update(settings)
    return load_config(project_root(path), overrides)


def flaky(path: str | Path = ".", *, progress: Callable | None = None, attribution_progress: Callable | None = None,
          on_plan: Callable | None = None, resume: bool = False, json: str | Path | None = None, record: bool = True,
          db: str | None = None, executor: str | None = None, address: str | None = None,
          junit: str | Path | None = None, quarantine: str | Path | None = None, fix: str | Path | None = None,
          **settings: Any):
    """Rerun the suite under varied settings and find why and where each flaky test fails, all
    within one ``budget`` (``attribute=False``: detection only).

    Detection plans for its share of the budget and hands over once it has found a flaky test;
    attribution gets what is left. *executor* ("local" or "ray") and *address* (a Ray cluster) say
    where the units run. Returns the :class:`audit.model.flaky.FlakyResult`; its ``recorded`` says
    where the history store put it (not for an interrupted run, which ``resume=True`` continues).
    With *json* / *junit* / *quarantine* the result is also written there (JSON report, JUnit XML,
    quarantine list for ``--audit-quarantine``). With *fix* (a folder), each flaky test whose
    confirmed cause has a mechanical fix gets a unified diff there, checked against the cause's
    minimal repro in a mirror of the project (its ``fix``); the project itself is never changed.
    """
    from audit.flaky.engine import fork_server, run_flaky, session

    started = time.monotonic()
    cfg = configure(path, "flaky", top={"executor": executor, "address": address}, **settings)
    check_executor(cfg)
    for out in (json, junit, quarantine):
        if out:
            check_writable(out)
    if fix:
        if not cfg.flaky.attribute:
            raise AuditError("--fix patches the causes attribution confirms: it cannot run with --no-attribute")
        check_writable(Path(fix) / "fix.diff")
    budget = float(cfg.flaky.budget)
    handover = budget * (1 - cfg.flaky.attribute_share) if cfg.flaky.attribute else None
    with session(cfg), fork_server(cfg) as forks:
        result = run_flaky(cfg, progress=progress, resume=resume, on_plan=on_plan, durations=_last_durations(cfg, db),
                           handover=handover, t0=started, forks=forks)
        if cfg.flaky.attribute and result.flaky and not result.interrupted:
            spent_before = result.seconds - (time.monotonic() - started)
            left = budget - spent_before - (time.monotonic() - started) - WRAP_UP
            local = forks if result.settings["executor"] == "local" else None
            found = _attribute(cfg, result, attribution_progress, left, local)
            if fix:
                from audit.flaky.fixes import write_fixes

                write_fixes(cfg, result, {n: r["minimal"] for n, r in found.repros.items() if r["verified"]}, fix,
                            forks=local, progress=attribution_progress)
        if forks is not None:
            result.settings["fork_server"] = forks.describe()
    result.settings["attribute"] = bool(cfg.flaky.attribute)
    result.deprecations = list(cfg.deprecations)
    result.wall_seconds = time.monotonic() - started
    _write_flaky(result, json, junit, quarantine)
    if record and not result.interrupted:
        result.recorded = _record_flaky(cfg, result, db)
    return result


# seconds of the budget kept for writing the reports and recording the run after attribution
WRAP_UP = 3.0


def _write_flaky(result, json, junit, quarantine) -> None:
    from audit.report import flaky_json, junit as junit_report, quarantine as quarantine_list

    if json:
        flaky_json.write(result, json)
    if junit:
        junit_report.write(result, junit)
    if quarantine:
        quarantine_list.write(result, quarantine)


def _last_durations(cfg, db) -> dict[str, float]:
    """Per-test mean durations of the project's last flaky run in the history store ({} if none):
    they spare the survey that would otherwise time every test first."""
    from audit.store import Store, store_path

    path = store_path(cfg, db)
    if not path.is_file():
        return {}
    try:
        with Store(path, readonly=True) as store:
            run = store.latest("flaky")
            tests = store.tests(run.id) if run is not None else []
    except AuditError:
        return {}
    return {t["nodeid"]: t["mean_duration"] for t in tests if t["mean_duration"] and t["executions"]}


def _record_flaky(cfg, result, db):
    """Record *result* once: a resume that added no execution keeps the earlier record."""
    from audit import recording
    from audit.flaky.state import mark_recorded
    from audit.store import store_path

    if result.recorded_as is not None and not result.new_executions:
        return recording.Recorded(store_path(cfg, db), run_id=result.recorded_as, again=False)
    recorded = recording.record(cfg, result.to_json(), db=db, duration=result.seconds, settings=result.settings)
    if recorded.run_id is not None:
        mark_recorded(result.state_dir, recorded.run_id)
    return recorded


def _attribute(cfg, result, progress, seconds: float, forks=None):
    """Causes, RNG call graph and hygiene list of *result*'s flaky tests, within *seconds* (units
    forked from *forks*' zygotes where one has the hash seed); returns the Attribution."""
    from audit.flaky.attribution import attribute, out_of_budget

    if seconds < MIN_ATTRIBUTION:
        found = out_of_budget(result, seconds)
    else:
        found = attribute(cfg, result, budget_seconds=seconds, workers=cfg.flaky.workers or None, progress=progress,
                          forks=forks)
    for test in result.tests:
        if not test.timing:   # a timing failure names its own cause; no experiment can pin time
            test.causes = found.get(test.nodeid, [])
        pair = found.repros.get(test.nodeid)
        if pair:
            test.counterfactual, test.repro_runs, test.counterfactual_runs = (
                pair["counterfactual"], tuple(pair["repro_runs"]), tuple(pair["counterfactual_runs"]))
            if pair["verified"] or not test.repro_verified:
                test.repro, test.repro_verified = pair["repro"], pair["verified"]
    result.rng_graph, result.rng_hygiene = found.rng_graph, found.rng_hygiene
    result.attribution = {"seconds": round(found.seconds, 2), "executions": found.executions,
                          "interpreters": found.interpreters, "budget": round(max(0.0, seconds), 2),
                          "per_test": found.per_test}
    return found


# attribution needs this many seconds to find a pinned setting and release anything
MIN_ATTRIBUTION = 12.0


def mutate(path: str | Path = ".", *, progress: Callable | None = None, json: str | Path | None = None,
           stryker: str | Path | None = None, record: bool = True, db: str | None = None,
           executor: str | None = None, address: str | None = None, **settings: Any):
    """Mutation-test the suite with ML-aware operators; returns the :class:`audit.model.mutate.MutateResult`.

    With *executor* "ray" the mutants are sharded across tasks on the Ray cluster at *address*.
    With *json* / *stryker* the result is written in those formats; it is recorded in the history
    store unless *record* is false (``recorded`` on the result says where).
    """
    from audit import recording
    from audit.mutate.engine import run_mutate
    from audit.report import mutate_json
    from audit.report import stryker as stryker_report

    cfg = configure(path, "mutate", top={"executor": executor, "address": address}, **settings)
    check_executor(cfg)
    for out in (json, stryker):
        if out:
            check_writable(out)
    result = run_mutate(cfg, progress=progress)
    if json:
        mutate_json.write(result, json)
    if stryker:
        stryker_report.write(result, stryker)
    if record:
        result.recorded = recording.record(cfg, result.to_json(), db=db, duration=result.elapsed,
                                           settings={"operators": cfg.mutate.operators,
                                                     "since": cfg.mutate.since or None})
    return result


def report(path: str | Path = ".", *, until=None, formats: list[str] | None = None, out: str | None = None,
           db: str | None = None, **settings: Any):
    """Write the weekly quality report from the history store; returns (report, written paths)."""
    from audit.report.write import write_report

    return write_report(configure(path, "report", **settings), until=until, formats=formats, out=out, db=db)


def review(path: str | Path = ".", *, baseline: list[str], current: list[str] | None = None,
           db: str | None = None, changed_since: str | None = None, out: str | Path | None = None,
           **settings: Any):
    """Compare the current state with a baseline; returns a Review whose exit_code gates a release.

    review.md and review.json are written to *out* (default ``[tool.audit] reports_dir``); the
    Review's ``written`` lists them.
    """
    from audit.review import run_review, write_review

    cfg = configure(path, "review", **settings)
    review = run_review(cfg, baseline=list(baseline), current=current, db=db, changed_since=changed_since)
    folder = Path(out).expanduser() if out else Path(cfg.root) / cfg.reports_dir
    review.written = write_review(review, folder)
    return review
