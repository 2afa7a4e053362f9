"""The weekly quality report as data: what the store says about one period, before any formatting.

Every writer (HTML, Markdown, JSON; dispatched by ``audit.report.write``) renders the same
``WeeklyReport``; none of them queries the store, so the formats cannot disagree. The report reads
the results model (``audit.model``) through the store. Definitions, stated once here:

- The *current* flaky run is the latest one in the period; the *reference* run is the latest one
  before the period (or, on a first audit, none). A test flaky now and not in the reference is
  **new**, flaky in both is **still flaky**, flaky in the reference but passing now is **fixed**.
- Mutation scores are in points (0-100), the model's ``Tally``: detected / (detected + survived +
  no coverage), from full runs only: a partial run (``--since``, or mutants left unchecked) covers
  part of the code and its score is not comparable.
- Causes are the model's ``Cause`` records (source, status, p-value, counts, sites, evidence),
  each with the one line ``audit.explain.cause_text`` makes of it.
- Rerun cost assumes CI reruns a failed test once (pytest-rerunfailures): a test failing at
  rate p costs p x its duration per CI run, and the suite goes red without reruns with
  probability 1 - prod(1 - p).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any

from audit.errors import AuditError
from audit.explain import BROKEN_HINT, bug_of, cause_details, cause_text, fix_hints, killing_test, setting_text
from audit.history import mutant_key
from audit.model.flaky import Cause, TestVerdict
from audit.model.mutate import Mutant, Tally
from audit.store import Run, Store, to_utc

REPORT_SCHEMA = "ml-audit.report/2"

# How much a test for a surviving ML mutant is worth, by the kind of test that kills it.
_KILLER_WEIGHT = {"gradient-flow": 3.0, "overfit": 3.0, "eval-mode": 3.0, "shape": 2.5,
                  "determinism": 2.5, "golden value": 2.0}

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """The start of a period given as a span back from *now* (30m, 12h, 7d, 4w) or an ISO date."""
    m = _SPAN.match(text or "")
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        return to_utc(text)
    except AuditError:
        raise AuditError(f"--since: expected a span such as 7d, 12h, 4w or an ISO date, got {text!r}") from None


@dataclass
class WeeklyReport:
    """Everything the weekly report shows; plain data, ready for JSON."""

    project: str
    store: str
    generated_at: str
    period: dict
    runs: dict
    flaky: dict
    mutation: dict
    slowest: list
    flaky_cost: dict
    notes: list = field(default_factory=list)
    schema: str = REPORT_SCHEMA

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


def _run_summary(run: Run) -> dict:
    return {"id": run.id, "kind": run.kind, "started_at": _iso(run.started_at), "commit": run.commit,
            "branch": run.branch, "duration": run.duration, "score": run.score, "partial": run.partial}


def cause_entry(cause: Cause) -> dict:
    """A cause as the report holds it: the model's fields, and the words the writers show."""
    return {**cause.to_json(), "text": cause_text(cause), "details": cause_details(cause)}


def _test_entry(test: TestVerdict, series: list[tuple[Run, dict]], previous: dict | None) -> dict:
    flaky_runs = [r for r, t in series if t["verdict"] == "flaky"]
    return {
        "nodeid": test.nodeid, "verdict": test.verdict, "rate": test.rate, "interval": list(test.interval),
        "executions": test.executions, "failures": test.failures, "repro": test.repro,
        "repro_verified": test.repro_verified, "masked_by_reruns": test.masked, "draws": list(test.draws),
        "evidence": test.evidence or None,
        "failing_settings": [setting_text(s) for s in test.failing_settings[:3]],
        "causes": [cause_entry(c) for c in test.causes], "hints": fix_hints(test),
        "patch": ({**test.fix.to_json(), "text": test.fix.words()} if test.fix else None),
        "previous": ({"verdict": previous["verdict"], "rate": previous["rate"], "executions": previous["executions"]}
                     if previous else None),
        "flaky_since": _iso(flaky_runs[0].started_at) if flaky_runs else None,
        "trend": [{"run": r.id, "at": _iso(r.started_at), "verdict": t["verdict"], "rate": t["rate"],
                   "low": t["interval"][0], "high": t["interval"][1]} for r, t in series],
    }


def _flaky_section(store: Store, since: datetime, until: datetime, history: datetime, notes: list) -> dict:
    current = store.latest("flaky", until=until)
    if current is None or current.started_at < since:
        notes.append("no `audit flaky` run in this period: flaky test status is not reported")
        current = None
    reference = store.latest("flaky", before=since)
    section = {"current_run": current.id if current else None,
               "reference_run": reference.id if reference else None,
               "first_audit": reference is None, "new": [], "still": [], "fixed": [], "failing": [],
               "tests": 0, "trend": []}
    for run in store.runs("flaky", since=min(history, since), until=until):
        rows = store.tests(run.id)
        section["trend"].append({"run": run.id, "at": _iso(run.started_at), "commit": run.commit,
                                 "tests": len(rows), "flaky": sum(t["verdict"] == "flaky" for t in rows),
                                 "failing": sum(t["verdict"] == "fail" for t in rows)})
    if current is None:
        return section
    now = {t.nodeid: t for t in store.flaky_result(current.id).tests}
    before = {t["nodeid"]: t for t in store.tests(reference.id)} if reference else {}
    section["tests"] = len(now)
    flaky_now = {n for n, t in now.items() if t.verdict == "flaky"}
    flaky_before = {n for n, t in before.items() if t["verdict"] == "flaky"}
    failing = {n for n, t in now.items() if t.verdict == "fail"}
    series = store.test_history(flaky_now | flaky_before | failing, since=min(history, since), until=until)
    for nodeid in sorted(flaky_now, key=lambda n: -now[n].rate):
        bucket = "still" if nodeid in flaky_before else "new"
        section[bucket].append(_test_entry(now[nodeid], series[nodeid], before.get(nodeid)))
    was = {t.nodeid: t for t in store.flaky_result(reference.id).tests} if flaky_before - flaky_now else {}
    for nodeid in sorted(flaky_before - flaky_now):
        if nodeid in now and now[nodeid].verdict == "pass":
            entry = _test_entry(now[nodeid], series[nodeid], before[nodeid])
            entry["causes"] = [cause_entry(c) for c in was[nodeid].causes]  # what it was flaky from
            entry["hints"] = []
            section["fixed"].append(entry)
        elif nodeid not in now:
            notes.append(f"{nodeid} was flaky in run {reference.id} and is no longer in the suite")
    for nodeid in sorted(failing):
        entry = _test_entry(now[nodeid], series[nodeid], before.get(nodeid))
        entry["hints"] = [BROKEN_HINT]
        section["failing"].append(entry)
    return section


def _tally(mutants: list[Mutant]) -> dict:
    tally = Tally()
    for m in mutants:
        tally.add(m.status)
    return tally.to_json()


def _grouped(mutants: list[Mutant], key) -> dict[str, dict]:
    groups: dict[str, list[Mutant]] = {}
    for m in mutants:
        groups.setdefault(key(m), []).append(m)
    return {name: _tally(ms) for name, ms in groups.items()}


def _module(m: Mutant) -> str:
    return str(PurePosixPath(m.path.replace("\\", "/"))) if m.path else "?"


def _mutation_section(store: Store, since: datetime, until: datetime, history: datetime, top: int,
                      notes: list) -> dict:
    current = store.latest("mutate", until=until, full_only=True)
    if current is None or current.started_at < since:
        notes.append("no full `audit mutate` run in this period: mutation scores are not reported")
        current = None
    for run in store.runs("mutate", since=since, until=until):
        if run.partial:
            notes.append(f"mutate run {run.id} is partial (changed lines only, or mutants left unchecked): "
                         "its score is not in the trend")
    reference = store.latest("mutate", before=since, full_only=True)
    trend_runs = store.runs("mutate", since=min(history, since), until=until, full_only=True)
    section = {"current_run": current.id if current else None, "reference_run": reference.id if reference else None,
               "score": None, "previous_score": None, "delta": None,
               "trend": [{"run": r.id, "at": _iso(r.started_at), "commit": r.commit, "score": r.score}
                         for r in trend_runs],
               "by_operator": [], "by_module": [], "worth_a_test": [], "survivors": 0, "mutants": 0}
    if current is None:
        return section
    mutants = store.mutants(current.id)
    old = store.mutants(reference.id) if reference else []
    section["mutants"] = len(mutants)
    section["score"] = _tally(mutants)["score"]
    section["previous_score"] = _tally(old)["score"] if old else None
    if section["score"] is not None and section["previous_score"] is not None:
        section["delta"] = round(section["score"] - section["previous_score"], 2)
    ml = {m.operator for m in mutants if m.ml}
    old_ops = _grouped(old, lambda m: m.operator)
    for name, c in sorted(_grouped(mutants, lambda m: m.operator).items(), key=lambda kv: (kv[0] not in ml, kv[0])):
        section["by_operator"].append({"operator": name, "ml": name in ml, **c,
                                       "previous_score": old_ops.get(name, {}).get("score")})
    old_mods = _grouped(old, _module)
    for name, c in sorted(_grouped(mutants, _module).items()):
        section["by_module"].append({"module": name, **c, "previous_score": old_mods.get(name, {}).get("score")})
    section["worth_a_test"], section["survivors"] = _worth_a_test(store, current, mutants, trend_runs, top)
    return section


def _worth_a_test(store: Store, current: Run, mutants: list[Mutant], trend_runs: list[Run], top: int):
    """Surviving mutants ranked by how much a test for them is worth.

    ML operators first (weighted by the kind of test that kills them), then how long the mutant
    has survived; at most two per function so that one untested function does not fill the list.
    """
    survivors = [m for m in mutants if m.status == "survived"]
    earlier = [r for r in trend_runs if r.started_at < current.started_at]
    survived_in: dict[tuple, list[Run]] = {}
    for run in earlier:
        for m in store.mutants(run.id, status="survived"):
            survived_in.setdefault(mutant_key(m), []).append(run)
    ranked = []
    for m in survivors:
        kind, why = killing_test(m)
        past = survived_in.get(mutant_key(m), [])
        weight = (_KILLER_WEIGHT.get(kind, 1.5) if m.ml else 1.0) + 0.25 * len(past)
        ranked.append((weight, m, kind, why, past))
    ranked.sort(key=lambda r: (-r[0], r[1].path, r[1].line, r[1].id))
    chosen, per_function = [], {}
    for weight, m, kind, why, past in ranked:
        fn = (m.path, m.function)
        if per_function.get(fn, 0) >= 2:
            continue
        per_function[fn] = per_function.get(fn, 0) + 1
        chosen.append({"id": m.id, "operator": m.operator, "ml": m.ml, "path": m.path, "line": m.line,
                       "function": m.function, "diff": m.diff, "bug": bug_of(m.operator), "test_kind": kind,
                       "why": why, "runs_survived": len(past) + 1, "runs_seen": len(earlier) + 1,
                       "surviving_since": _iso(past[0].started_at if past else current.started_at)})
        if len(chosen) >= top:
            break
    return chosen, len(survivors)


def _slowest_and_cost(store: Store, flaky: dict, top: int, notes: list) -> tuple[list, dict]:
    cost = {"tests": [], "rerun_seconds_per_100_ci_runs": None, "red_ci_runs_per_100_without_reruns": None,
            "red_ci_runs_per_100_interval": None, "audit_seconds": None}
    if flaky["current_run"] is None:
        return [], cost
    rows = store.tests(flaky["current_run"])
    timed = [t for t in rows if t["mean_duration"] is not None]
    if not timed:
        notes.append("the flaky run records no per-test durations: slowest tests and rerun cost are not reported")
    slowest = [{"nodeid": t["nodeid"], "mean_duration": t["mean_duration"], "executions": t["executions"],
                "total_duration": t["total_duration"], "verdict": t["verdict"]}
               for t in sorted(timed, key=lambda t: -t["mean_duration"])[:top]]
    flaky_rows = [t for t in rows if t["verdict"] == "flaky"]
    green = [1.0, 1.0, 1.0]   # at the rates, at every test's low bound, at every test's high bound
    for t in flaky_rows:
        low, high = (t["rate"] if b is None else b for b in t["interval"])
        for i, rate in enumerate((t["rate"], low, high)):
            green[i] *= 1.0 - _unit(rate)
        per_100 = 100.0 * t["rate"] * t["mean_duration"] if t["mean_duration"] is not None else None
        cost["tests"].append({"nodeid": t["nodeid"], "rate": t["rate"], "interval": list(t["interval"]),
                              "mean_duration": t["mean_duration"], "rerun_seconds_per_100_ci_runs": per_100})
    cost["tests"].sort(key=lambda c: -(c["rerun_seconds_per_100_ci_runs"] or 0.0))
    if flaky_rows:
        known = [c["rerun_seconds_per_100_ci_runs"] for c in cost["tests"] if c["rerun_seconds_per_100_ci_runs"] is not None]
        cost["rerun_seconds_per_100_ci_runs"] = sum(known) if known else None
    cost["red_ci_runs_per_100_without_reruns"] = round(100.0 * (1.0 - green[0]), 2)
    # each end from every test's own 95% bound: wider than a joint 95% interval, never narrower
    cost["red_ci_runs_per_100_interval"] = [round(100.0 * (1.0 - green[1]), 2), round(100.0 * (1.0 - green[2]), 2)]
    totals = [t["total_duration"] for t in rows if t["total_duration"] is not None]
    cost["audit_seconds"] = sum(totals) if totals else None
    return slowest, cost


def _unit(rate: float) -> float:
    return min(max(rate, 0.0), 1.0)


def _project_name(recorded: str) -> str:
    """Runs may record the project as its folder's path: the report shows the folder's name."""
    return PurePosixPath(recorded.replace("\\", "/")).name if "/" in recorded or "\\" in recorded else recorded


def build_weekly(store: Store, *, since: str = "7d", until=None, history: str = "8w", top: int = 10,
                 project: str | None = None) -> WeeklyReport:
    """The report for the period from *since* (a span back from *until*, or a date) to *until* (now)."""
    if store.count() == 0:
        raise AuditError(f"the history store {store.path} holds no runs: run `audit flaky` or `audit mutate` first")
    end = to_utc(until) if until is not None else datetime.now(timezone.utc)
    start = parse_since(since, end)
    back = parse_since(history, end)
    if start >= end:
        raise AuditError(f"the report period is empty: {since!r} starts after {end:%Y-%m-%d %H:%M} UTC")
    notes: list[str] = []
    in_period = store.runs(since=start, until=end)
    if not in_period:
        notes.append(f"no run was recorded between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC")
    flaky = _flaky_section(store, start, end, back, notes)
    mutation = _mutation_section(store, start, end, back, top, notes)
    slowest, cost = _slowest_and_cost(store, flaky, top, notes)
    latest = store.latest("flaky", until=end) or store.latest("mutate", until=end)
    return WeeklyReport(
        project=project or _project_name(latest.project if latest else ""), store=str(store.path),
        generated_at=_iso(datetime.now(timezone.utc)),
        period={"since": _iso(start), "until": _iso(end), "span": since, "history_since": _iso(back)},
        runs={"flaky": [_run_summary(r) for r in in_period if r.kind == "flaky"],
              "mutate": [_run_summary(r) for r in in_period if r.kind == "mutate"]},
        flaky=flaky, mutation=mutation, slowest=slowest, flaky_cost=cost, notes=notes)
