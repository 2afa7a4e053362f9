"""Inline SVG charts for the HTML report: trend lines, bars, sparklines.

Plain SVG markup, no script and no external file, so the report opens offline and under a
Content-Security-Policy that forbids both. Every text that reaches a chart is escaped here.
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

# Fixed colours (the browser test looks for them in the screenshot to prove a chart was drawn).
FLAKY_COLOUR = "#dc2626"
FAILING_COLOUR = "#f59e0b"
SCORE_COLOUR = "#16a34a"
BAR_COLOUR = "#2563eb"
PREVIOUS_COLOUR = "#111827"
SPARK_COLOUR = "#9333ea"
GRID_COLOUR = "#e5e7eb"
TEXT_COLOUR = "#374151"

_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _attr(text: str) -> str:
    return escape(str(text), quote=True)


def _no_data(width: int, height: int, label: str, message: str) -> str:
    return (f'<svg class="chart empty" role="img" aria-label="{_attr(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<rect width="{width}" height="{height}" fill="#f9fafb" stroke="{GRID_COLOUR}"/>'
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{TEXT_COLOUR}" {_FONT}>'
            f'{escape(message)}</text></svg>')


def line_chart(series: list[dict], *, label: str, y_max: float | None = None, unit: str = "",
               width: int = 640, height: int = 220) -> str:
    """A time-series chart. *series*: [{"name", "colour", "points": [(datetime, value or None)]}]."""
    points = [(t, v) for s in series for t, v in s["points"] if v is not None]
    if not points:
        return _no_data(width, height, label, "no runs recorded yet")
    left, right, top, bottom = 44, 16, 14, 40
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(t for t, _ in points).timestamp()
    if y_max is not None:
        top_value = y_max
    else:  # counts: a multiple of 4 above the highest point, so the five grid labels are whole numbers
        top_value = 4.0 * math.ceil(max(1.0, max(v for _, v in points) * 1.1) / 4.0)
    span_t = (t1 - t0) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(t: datetime) -> float:
        return left + (plot_w / 2 if t1 == t0 else plot_w * (t.timestamp() - t0) / span_t)

    def y(v: float) -> float:
        return top + plot_h * (1.0 - min(v, top_value) / top_value)

    out = [f'<svg class="chart line" role="img" aria-label="{_attr(label)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    for i in range(5):
        v = top_value * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{GRID_COLOUR}"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="{TEXT_COLOUR}" {_FONT}>'
                   f'{v:.0f}{escape(unit)}</text>')
    stamps = sorted({t for t, _ in points})
    step = max(1, len(stamps) // 6)
    for t in stamps[::step]:
        out.append(f'<text x="{x(t):.1f}" y="{height - bottom + 16}" text-anchor="middle" fill="{TEXT_COLOUR}" '
                   f'{_FONT}>{t:%m-%d}</text>')
    legend_x = left
    for s in series:
        pts = [(x(t), y(v)) for t, v in s["points"] if v is not None]
        colour = _attr(s["colour"])
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{path}"/>')
        for (px, py), (t, v) in zip(pts, [(t, v) for t, v in s["points"] if v is not None]):
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}">'
                       f'<title>{escape(s["name"])}: {v:g}{escape(unit)} on {t:%Y-%m-%d %H:%M}</title></circle>')
        out.append(f'<rect x="{legend_x}" y="{height - 14}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{legend_x + 14}" y="{height - 5}" fill="{TEXT_COLOUR}" {_FONT}>{escape(s["name"])}</text>')
        legend_x += 30 + 7 * len(s["name"])
    out.append("</svg>")
    return "".join(out)


def bar_chart(rows: list[tuple[str, float | None, float | None]], *, label: str, max_value: float = 100.0,
              unit: str = "%", width: int = 640, bar_height: int = 18) -> str:
    """Horizontal bars, one per (name, value, previous value); the previous value is a tick mark."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return _no_data(width, 60, label, "nothing to chart")
    name_w = min(260, 12 + 7 * max(len(r[0]) for r in rows))
    plot_w = width - name_w - 60
    height = 10 + len(rows) * (bar_height + 8)
    out = [f'<svg class="chart bars" role="img" aria-label="{_attr(label)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    for i, (name, value, previous) in enumerate(rows):
        top = 6 + i * (bar_height + 8)
        w = max(1.0, plot_w * min(value, max_value) / max_value)
        shown = name if len(name) <= 36 else name[:35] + "…"
        out.append(f'<text x="{name_w - 8}" y="{top + bar_height - 5}" text-anchor="end" fill="{TEXT_COLOUR}" '
                   f'{_FONT}>{escape(shown)}<title>{escape(name)}</title></text>'
                   f'<rect x="{name_w}" y="{top}" width="{plot_w}" height="{bar_height}" fill="#f3f4f6"/>'
                   f'<rect x="{name_w}" y="{top}" width="{w:.1f}" height="{bar_height}" fill="{BAR_COLOUR}">'
                   f'<title>{escape(name)}: {value:.1f}{escape(unit)}</title></rect>'
                   f'<text x="{name_w + plot_w + 6}" y="{top + bar_height - 5}" fill="{TEXT_COLOUR}" {_FONT}>'
                   f'{value:.0f}{escape(unit)}</text>')
        if previous is not None:
            px = name_w + plot_w * min(previous, max_value) / max_value
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top - 2}" y2="{top + bar_height + 2}" '
                       f'stroke="{PREVIOUS_COLOUR}" stroke-width="2"><title>previous: {previous:.1f}{escape(unit)}'
                       f'</title></line>')
    out.append("</svg>")
    return "".join(out)


def sparkline(values: list[float | None], *, label: str, y_max: float = 1.0, width: int = 120,
              height: int = 26) -> str:
    """A small trend of one test's failure rate across runs (a gap where a run had no value)."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        return _no_data(width, height, label, "–")
    n = max(1, len(values) - 1)
    top = max(y_max, max(v for _, v in known)) or 1.0

    def xy(i: int, v: float) -> tuple[float, float]:
        return 4 + (width - 8) * (i / n if len(values) > 1 else 0.5), height - 4 - (height - 8) * v / top

    pts = [xy(i, v) for i, v in known]
    out = [f'<svg class="chart spark" role="img" aria-label="{_attr(label)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
           f'<line x1="4" x2="{width - 4}" y1="{height - 4}" y2="{height - 4}" stroke="{GRID_COLOUR}"/>']
    if len(pts) > 1:
        out.append(f'<polyline fill="none" stroke="{SPARK_COLOUR}" stroke-width="2" '
                   f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>')
    for (x, y), (_, v) in zip(pts, known):
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{SPARK_COLOUR}"><title>{v:.1%}</title></circle>')
    out.append("</svg>")
    return "".join(out)
