"""The weekly report as JSON (schema "ml-audit.report/2"): the same data the HTML and Markdown show.

For dashboards and scripts; the field names are those of ``audit.report.weekly.WeeklyReport``
(schema 2: each cause is an object, the results model's ``Cause`` fields plus its words).
"""

from __future__ import annotations

import json

from audit.report.weekly import WeeklyReport


def render_json(report: WeeklyReport) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=False, default=str) + "\n"
