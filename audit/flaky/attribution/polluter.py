"""The polluter search for an order-dependent test: which earlier test it fails after, and what
global state that test leaves.

A probe run (the audit.flaky.statediff plugin, one interpreter) records what each earlier test
changes; its suspects (tests that change env, dtype, cwd or project globals) are tried first,
and delta debugging (:func:`ddmin`) over every earlier test when they do not reproduce the
failure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from audit.flaky import statediff
from audit.flaky.attribution.case import Case
from audit.flaky.attribution.lab import PIN_HASHSEEDS, Lab, count
from audit.model.flaky import StateChange
from audit.pytest_run import PytestRun

PROBE = "audit.flaky.statediff"


def ddmin(items: list[str], fails: Callable[[list[list[str]]], list[bool]],
          more: Callable[[], bool] = lambda: True) -> list[str]:
    """The smallest subset of *items* (which must make the victim fail) that still does: Zeller's
    delta debugging. *fails* answers a batch of subsets at once (the lab runs them in parallel);
    *more* says whether there is budget for another batch."""
    n = 2
    while len(items) >= 2 and more():
        size = len(items) / n
        chunks = [c for c in (items[round(i * size): round((i + 1) * size)] for i in range(n)) if c]
        hit = next((c for c, bad in zip(chunks, fails(chunks)) if bad), None)
        if hit is not None:
            items, n = hit, 2
            continue
        if n > 2:
            rest = [[t for t in items if t not in c] for c in chunks]
            hit = next((r for r, bad in zip(rest, fails(rest)) if bad), None)
            if hit is not None:
                items, n = hit, max(n - 1, 2)
                continue
        if n >= len(items):
            break
        n = min(len(items), 2 * n)
    return items


def fails_after(lab: Lab, case: Case, subsets: list[list[str]]) -> list[bool]:
    """For each subset: does the victim fail when run right after it (pinned, in one interpreter)?"""
    units = [lab.unit([*s, case.nodeid], pin=case.pin, order="given") for s in subsets]
    return [count(res, case.nodeid)[0] > 0 for res in lab.run(units)]


def probe(lab: Lab, case: Case, tests: list[str]) -> dict[str, list[StateChange]]:
    """The global state each of *tests* (run in this order, then the victim) changes, by the
    statediff probe in one interpreter; {} when the probe could not run."""
    with tempfile.TemporaryDirectory(prefix="ml-audit-statediff-") as tmp:
        out = Path(tmp) / "diff.jsonl"
        run = PytestRun(lab.cfg, plugins=[PROBE], plugins_off=["randomly", *lab.plugins_off],
                        options=[f"--audit-statediff={out}"], targets=[*tests, case.nodeid],
                        env={"PYTHONHASHSEED": PIN_HASHSEEDS[case.pin], "OMP_WAIT_POLICY": "PASSIVE"})
        ended = run.run(max(5.0, min(lab.timeout + 120, lab.left())))   # never past the budget
        lab.interpreters += 1
        if ended.timed_out or not out.exists():
            return {}
        return statediff.read_changes(out)


def find_polluter(lab: Lab, case: Case) -> None:
    """Set the case's polluter (the earlier test(s) it fails after) and the state they leave."""
    prefix = list(case.failing_order or [])
    if not prefix:
        return
    changes = probe(lab, case, prefix)
    suspects = [t for t in prefix if any(c.kind != "rng" for c in changes.get(t, ()))]

    def fails(subsets):
        return fails_after(lab, case, subsets)

    def more():
        return lab.room(10)

    if suspects and fails([suspects])[0]:
        culprits = ddmin(suspects, fails, more)
    else:
        culprits = ddmin(prefix, fails, more)
    case.polluter = culprits[0] if len(culprits) == 1 else " + ".join(culprits)
    seen = [c for t in culprits for c in changes.get(t, ())]
    if not seen and len(culprits) < len(prefix):
        seen = [c for t in culprits for c in probe(lab, case, culprits).get(t, ())]
    case.state = seen
