"""``audit report``: write the weekly quality report (HTML, Markdown, JSON) from the history store."""

from __future__ import annotations

from audit.commands import add_project_argument
from audit.errors import AuditError

NAME = "report"
HELP = "write the weekly quality report (flaky tests, mutation score, slow tests) from the history store"

def add_arguments(parser):
    add_project_argument(parser)
    parser.add_argument("--since", metavar="SPAN", help="period to report: 7d, 12h, 4w or an ISO date "
                        "(default: [tool.audit.report] since, 7d)")
    parser.add_argument("--until", metavar="TIME", help="end of the period, ISO 8601 (default: now)")
    parser.add_argument("--format", metavar="LIST", help="comma-separated formats: html, md, json "
                        "(default: [tool.audit.report] formats)")
    parser.add_argument("--out", metavar="DIR", help="folder to write into (default: [tool.audit] reports_dir)")
    parser.add_argument("--db", metavar="FILE", help="history store (default: [tool.audit] db)")


def formats_of(value) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    chosen = [f.strip().lower() for f in items if f.strip()]
    unknown = [f for f in chosen if f not in ("html", "md", "json")]
    if unknown or not chosen:
        raise AuditError(f"--format: unknown format {', '.join(unknown) or '(none)'}; choose from html, md, json")
    return list(dict.fromkeys(chosen))


def summary(report) -> list[str]:
    """Two lines for the terminal: the flaky picture and the mutation score of the period."""
    f, m = report.flaky, report.mutation
    lines = [f"{report.period['since'][:16]} → {report.period['until'][:16]} UTC"]
    if f["current_run"] is not None:
        lines.append(f"flaky: {len(f['new']) + len(f['still'])} now ({len(f['new'])} new, {len(f['still'])} still), "
                     f"{len(f['fixed'])} fixed, {len(f['failing'])} failing every time")
    if m["score"] is not None:
        delta = "" if m["delta"] is None else f" ({m['delta']:+.1f})"
        lines.append(f"mutation score: {m['score']:.1f}{delta}, {m['survivors']} surviving mutants")
    return lines + [f"note: {n}" for n in report.notes]


def run(args) -> int:
    from rich.console import Console

    from audit import api

    report, written = api.report(args.path, since=args.since, until=args.until,
                                 formats=formats_of(args.format) if args.format else None, out=args.out, db=args.db)
    console = Console(highlight=False)
    for line in summary(report):
        console.print(line)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    return 0
