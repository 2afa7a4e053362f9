"""Writing a review down: review.md for people, review.json for scripts."""

from __future__ import annotations

import json
from pathlib import Path

from audit.atomic import write_text
from audit.errors import AuditError
from audit.report.markdown import block, code, text
from audit.review.checks import Review


def render_review_markdown(review: Review) -> str:
    b, c = review.baseline, review.current
    verdict = "❌ **release blocked**" if review.reasons else "✅ **clear to release**"
    out = [f"# ml-audit review: {verdict}", "",
           f"- baseline: {text(b.flaky_source or '–')} / {text(b.mutate_source or '–')}"
           f"{f' at {code(b.commit[:12])}' if b.commit else ''}",
           f"- current: {text(c.flaky_source or '–')} / {text(c.mutate_source or '–')}"
           f"{f' at {code(c.commit[:12])}' if c.commit else ''}", ""]
    for r in review.reasons:
        out += [f"## ❌ {text(r.check)}: {text(r.message)}", ""]
        for e in r.evidence:
            head, _, diff = e.partition("\n")
            out.append(f"- {text(head)}")
            if diff:
                out += ["", block(diff, "diff"), ""]
        out.append("")
    if review.passed:
        out += ["## Passed", ""] + [f"- ✅ {text(p)}" for p in review.passed] + [""]
    if review.skipped:
        out += ["## Not checked", ""] + [f"- ⚠️ {text(s)}" for s in review.skipped] + [""]
    return "\n".join(out)


def write_review(review: Review, folder: Path) -> list[Path]:
    """review.md and review.json in *folder*, each written whole."""
    written = []
    for name, body in (("review.md", render_review_markdown(review)),
                       ("review.json", json.dumps(review.as_dict(), indent=2, default=str) + "\n")):
        try:
            written.append(write_text(folder / name, body))
        except OSError as exc:
            raise AuditError(f"cannot write {folder / name}: {exc}") from None
    return written
