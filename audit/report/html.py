"""The weekly report as one self-contained HTML file: inline CSS and SVG, no script, no network.

A Content-Security-Policy in the page forbids scripts and every external load, so even a test
name that slipped past escaping could not run or fetch anything; everything taken from the
store (node ids, diffs, causes, repro lines) is escaped on the way in regardless.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from audit.report import charts
from audit.report.weekly import WeeklyReport

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #111827; margin: 0; background: #f9fafb; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.sub { color: #6b7280; margin: 0 0 16px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.card { border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 14px; min-width: 150px; }
.card b { display: block; font-size: 22px; } .card span { color: #6b7280; font-size: 12px; }
.bad { color: #b91c1c; } .good { color: #15803d; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 6px 0 12px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #f3f4f6; vertical-align: top; }
th { background: #f9fafb; font-weight: 600; }
tr.test td { border-bottom: none; } tr.test td:first-child { width: 34%; } tr.details td { padding-top: 0; padding-bottom: 10px; }
code, pre { font-family: ui-monospace, 'SFMono-Regular', Menlo, monospace; font-size: 12px; }
code { background: #f3f4f6; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
pre { background: #f9fafb; border: 1px solid #e5e7eb; padding: 8px; overflow-x: auto; margin: 4px 0; }
pre .add { color: #15803d; } pre .del { color: #b91c1c; } pre .hunk { color: #6b7280; }
.hint { color: #374151; font-size: 12px; } .note { color: #92400e; background: #fffbeb; padding: 6px 10px; border-radius: 6px; margin: 4px 0; }
.survivor { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 12px; margin: 10px 0; }
.tag { display: inline-block; font-size: 11px; padding: 1px 6px; border-radius: 9px; background: #e0e7ff; color: #3730a3; margin-right: 4px; }
.tag.confirmed { background: #dcfce7; color: #166534; } .tag.suspected { background: #fef3c7; color: #92400e; }
.tag.unknown { background: #f3f4f6; color: #374151; } .tag.undetermined { background: #e0e7ff; color: #3730a3; }
footer { margin-top: 32px; color: #6b7280; font-size: 12px; }
"""


def _e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def _pct(value, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _points(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def _diff(text: str) -> str:
    lines = []
    for line in (text or "").splitlines():
        cls = "add" if line.startswith("+") and not line.startswith("+++") else \
              "del" if line.startswith("-") and not line.startswith("---") else \
              "hunk" if line.startswith("@@") else ""
        lines.append(f'<span class="{cls}">{_e(line)}</span>' if cls else _e(line))
    return "<pre>" + "\n".join(lines) + "</pre>"


def _interval(test: dict) -> str:
    low, high = test["interval"]
    return f"{_pct(low)}–{_pct(high)}" if low is not None and high is not None else "–"


def _red_interval(cost: dict, before: str = "", after: str = "") -> str:
    """The red-CI estimate's range, from each flaky test's 95% interval (see weekly.py)."""
    span = cost.get("red_ci_runs_per_100_interval")
    return f"{before}{span[0]:.1f}–{span[1]:.1f} from the tests' 95% intervals{after}" if span else ""


def _cause(cause: dict) -> str:
    """A cause with its status as a tag: only a confirmed one is stated as the cause."""
    status, p = cause["status"], cause["p_value"]
    head = f"<b>{_e(cause['source'])}</b>" + (f" (p = {p:.2g})" if p is not None else "")
    details = "".join(f"<div class='hint'>{_e(d)}</div>" for d in cause["details"])
    return f"<div><span class='tag {_e(status)}'>{_e(status)}</span>{head}{details}</div>"


def _flaky_table(tests: list[dict], title: str, empty: str) -> str:
    out = [f"<h3>{_e(title)} ({len(tests)})</h3>"]
    if not tests:
        return out[0] + f"<p class='sub'>{_e(empty)}</p>"
    out.append("<table><tr><th>test</th><th>rate (95% interval)</th><th>runs</th><th>trend</th>"
               "<th>causes and hints</th></tr>")
    for t in tests:
        spark = charts.sparkline([p["rate"] for p in t["trend"]], label=f"failure rate of {t['nodeid']} by run")
        causes = "".join(_cause(c) for c in t["causes"]) or "<div class='sub'>cause not attributed</div>"
        hints = "".join(f"<div class='hint'>→ {_e(h)}</div>" for h in t["hints"])
        checked = " (checked: fails again)" if t["repro_verified"] else ""
        details = f"<div>repro{checked}: <code>{_e(t['repro'])}</code></div>" if t["repro"] else ""
        if t["masked_by_reruns"]:
            details += f"<div class='hint bad'>{t['masked_by_reruns']} failure(s) hidden by pytest-rerunfailures</div>"
        details += "".join(f"<div class='hint'>failed: {_e(f)}</div>" for f in t["failing_settings"])
        if t.get("patch"):
            patch = t["patch"]
            good = "" if patch["verified"] else " bad"
            details += (f"<div class='hint{good}'>patch ({_e(patch['kind'])}): <code>{_e(patch['path'])}</code>,"
                        f" {_e(patch['text'])}</div>")
        prev = t["previous"]
        was = f"<div class='hint'>before: {_e(prev['verdict'])} {_pct(prev['rate'])}</div>" if prev else ""
        out.append(f"<tr class='test'><td><code>{_e(t['nodeid'])}</code></td>"
                   f"<td>{_pct(t['rate'])}<div class='hint'>{_interval(t)}</div>{was}</td>"
                   f"<td>{t['failures']}/{t['executions']}</td><td>{spark}</td><td>{causes}{hints}</td></tr>")
        if details:
            out.append(f"<tr class='details'><td colspan='5'>{details}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _cards(report: WeeklyReport) -> str:
    f, m, cost = report.flaky, report.mutation, report.flaky_cost
    flaky_now = len(f["new"]) + len(f["still"])
    delta = m["delta"]
    delta_text = "" if delta is None else f" ({'+' if delta >= 0 else ''}{delta:.1f})"
    cards = [
        (str(flaky_now) if f["current_run"] else "–", "flaky tests now", "bad" if flaky_now else "good"),
        (f"{len(f['new'])} / {len(f['fixed'])}", "new / fixed this period", "bad" if f["new"] else ""),
        (_points(m["score"]) + delta_text, "mutation score (points)", "bad" if (delta or 0) < 0 else ""),
        (str(m["survivors"]) if m["current_run"] else "–", "surviving mutants", ""),
        ("–" if cost["red_ci_runs_per_100_without_reruns"] is None else f"{cost['red_ci_runs_per_100_without_reruns']:.1f}",
         "CI runs in 100 red from flakiness (at the audit's rates" + _red_interval(cost, "; ") + ")",
         "bad" if cost["red_ci_runs_per_100_without_reruns"] else ""),
    ]
    return "<div class='cards'>" + "".join(
        f"<div class='card'><b class='{cls}'>{_e(v)}</b><span>{_e(label)}</span></div>" for v, label, cls in cards
    ) + "</div>"


def _flaky_section(report: WeeklyReport) -> str:
    f = report.flaky
    trend = charts.line_chart(
        [{"name": "flaky", "colour": charts.FLAKY_COLOUR,
          "points": [(_when(p["at"]), p["flaky"]) for p in f["trend"]]},
         {"name": "failing", "colour": charts.FAILING_COLOUR,
          "points": [(_when(p["at"]), p["failing"]) for p in f["trend"]]}],
        label="flaky and failing tests per audit run")
    out = ["<h2 id='flaky'>Flaky tests</h2>", trend]
    if f["current_run"] is None:
        return "".join(out) + "<p class='sub'>No flaky audit in this period.</p>"
    first = " (first audit: every flaky test counts as new)" if f["first_audit"] else ""
    out.append(f"<p class='sub'>{f['tests']} tests in run {f['current_run']}, compared with "
               f"{'run ' + str(f['reference_run']) if f['reference_run'] else 'nothing'}{_e(first)}.</p>")
    out.append(_flaky_table(f["new"], "New this period", "No new flaky test."))
    out.append(_flaky_table(f["still"], "Still flaky", "None."))
    out.append(_flaky_table(f["fixed"], "Fixed", "None fixed this period."))
    if f["failing"]:
        out.append(_flaky_table(f["failing"], "Failing every time (broken, not flaky)", ""))
    return "".join(out)


def _mutation_section(report: WeeklyReport) -> str:
    m = report.mutation
    out = ["<h2 id='mutation'>Mutation testing</h2>",
           charts.line_chart([{"name": "mutation score", "colour": charts.SCORE_COLOUR,
                               "points": [(_when(p["at"]), p["score"]) for p in m["trend"]]}],
                             label="mutation score per full mutate run", y_max=100.0, unit="%")]
    if m["current_run"] is None:
        return "".join(out) + "<p class='sub'>No full mutate run in this period.</p>"
    out.append(f"<p class='sub'>{m['mutants']} mutants in run {m['current_run']}; score {_points(m['score'])}"
               f" (previous {_points(m['previous_score'])}). Bars: score now; tick: previous.</p>")
    out.append("<h3>Score by operator</h3>")
    out.append(charts.bar_chart([(r["operator"], r["score"], r["previous_score"]) for r in m["by_operator"]],
                                label="mutation score by operator"))
    out.append("<h3>Score by module</h3>")
    out.append(charts.bar_chart([(r["module"], r["score"], r["previous_score"]) for r in m["by_module"]],
                                label="mutation score by module"))
    out.append("<table><tr><th>module</th><th>killed</th><th>survived</th><th>timeout</th><th>no coverage</th>"
               "<th>score</th></tr>")
    for r in m["by_module"]:
        out.append(f"<tr><td><code>{_e(r['module'])}</code></td><td>{r['killed']}</td><td>{r['survived']}</td>"
                   f"<td>{r['timeout']}</td><td>{r['no_coverage']}</td><td>{_points(r['score'])}</td></tr>")
    out.append("</table>")
    out.append(f"<h3>Surviving mutants most worth a test ({len(m['worth_a_test'])} of {m['survivors']})</h3>")
    for s in m["worth_a_test"]:
        runs = (f", survived {s['runs_survived']} of {s['runs_seen']} runs since {s['surviving_since'][:10]}"
                if s["runs_survived"] > 1 else "")
        out.append(f"<div class='survivor'><span class='tag'>{_e(s['operator'])}</span>"
                   f"<span class='tag'>{_e(s['test_kind'])} test</span>"
                   f"<code>{_e(s['path'])}:{_e(s['line'])}</code> in <code>{_e(s['function'])}</code>{_e(runs)}"
                   f"<div class='hint'>models: {_e(s['bug'] or 'a mutmut mutation')}</div>"
                   f"{_diff(s['diff'])}<div class='hint'>→ {_e(s['why'])}</div></div>")
    return "".join(out)


def _cost_section(report: WeeklyReport) -> str:
    out = ["<h2 id='time'>Slowest tests and what flakiness costs</h2>"]
    if report.slowest:
        out.append("<table><tr><th>test</th><th>mean time</th><th>executions</th><th>verdict</th></tr>")
        for t in report.slowest:
            out.append(f"<tr><td><code>{_e(t['nodeid'])}</code></td><td>{t['mean_duration']:.3f} s</td>"
                       f"<td>{t['executions']}</td><td>{_e(t['verdict'])}</td></tr>")
        out.append("</table>")
    cost = report.flaky_cost
    if cost["tests"]:
        total = cost["rerun_seconds_per_100_ci_runs"]
        out.append(f"<p>At the failure rates measured under the audit's varied settings, without reruns "
                   f"<b>{cost['red_ci_runs_per_100_without_reruns']:.1f}</b>{_e(_red_interval(cost, ' (', ')'))} "
                   f"CI runs in 100 would go red "
                   f"from flaky tests alone; with one rerun each, reruns cost "
                   f"<b>{'–' if total is None else f'{total:.1f} s'}</b> per 100 CI runs.</p>")
        out.append("<table><tr><th>flaky test</th><th>rate</th><th>95% interval</th><th>mean time</th>"
                   "<th>rerun s / 100 CI runs</th></tr>")
        for c in cost["tests"]:
            per = c["rerun_seconds_per_100_ci_runs"]
            mean = c["mean_duration"]
            out.append(f"<tr><td><code>{_e(c['nodeid'])}</code></td><td>{_pct(c['rate'])}</td><td>{_interval(c)}</td>"
                       f"<td>{'–' if mean is None else f'{mean:.3f} s'}</td><td>{'–' if per is None else f'{per:.2f}'}</td></tr>")
        out.append("</table>")
    elif not report.slowest:
        out.append("<p class='sub'>No timing data in this period.</p>")
    return "".join(out)


def render_html(report: WeeklyReport) -> str:
    """The report as a complete HTML document (UTF-8)."""
    p = report.period
    notes = "".join(f"<div class='note'>{_e(n)}</div>" for n in report.notes)
    runs = report.runs["flaky"] + report.runs["mutate"]
    listed = ", ".join(f"{r['kind']} run {r['id']} at {r['started_at'][:16]} ({(r['commit'] or 'no commit')[:8]})"
                       for r in sorted(runs, key=lambda r: r["started_at"]))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>ml-audit weekly report: {_e(report.project)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>Weekly quality report: {_e(report.project)}</h1>"
        f"<p class='sub'>{_e(p['since'][:16])} → {_e(p['until'][:16])} UTC ({_e(p['span'])}); trends since "
        f"{_e(p['history_since'][:10])}.</p>"
        f"{_cards(report)}{notes}{_flaky_section(report)}{_mutation_section(report)}{_cost_section(report)}"
        f"<footer>Runs in this period: {_e(listed or 'none')}.<br>Generated by ml-audit at "
        f"{_e(report.generated_at)} from {_e(report.store)}.</footer></main></body></html>\n"
    )
