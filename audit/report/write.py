"""Writing the weekly report: build it once from the store, then hand it to each format's writer."""

from __future__ import annotations

from pathlib import Path

from audit.atomic import write_text
from audit.errors import AuditError
from audit.report.html import render_html
from audit.report.markdown import render_markdown
from audit.report.report_json import render_json
from audit.report.weekly import WeeklyReport, build_weekly
from audit.store import Store, store_path

WRITERS = {"html": render_html, "md": render_markdown, "json": render_json}
FILE_NAMES = {"html": "weekly.html", "md": "weekly.md", "json": "weekly.json"}


def write_report(cfg, *, since: str | None = None, until=None, formats: list[str] | None = None,
                 out: str | None = None, db: str | None = None) -> tuple[WeeklyReport, list[Path]]:
    """Build the report for project *cfg* from its store and write each format: (report, paths).

    Reads the store only (a missing store is an error, not an empty report), and writes each file
    whole, so a reader never sees half a report.
    """
    chosen = formats or cfg.report.formats
    unknown = [f for f in chosen if f not in WRITERS]
    if unknown or not chosen:
        raise AuditError(f"unknown report format {', '.join(unknown) or '(none)'}: choose from html, md, json")
    with Store(store_path(cfg, db), readonly=True) as store:
        report = build_weekly(store, since=since or cfg.report.since, until=until, history=cfg.report.history,
                              top=cfg.report.top)
    folder = Path(out).expanduser() if out else Path(cfg.root) / cfg.reports_dir
    if not folder.is_absolute():
        folder = Path.cwd() / folder
    written = []
    for fmt in dict.fromkeys(chosen):
        path = folder / FILE_NAMES[fmt]
        try:
            written.append(write_text(path, WRITERS[fmt](report)))
        except OSError as exc:
            raise AuditError(f"cannot write {path}: {exc}") from None
    return report, written
