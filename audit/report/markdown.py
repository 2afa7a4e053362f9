"""The weekly report as Markdown, fit to paste into a pull request or a chat.

Same content as the HTML report minus the charts (trend numbers are given as text instead).
Names from the store go into code spans, and free text is escaped, so a node id with ``|``,
backticks or HTML in it can neither break a table nor inject markup.
"""

from __future__ import annotations

import re

from audit.report.weekly import WeeklyReport

_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def text(value) -> str:
    """Plain text safe in Markdown (and in a table cell)."""
    s = "" if value is None else str(value)
    s = _SPECIAL.sub(r"\\\1", s.replace("\r", " ").replace("\n", " "))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(value) -> str:
    """An inline code span that survives any backticks or pipes in *value*."""
    s = ("" if value is None else str(value)).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def block(value: str, lang: str = "") -> str:
    body = (value or "").rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body}\n{fence}"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _red_interval(cost: dict) -> str:
    span = cost.get("red_ci_runs_per_100_interval")
    return f" ({span[0]:.1f}–{span[1]:.1f} from the tests' 95% intervals)" if span else ""


def _points(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def _trend(test: dict) -> str:
    return " → ".join(_pct(p["rate"]) for p in test["trend"][-6:]) or "–"


def _flaky_rows(tests: list[dict]) -> list[str]:
    lines = ["| test | rate (95% interval) | failures/runs | trend | causes and hints |", "|---|---|---|---|---|"]
    for t in tests:
        low, high = t["interval"]
        interval = f"{_pct(low)}–{_pct(high)}" if low is not None and high is not None else "–"
        causes = "; ".join(text(c["text"]) for c in t["causes"]) or "cause not attributed"
        hints = " ".join(f"→ {text(h)}" for h in t["hints"])
        checked = " (checked: fails again)" if t["repro_verified"] else ""
        repro = f"<br>repro{checked}: {code(t['repro'])}" if t["repro"] else ""
        if t["masked_by_reruns"]:
            repro += f"<br>{t['masked_by_reruns']} failure(s) hidden by pytest-rerunfailures"
        if t.get("patch"):
            hints += f"<br>patch ({text(t['patch']['kind'])}): {code(t['patch']['path'])}, {text(t['patch']['text'])}"
        lines.append(f"| {code(t['nodeid'])}{repro} | {_pct(t['rate'])} ({interval}) | {t['failures']}/{t['executions']}"
                     f" | {_trend(t)} | {causes}<br>{hints} |")
    return lines


def render_markdown(report: WeeklyReport) -> str:
    f, m, cost, p = report.flaky, report.mutation, report.flaky_cost, report.period
    out = [f"# Weekly quality report: {text(report.project)}", "",
           f"{p['since'][:16]} → {p['until'][:16]} UTC ({text(p['span'])}); trends since {p['history_since'][:10]}.", ""]
    flaky_now = len(f["new"]) + len(f["still"])
    summary = []
    if f["current_run"] is not None:
        summary.append(f"- **{flaky_now}** flaky tests now: {len(f['new'])} new, {len(f['still'])} still flaky, "
                       f"{len(f['fixed'])} fixed; {len(f['failing'])} failing every time")
    if m["current_run"] is not None:
        delta = "" if m["delta"] is None else f" ({'+' if m['delta'] >= 0 else ''}{m['delta']:.1f} points)"
        summary.append(f"- mutation score **{_points(m['score'])}**{delta}, {m['survivors']} surviving mutants")
    if cost["red_ci_runs_per_100_without_reruns"] is not None and f["current_run"] is not None:
        summary.append(f"- at the rates the audit measured, flakiness would turn "
                       f"**{cost['red_ci_runs_per_100_without_reruns']:.1f}**{_red_interval(cost)} CI runs in 100 "
                       "red without reruns")
    out += summary + [""] + [f"> {text(n)}" for n in report.notes] + ([""] if report.notes else [])

    out += ["## Flaky tests", ""]
    if f["trend"]:
        out.append("Flaky tests per audit run: " + ", ".join(f"{t['at'][:10]}: {t['flaky']}" for t in f["trend"]))
        out.append("")
    if f["current_run"] is None:
        out += ["No flaky audit in this period.", ""]
    else:
        if f["first_audit"]:
            out += ["First audit: every flaky test counts as new.", ""]
        for key, title in (("new", "New this period"), ("still", "Still flaky"), ("fixed", "Fixed"),
                           ("failing", "Failing every time (broken, not flaky)")):
            if key == "failing" and not f[key]:
                continue
            out += [f"### {title} ({len(f[key])})", ""]
            out += (_flaky_rows(f[key]) if f[key] else ["None."]) + [""]

    out += ["## Mutation testing", ""]
    if m["trend"]:
        out += ["Score per full run: " + ", ".join(f"{t['at'][:10]}: {_points(t['score'])}" for t in m["trend"]), ""]
    if m["current_run"] is None:
        out += ["No full mutate run in this period.", ""]
    else:
        out += ["### Score by operator", "", "| operator | killed | survived | timeout | no coverage | score | before |",
                "|---|---|---|---|---|---|---|"]
        for r in m["by_operator"]:
            out.append(f"| {code(r['operator'])} | {r['killed']} | {r['survived']} | {r['timeout']} | {r['no_coverage']}"
                       f" | {_points(r['score'])} | {_points(r['previous_score'])} |")
        out += ["", "### Score by module", "", "| module | killed | survived | timeout | no coverage | score | before |",
                "|---|---|---|---|---|---|---|"]
        for r in m["by_module"]:
            out.append(f"| {code(r['module'])} | {r['killed']} | {r['survived']} | {r['timeout']} | {r['no_coverage']}"
                       f" | {_points(r['score'])} | {_points(r['previous_score'])} |")
        out += ["", f"### Surviving mutants most worth a test ({len(m['worth_a_test'])} of {m['survivors']})", ""]
        for s in m["worth_a_test"]:
            runs = f", survived {s['runs_survived']} of {s['runs_seen']} runs" if s["runs_survived"] > 1 else ""
            out += [f"- {code(s['operator'])} at {code(str(s['path']) + ':' + str(s['line']))} in "
                    f"{code(s['function'])}{runs}; models: {text(s['bug'] or 'a mutmut mutation')}; "
                    f"kind of test that kills it: **{text(s['test_kind'])}**: {text(s['why'])}",
                    "", block(s["diff"], "diff"), ""]

    out += ["## Slowest tests and what flakiness costs", ""]
    if report.slowest:
        out += ["| test | mean time | executions |", "|---|---|---|"]
        out += [f"| {code(t['nodeid'])} | {t['mean_duration']:.3f} s | {t['executions']} |" for t in report.slowest]
        out.append("")
    if cost["tests"]:
        total = cost["rerun_seconds_per_100_ci_runs"]
        out += [f"With one rerun per failure, flaky tests cost {'–' if total is None else f'{total:.1f} s'} "
                "of reruns per 100 CI runs.", "", "| flaky test | rate | 95% interval | mean time | rerun s / 100 CI runs |",
                "|---|---|---|---|---|"]
        for c in cost["tests"]:
            mean, per = c["mean_duration"], c["rerun_seconds_per_100_ci_runs"]
            low, high = c["interval"]
            out.append(f"| {code(c['nodeid'])} | {_pct(c['rate'])} | {_pct(low)}–{_pct(high)} | "
                       f"{'–' if mean is None else f'{mean:.3f} s'} | "
                       f"{'–' if per is None else f'{per:.2f}'} |")
        out.append("")
    elif not report.slowest:
        out += ["No timing data in this period.", ""]
    runs = sorted(report.runs["flaky"] + report.runs["mutate"], key=lambda r: r["started_at"])
    out.append("Runs in this period: " + (", ".join(
        f"{r['kind']} run {r['id']} ({r['started_at'][:10]}, {code((r['commit'] or 'no commit')[:8])})" for r in runs)
        or "none") + ".")
    return "\n".join(out) + "\n"
