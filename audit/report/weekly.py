"""The weekly quality report as data: what the store says about one period, before any formatting.

Every reporter (HTML, Markdown, JSON) renders the same ``WeeklyReport``; none of them queries the
store, so the three formats cannot disagree. Definitions, stated once here:

- The *current* flaky run is the latest one in the period; the *reference* run is the latest one
  before the period (or, on a first audit, none). A test flaky now and not in the reference is
  **new**, flaky in both is **still flaky**, flaky in the reference but passing now is **fixed**.
- Mutation scores are in points (0-100), detected / (detected + survived + no coverage), from
  full runs only: a ``--since`` run covers changed lines and its score is not comparable.
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
from audit.mutate.operators import ALL_OPERATORS, GOLDEN
from audit.mutate.operators import ML_OPERATORS as ML_REGISTRY
from audit.store import DETECTED, SCORED, Run, Store, to_utc

REPORT_SCHEMA = "ml-audit.report/1"

ML_OPERATORS = tuple(ML_REGISTRY)

# What a test that kills a surviving mutant of each ML operator asserts; the kind of test
# (shape, gradient-flow, overfit, golden value, eval-mode, determinism) is the operator's own.
ASSERTS: dict[str, str] = {
    "drop_detach": "assert no gradient reaches what the detach cut off (its .grad stays None)",
    "drop_no_grad": "assert evaluation outputs have requires_grad False (no graph is built)",
    "drop_zero_grad": "train a few steps on one tiny batch; gradients must not accumulate across steps",
    "drop_backward": "train a few steps on one tiny batch and assert the loss falls",
    "drop_optimizer_step": "assert the parameters change after one training step",
    "drop_scheduler_step": "assert the learning rate after N steps equals the schedule's value",
    "flip_requires_grad": "assert frozen parameters stay unchanged and trainable ones move",
    "drop_item": "assert the accumulated loss is a Python float and matches a known value",
    "drop_eval": "assert two evaluation passes on the same input are identical (dropout off)",
    "drop_train": "assert training mode is restored after evaluation (dropout active again)",
    "swap_train_eval": "assert the model's .training flag in each phase, and that eval outputs repeat",
    "change_dim": "assert output shapes and that probabilities sum to 1 along the class axis",
    "change_axes": "assert the exact output shape, with distinct sizes on every axis",
    "flip_keepdim": "assert the reduced tensor's exact shape",
    "swap_reduction": "assert the loss of a fixed batch against a hand-computed value",
    "softmax_before_cross_entropy": "assert the loss of a fixed batch against F.cross_entropy on logits",
    "change_seed": "assert a seeded run reproduces a recorded golden output",
    "drop_seed": "assert two runs with the same seed give identical results",
    "flip_shuffle": "assert the loader's batch order (shuffled for training, fixed for evaluation)",
    "flip_drop_last": "assert the number and sizes of batches for a dataset that does not divide evenly",
    "lower_precision": "assert the dtype and a golden value at float32 tolerance",
    "scale_hyperparam": "train a few steps on a fixed batch and assert the loss against a recorded curve",
}
GOLDEN_ASSERT = "assert the exact result of this function on a small fixed input"
_OPERATOR_WEIGHT = {"gradient-flow": 3.0, "overfit": 3.0, "eval-mode": 3.0, "shape": 2.5,
                    "determinism": 2.5, "golden value": 2.0}

# How to fix a flaky test, by the source the attribution names.
FIX_HINTS: dict[str, str] = {
    "torch": "seed torch in the test or fixture (torch.manual_seed), or pass a torch.Generator to "
             "DataLoader/random_split/dropout-using code; put modules in eval() for evaluation tests",
    "numpy": "use a seeded np.random.default_rng(seed) instead of the global np.random functions",
    "random": "use a seeded random.Random(seed) instead of the module-level random functions",
    "hashseed": "do not depend on set or dict-of-str iteration order: sort before iterating or comparing",
    "threads": "compare floats with torch.testing.assert_close (tolerances) instead of ==, or record "
               "golden values at the thread count CI uses and pin it",
    "determinism": "do not read torch.empty memory before writing it: use torch.zeros / torch.full",
    "order": "restore global state the polluting test changes (default dtype, RNG, caches) in a fixture "
             "teardown, or set it explicitly in the test that depends on it",
}
GENERIC_HINT = ("re-run the repro line to see it fail; look for unseeded randomness (torch, numpy, random), "
                "exact float comparisons across thread counts, and state left behind by earlier tests")

BROKEN_HINT = "fails under every setting tried: a broken test or broken code, not flakiness; fix it or mark it xfail"

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


def _cause_text(cause: Any) -> str:
    if isinstance(cause, str):
        return cause
    if isinstance(cause, dict):
        parts = [str(cause[k]) for k in ("source", "site") if cause.get(k)]
        if cause.get("polluter"):
            parts.append(f"polluted by {cause['polluter']}")
        rest = {k: v for k, v in cause.items() if k not in ("source", "site", "polluter")}
        parts += [f"{k}={v}" for k, v in rest.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
        return ", ".join(parts) or str(cause)
    return str(cause)


def _hints(test: dict, extra: dict) -> list[str]:
    """How to fix it: from the attributed causes, else from the RNG families the test drew from."""
    sources = [c.get("source") for c in test.get("causes") or [] if isinstance(c, dict)]
    hints = [FIX_HINTS[s] for s in dict.fromkeys(sources) if s in FIX_HINTS]
    if not hints:
        drawn = [d for d in extra.get("draws") or [] if d in FIX_HINTS]
        hints = [f"it draws from the {d} RNG: {FIX_HINTS[d]}" for d in drawn]
    if not hints and "draws" in extra and not extra["draws"]:
        hints = _setting_hints(test)
    return hints or [GENERIC_HINT]


# Per-process settings a test that draws no randomness can only fail through, and what to say.
_SETTING_SOURCES = (("threads", "threads", "at {v} torch thread(s)"),
                    ("deterministic", "determinism", "with deterministic algorithms {v}"),
                    ("order", "order", "in {v} order"))


def _setting_hints(test: dict) -> list[str]:
    """For a test that draws no randomness: a setting every failure shared points at the source."""
    fails = [s for s in test.get("failing_settings") or [] if isinstance(s, dict)]
    hints = []
    for key, source, where in _SETTING_SOURCES:
        values = {str(s.get(key)) for s in fails if key in s}
        if len(values) == 1 and all(key in s for s in fails):
            value = values.pop()
            if (key, value) in (("order", "file"), ("deterministic", "off")):
                continue
            hints.append(f"it draws no randomness and its {len(fails)} failure(s) all ran {where.format(v=value)}: "
                         f"{FIX_HINTS[source]}")
    return hints if len(fails) > 1 else hints[:1]  # one failure shares every setting: name the likeliest


# Keys of a failing setting worth showing (the per-family seeds are in the repro command).
_SETTING_KEYS = ("threads", "hashseed", "deterministic", "order")


def _settings_text(setting: Any) -> str:
    """One failing execution in a line: the settings that vary per process, then what failed."""
    if not isinstance(setting, dict):
        return str(setting)
    shown = [f"{k}={setting[k]}" for k in _SETTING_KEYS if k in setting]
    shown += [f"{k}={v}" for k, v in setting.items()
              if k not in (*_SETTING_KEYS, "seeds", "round", "attempt", "outcome", "digest")]
    digest = str(setting.get("digest") or "").strip()
    return " ".join(shown) + (f": {digest}" if digest else "")


def _test_entry(test: dict, series: list[tuple[Run, dict]], previous: dict | None, extra: dict) -> dict:
    flaky_runs = [r for r, t in series if t["verdict"] == "flaky"]
    return {
        "evidence": extra.get("evidence") or None, "draws": list(extra.get("draws") or []),
        "masked_by_reruns": int(extra.get("masked_by_reruns") or 0), "repro_verified": extra.get("repro_verified"),
        "nodeid": test["nodeid"], "verdict": test["verdict"], "rate": test["rate"],
        "interval": test["interval"], "executions": test["executions"], "failures": test["failures"],
        "repro": test["repro"], "failing_settings": [_settings_text(s) for s in test["failing_settings"][:3]],
        "causes": [_cause_text(c) for c in test["causes"]], "hints": _hints(test, extra),
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
    now_rows = {t["nodeid"]: t for t in store.tests(current.id)}
    extras = {t.get("nodeid"): t for t in store.result(current.id).get("tests", []) if isinstance(t, dict)}
    before = {t["nodeid"]: t for t in store.tests(reference.id)} if reference else {}
    section["tests"] = len(now_rows)
    flaky_now = {n for n, t in now_rows.items() if t["verdict"] == "flaky"}
    flaky_before = {n for n, t in before.items() if t["verdict"] == "flaky"}
    series = store.test_history(flaky_now | flaky_before | {n for n, t in now_rows.items() if t["verdict"] == "fail"},
                                since=min(history, since), until=until)
    for nodeid in sorted(flaky_now, key=lambda n: -now_rows[n]["rate"]):
        bucket = "still" if nodeid in flaky_before else "new"
        section[bucket].append(_test_entry(now_rows[nodeid], series[nodeid], before.get(nodeid), extras.get(nodeid, {})))
    for nodeid in sorted(flaky_before - flaky_now):
        if nodeid in now_rows and now_rows[nodeid]["verdict"] == "pass":
            entry = _test_entry(now_rows[nodeid], series[nodeid], before[nodeid], extras.get(nodeid, {}))
            entry["causes"] = [_cause_text(c) for c in before[nodeid]["causes"]]  # what it was flaky from
            entry["hints"] = []
            section["fixed"].append(entry)
        elif nodeid not in now_rows:
            notes.append(f"{nodeid} was flaky in run {reference.id} and is no longer in the suite")
    for nodeid, t in sorted(now_rows.items()):
        if t["verdict"] == "fail":
            entry = _test_entry(t, series[nodeid], before.get(nodeid), extras.get(nodeid, {}))
            entry["hints"] = [BROKEN_HINT]
            section["failing"].append(entry)
    return section


def _counts(mutants: list[dict]) -> dict:
    c = {s: 0 for s in (*SCORED, "error")}
    for m in mutants:
        c[m["status"] if m["status"] in c else "error"] += 1
    total = sum(c[s] for s in SCORED)
    c["score"] = round(100.0 * sum(c[s] for s in DETECTED) / total, 2) if total else None
    return c


def _grouped(mutants: list[dict], key) -> dict[str, dict]:
    groups: dict[str, list[dict]] = {}
    for m in mutants:
        groups.setdefault(key(m), []).append(m)
    return {name: _counts(ms) for name, ms in groups.items()}


def _module(m: dict) -> str:
    return str(PurePosixPath(m["path"].replace("\\", "/"))) if m["path"] else "?"


def mutant_key(m: dict) -> tuple:
    """What identifies "the same mutant" across runs: operator, file, function and the changed lines.

    Not mutmut's id (its numbering shifts as code changes) and not the diff's context lines or
    line numbers (an edit nearby would make the same mutant look new).
    """
    changed = tuple(ln.strip() for ln in (m.get("diff") or "").splitlines()
                    if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---")))
    return (m["operator"], m["path"], m.get("function"), changed)


def killing_test(m: dict, extra: dict | None = None) -> tuple[str, str]:
    """(kind of test that would kill mutant *m*, what that test asserts)."""
    extra = extra or {}
    op = ALL_OPERATORS.get(m["operator"])
    kind = extra.get("test_kind") or extra.get("killer_kind") or (op.killer if op else GOLDEN)
    return str(kind), str(extra.get("hint") or ASSERTS.get(m["operator"], GOLDEN_ASSERT))


def bug_of(operator: str) -> str | None:
    """The real bug an operator models, in one line (from the operator registry)."""
    op = ALL_OPERATORS.get(operator)
    return op.bug if op else None


def _mutation_section(store: Store, since: datetime, until: datetime, history: datetime, top: int,
                      notes: list) -> dict:
    current = store.latest("mutate", until=until, full_only=True)
    if current is None or current.started_at < since:
        notes.append("no full `audit mutate` run in this period: mutation scores are not reported")
        current = None
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
    section["score"] = _counts(mutants)["score"]
    section["previous_score"] = _counts(old)["score"] if old else None
    if section["score"] is not None and section["previous_score"] is not None:
        section["delta"] = round(section["score"] - section["previous_score"], 2)
    old_ops = _grouped(old, lambda m: m["operator"])
    for name, c in sorted(_grouped(mutants, lambda m: m["operator"]).items(),
                          key=lambda kv: (kv[0] not in ML_OPERATORS, kv[0])):
        prev = old_ops.get(name, {}).get("score")
        section["by_operator"].append({"operator": name, "ml": name in ML_OPERATORS, **c, "previous_score": prev})
    old_mods = _grouped(old, _module)
    for name, c in sorted(_grouped(mutants, _module).items()):
        section["by_module"].append({"module": name, **c, "previous_score": old_mods.get(name, {}).get("score")})
    section["worth_a_test"], section["survivors"] = _worth_a_test(store, current, mutants, trend_runs, top)
    return section


def _worth_a_test(store: Store, current: Run, mutants: list[dict], trend_runs: list[Run], top: int):
    """Surviving mutants ranked by how much a test for them is worth.

    ML operators first (weighted by the kind of bug), then how long the mutant has survived;
    at most two per function so that one untested function does not fill the list.
    """
    survivors = [m for m in mutants if m["status"] == "survived"]
    extras = {m.get("id"): m for m in store.result(current.id).get("mutants", []) if isinstance(m, dict)}
    earlier = [r for r in trend_runs if r.started_at < current.started_at]
    survived_in: dict[tuple, list[Run]] = {}
    for run in earlier:
        for m in store.mutants(run.id, status="survived"):
            survived_in.setdefault(mutant_key(m), []).append(run)
    ranked = []
    for m in survivors:
        kind, why = killing_test(m, extras.get(m["id"]))
        past = survived_in.get(mutant_key(m), [])
        weight = (_OPERATOR_WEIGHT.get(kind, 1.5) if m["operator"] in ML_OPERATORS else 1.0) + 0.25 * len(past)
        ranked.append((weight, m, kind, why, past))
    ranked.sort(key=lambda r: (-r[0], r[1]["path"], r[1]["line"] or 0, r[1]["id"]))
    chosen, per_function = [], {}
    for weight, m, kind, why, past in ranked:
        fn = (m["path"], m.get("function"))
        if per_function.get(fn, 0) >= 2:
            continue
        per_function[fn] = per_function.get(fn, 0) + 1
        chosen.append({"id": m["id"], "operator": m["operator"], "ml": m["operator"] in ML_OPERATORS,
                       "path": m["path"], "line": m["line"], "function": m.get("function"), "diff": m["diff"],
                       "bug": bug_of(m["operator"]), "test_kind": kind, "why": why, "runs_survived": len(past) + 1, "runs_seen": len(earlier) + 1,
                       "surviving_since": _iso(past[0].started_at if past else current.started_at)})
        if len(chosen) >= top:
            break
    return chosen, len(survivors)


def _slowest_and_cost(store: Store, flaky: dict, top: int, notes: list) -> tuple[list, dict]:
    cost = {"tests": [], "rerun_seconds_per_100_ci_runs": None, "red_ci_runs_per_100_without_reruns": None,
            "audit_seconds": None}
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
    red = 1.0
    for t in flaky_rows:
        red *= 1.0 - min(max(t["rate"], 0.0), 1.0)
        per_100 = 100.0 * t["rate"] * t["mean_duration"] if t["mean_duration"] is not None else None
        cost["tests"].append({"nodeid": t["nodeid"], "rate": t["rate"], "mean_duration": t["mean_duration"],
                              "rerun_seconds_per_100_ci_runs": per_100})
    cost["tests"].sort(key=lambda c: -(c["rerun_seconds_per_100_ci_runs"] or 0.0))
    if flaky_rows:
        known = [c["rerun_seconds_per_100_ci_runs"] for c in cost["tests"] if c["rerun_seconds_per_100_ci_runs"] is not None]
        cost["rerun_seconds_per_100_ci_runs"] = sum(known) if known else None
    cost["red_ci_runs_per_100_without_reruns"] = round(100.0 * (1.0 - red), 2)
    totals = [t["total_duration"] for t in rows if t["total_duration"] is not None]
    cost["audit_seconds"] = sum(totals) if totals else None
    return slowest, cost


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


FILE_NAMES = {"html": "weekly.html", "md": "weekly.md", "json": "weekly.json"}


def write_report(cfg, *, since: str | None = None, until=None, formats: list[str] | None = None,
                 out: str | None = None, db: str | None = None) -> tuple[WeeklyReport, list]:
    """Build the report for project *cfg* from its store and write each format: (report, paths).

    Reads the store only (a missing store is an error, not an empty report), and writes each file
    whole (to a temporary name, then renamed) so a reader never sees half a report.
    """
    import os
    from pathlib import Path

    from audit.report.html import render_html
    from audit.report.markdown import render_markdown
    from audit.report.report_json import render_json
    from audit.store import store_path

    renderers = {"html": render_html, "md": render_markdown, "json": render_json}
    chosen = formats or cfg.report.formats
    unknown = [f for f in chosen if f not in renderers]
    if unknown or not chosen:
        raise AuditError(f"unknown report format {', '.join(unknown) or '(none)'}: choose from html, md, json")
    with Store(store_path(cfg, db), create=False) as store:
        report = build_weekly(store, since=since or cfg.report.since, until=until, history=cfg.report.history,
                              top=cfg.report.top)
    folder = Path(out).expanduser() if out else Path(cfg.root) / cfg.reports_dir
    if not folder.is_absolute():
        folder = Path.cwd() / folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditError(f"cannot create the report folder {folder}: {exc}") from None
    written = []
    for fmt in dict.fromkeys(chosen):
        path = folder / FILE_NAMES[fmt]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(renderers[fmt](report), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise AuditError(f"cannot write {path}: {exc}") from None
        written.append(path)
    return report, written
