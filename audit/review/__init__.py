"""The pre-release review: compare the current audit results with a baseline and decide a release.

``baseline`` resolves the two sides (runs in the history store, git refs, result files),
``checks`` compares them, ``render`` writes the decision down. Reading results loads neither
mutmut nor libcst.
"""

from __future__ import annotations

from pathlib import Path

from audit.errors import AuditError
from audit.review.baseline import Side, as_file, resolve_baseline, resolve_current
from audit.review.checks import (REVIEW_SCHEMA, Reason, Review, check_changed_survivors, check_new_flaky,
                                 check_new_survivors, check_score)
from audit.review.render import render_review_markdown, write_review
from audit.store import Store, store_path

__all__ = ["REVIEW_SCHEMA", "Reason", "Review", "Side", "render_review_markdown", "run_review", "write_review"]


def run_review(cfg, *, baseline: list[str], current: list[str] | None = None, db: str | None = None,
               changed_since: str | None = None) -> Review:
    """Compare the current state with *baseline* under ``cfg.review``'s thresholds."""
    if not baseline:
        raise AuditError("--baseline is required: a recorded run id, a git ref or a result file")
    root = Path(cfg.root)
    path = store_path(cfg, db)
    needs_store = not current or any(as_file(s, root) is None for s in [*baseline, *current])
    if needs_store and not path.exists():
        raise AuditError(f"no history store at {path}: run `audit flaky` / `audit mutate` first, "
                         "or give result files for both --baseline and --current")
    store = Store(path, readonly=True) if path.exists() else None
    try:
        if needs_store and store.count() == 0:
            raise AuditError(f"the history store {path} is empty: run `audit flaky` / `audit mutate` first")
        base = resolve_baseline(store, baseline, root)
        cur = resolve_current(store, current or [], root)
    finally:
        if store is not None:
            store.close()
    review = Review(baseline=base, current=cur)
    rules = cfg.review
    if rules.fail_on_new_flaky:
        check_new_flaky(review)
    check_score(review, rules.max_score_drop)
    if rules.fail_on_new_survivors:
        check_new_survivors(review, rules.ml_only)
    if rules.fail_on_changed_survivors:
        check_changed_survivors(review, root, rules.ml_only, changed_since)
    return review
