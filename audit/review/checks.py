"""The review's checks: each compares the two sides and adds a reason to fail, a pass or a skip.

- ``new_flaky``: a test flaky now that was not flaky in the baseline;
- ``score_drop``: the mutation score fell by more than ``[tool.audit.review] max_score_drop`` points
  (full runs on both sides, with the same operators: a partial score is not compared);
- ``new_survivors``: a mutant the baseline's tests killed survives now, the trace of a weakened
  test (mutants are matched by operator, file, function and diff, since mutmut renumbers them);
- ``changed_survivors``: ML mutants the suite does not detect (survived, no test covers them, or
  killed only under some seeds) on lines changed since the baseline's commit.

Every reason carries its evidence; checks that cannot be made (no flaky run on one side, no git)
are listed as skipped with the reason, never silently passed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from audit import vcs
from audit.explain import cause_text, killing_test
from audit.history import mutant_key
from audit.model.mutate import DETECTED, UNDETECTED, Mutant, Tally
from audit.review.baseline import Side

REVIEW_SCHEMA = "ml-audit.review/1"


@dataclass
class Reason:
    check: str
    message: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class Review:
    baseline: Side
    current: Side
    reasons: list[Reason] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)   # review.md and review.json, once written

    @property
    def exit_code(self) -> int:
        return 1 if self.reasons else 0

    def as_dict(self) -> dict[str, Any]:
        return {"schema": REVIEW_SCHEMA, "decision": "fail" if self.reasons else "pass",
                "exit_code": self.exit_code, "baseline": self.baseline.describe(),
                "current": self.current.describe(), "reasons": [asdict(r) for r in self.reasons],
                "passed": self.passed, "skipped": self.skipped}


def _pct(value) -> str:
    return "?" if value is None else f"{100 * value:.1f}%"


def check_new_flaky(review: Review) -> None:
    base, cur = review.baseline.flaky, review.current.flaky
    if base is None or cur is None:
        review.skipped.append(f"new_flaky: no flaky results for the {'baseline' if base is None else 'current state'}")
        return
    before = {t.nodeid: t for t in base}
    evidence = []
    for t in sorted(cur, key=lambda t: t.nodeid):
        was = before.get(t.nodeid)
        if t.verdict != "flaky" or (was is not None and was.verdict == "flaky"):
            continue
        low, high = t.interval
        was_text = f"baseline: {was.verdict} in {was.executions} executions" if was else "baseline: not in the suite"
        line = (f"{t.nodeid}: flaky now, {t.failures}/{t.executions} executions failed "
                f"(rate {_pct(t.rate)}, 95% interval {_pct(low)}–{_pct(high)}); {was_text}")
        if t.causes:
            line += f"; causes: {'; '.join(cause_text(c) for c in t.causes)}"
        if t.repro:
            line += f"; repro: {t.repro}"
        evidence.append(line)
    if evidence:
        review.reasons.append(Reason("new_flaky", f"{len(evidence)} test(s) flaky now that were not flaky in the "
                                                  "baseline", evidence))
    else:
        review.passed.append(f"new_flaky: no new flaky test ({sum(t.verdict == 'flaky' for t in cur)} "
                             "flaky now, all already flaky in the baseline)")


def _mutant_line(m: Mutant, extra: str = "") -> str:
    kind, why = killing_test(m)
    return (f"{m.operator} at {m.path}:{m.line} in {m.function}{extra}; "
            f"kind of test that kills it: {kind} ({why})\n{m.diff.rstrip()}")


def _scores(mutants: list[Mutant], key) -> dict[str, float]:
    groups: dict[str, Tally] = {}
    for m in mutants:
        groups.setdefault(str(key(m)), Tally()).add(m.status)
    return {g: t.score for g, t in groups.items() if t.score is not None}


def check_score(review: Review, max_drop: float) -> None:
    base, cur = review.baseline, review.current
    if base.mutants is None or cur.mutants is None:
        review.skipped.append(f"score_drop: no mutate results for the {'baseline' if base.mutants is None else 'current state'}")
        return
    if base.partial or cur.partial:
        review.skipped.append("score_drop: a partial mutate run (changed lines only, or mutants left unchecked) "
                              "has no comparable score")
        return
    if base.operators and cur.operators and base.operators != cur.operators:
        review.skipped.append(f"score_drop: the runs used different operators ({len(base.operators)} in the "
                              f"baseline, {len(cur.operators)} now), so their scores do not compare")
        return
    if base.score is None or cur.score is None:
        review.skipped.append("score_drop: no scored mutants on one side")
        return
    drop = base.score - cur.score
    if drop > max_drop:
        evidence = [f"score {base.score:.1f} → {cur.score:.1f} ({-drop:+.1f} points; allowed: -{max_drop:g})"]
        for name, key in (("operator", lambda m: m.operator), ("module", lambda m: m.path)):
            old, new = _scores(base.mutants, key), _scores(cur.mutants, key)
            for group in sorted(set(old) & set(new)):
                if new[group] < old[group]:
                    evidence.append(f"{name} {group}: {old[group]:.1f} → {new[group]:.1f}")
        review.reasons.append(Reason("score_drop", f"mutation score fell by {drop:.1f} points", evidence))
    else:
        review.passed.append(f"score_drop: score {base.score:.1f} → {cur.score:.1f} (allowed drop {max_drop:g})")


def check_new_survivors(review: Review, ml_only: bool) -> None:
    base, cur = review.baseline.mutants, review.current.mutants
    if base is None or cur is None:
        review.skipped.append(f"new_survivors: no mutate results for the {'baseline' if base is None else 'current state'}")
        return
    killed_before = {mutant_key(m): m for m in base if m.status in DETECTED}
    evidence = []
    for m in cur:
        if m.status != "survived" or (ml_only and not m.ml):
            continue
        old = killed_before.get(mutant_key(m))
        if old is not None:
            by = ", ".join(old.killed_by) or "the suite"
            evidence.append(_mutant_line(m, f": killed in the baseline by {by}, survives now"))
    what = "ML mutants" if ml_only else "mutants"
    if evidence:
        review.reasons.append(Reason("new_survivors", f"{len(evidence)} {what} killed in the baseline survive now "
                                                      "(a test was weakened or removed)", evidence))
    else:
        review.passed.append(f"new_survivors: every {what[:-1]} the baseline killed is still killed")


def _rel(path: str) -> str:
    return str(PurePosixPath(path.replace("\\", "/")))


def check_changed_survivors(review: Review, root: Path, ml_only: bool, since: str | None) -> None:
    cur = review.current.mutants
    ref = since or review.baseline.commit
    if cur is None:
        review.skipped.append("changed_survivors: no mutate results for the current state")
        return
    if not ref:
        review.skipped.append("changed_survivors: the baseline names no git commit (give --changed-since REF)")
        return
    if vcs.head_commit(root) is None:
        review.skipped.append(f"changed_survivors: {root} is not in a git work tree")
        return
    if vcs.resolve_commit(root, ref) is None:
        review.skipped.append(f"changed_survivors: the baseline commit {ref[:12]} is not in this repository")
        return
    changed = {_rel(p): lines for p, lines in vcs.changed_lines(root, ref).items()}
    evidence = []
    for m in cur:
        path = m.path
        if os.path.isabs(path):
            try:
                path = str(Path(path).resolve().relative_to(root))
            except ValueError:
                continue
        if m.status in UNDETECTED and (m.ml or not ml_only) and m.line in changed.get(_rel(path), ()):
            evidence.append(_mutant_line(m, f" ({m.status.replace('_', ' ')}): line changed since {ref[:12]}"))
    what = "ML mutants" if ml_only else "mutants"
    if evidence:
        review.reasons.append(Reason("changed_survivors", f"{len(evidence)} {what} go undetected on lines changed "
                                                          f"since {ref[:12]}", evidence))
    else:
        n = sum(len(v) for v in changed.values())
        review.passed.append(f"changed_survivors: no undetected {what[:-1]} on the {n} line(s) changed since "
                             f"{ref[:12]}")
