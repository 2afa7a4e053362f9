"""``audit flaky --fix DIR``: a verified patch per flaky test whose cause has a mechanical fix.

Each confirmed cause of a kind with a mechanical fix gets one (audit.flaky.fixes.generator,
.zeros, .tolerance, .setenv), written as a unified diff to DIR; the user's tree is never touched.
The patch is checked the way the cause was: its minimal repro (the failing setting alone; the
test's own repro where that one did not fail N/N) runs N times in a mirror of the project without
the patch and N times in one with it, through :func:`audit.flaky.repro.failed`. Only a patch that
made the failures vanish is ``verified``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from audit.atomic import write_text
from audit.flaky import repro as repro_mod
from audit.flaky.fixes import generator, setenv, tolerance, zeros
from audit.flaky.fixes.source import Patch
from audit.flaky.repro import Repro
from audit.model.flaky import Fix, FlakyResult, TestVerdict
from audit.scratch import sync_copy

__all__ = ["propose", "write_fixes"]

RUNS = 3           # repro runs before and after the patch: the repro's own N
CHEAP = 2.0        # seconds a run may take for the check to run twice as many


def propose(root: Path, test: TestVerdict, cause) -> Patch | None:
    """The patch for *test*'s *cause*, or None when its kind has no mechanical fix or the code it
    names is not of a shape the fix knows."""
    nodeid = test.nodeid
    if cause.source == "torch":
        return generator.propose(root, cause, nodeid)
    if cause.source == "determinism":
        return zeros.propose(root, cause, nodeid)
    if cause.source == "threads":
        return tolerance.propose(root, cause, nodeid, test.failure_digests)
    if cause.source == "order":
        return setenv.propose(root, cause, nodeid)
    return None


def write_fixes(cfg, result: FlakyResult, repros: dict[str, Repro], out: str | Path, *, forks=None,
                progress=None) -> None:
    """Write DIR/<test>.diff for each flaky test of *result* whose confirmed cause has a mechanical
    fix, check it against the cause's verified minimal repro (from *repros*) or the test's own, and
    set the test's ``fix``; ``result.fixes`` says where they went, what it took, and why the
    others got none."""
    started = time.monotonic()
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.root)
    unfixed: dict[str, str] = {}
    base = Path(tempfile.mkdtemp(prefix="ml-audit-fix-"))
    try:
        for test in result.flaky:
            cause = next((c for c in test.causes if c.confirmed), None)
            if cause is None:
                continue
            patch = propose(root, test, cause)
            if not patch:
                unfixed[test.nodeid] = f"no mechanical fix for this {cause.source} cause"
                continue
            repro = _repro_for(test, repros.get(test.nodeid))
            if repro is None:
                unfixed[test.nodeid] = "no repro that fails to check a patch against"
                continue
            if progress:
                progress(phase="fix", nodeid=test.nodeid)
            path = out / f"{slug(test.nodeid)}.diff"
            write_text(path, patch.diff())
            before, after = check(cfg, patch, repro, base, forks)
            test.fix = Fix(path=str(path), kind=patch.kind, files=sorted(patch.files), note=patch.note,
                           before=before, after=after, repro=repro.command())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result.fixes = {"dir": str(out), "seconds": round(time.monotonic() - started, 2), "unfixed": unfixed}


def _repro_for(test: TestVerdict, minimal: Repro | None) -> Repro | None:
    """The command a patch is checked against: the cause's verified minimal repro, else the test's
    own verified repro (a module fixture seeded on its own key may replay only in the full
    command), else None."""
    if minimal is not None:
        return minimal
    return Repro.parse(test.nodeid, test.repro) if test.repro and test.repro_verified else None


def check(cfg, patch: Patch, repro: Repro, base: Path, forks=None) -> tuple[tuple[int, int], tuple[int, int]]:
    """(failures, runs) of *repro* in a mirror of the project without *patch*, and with it: RUNS
    each, both mirrors side by side, and as many again when a run is cheap."""
    plain, patched = sync_copy(cfg.root, base / "plain"), sync_copy(cfg.root, base / "patched")
    for rel, (_, new) in patch.files.items():
        (patched / rel).write_text(new)
    workdir = base / "runs"
    workdir.mkdir(exist_ok=True)
    timeout = max(30.0, 2 * float(cfg.flaky.timeout))
    tally = {plain: [0, 0], patched: [0, 0]}

    def one(where: Path) -> None:
        failed = repro_mod.failed(cfg.rooted(where), repro, workdir, cwd=where, timeout=timeout, forks=forks)
        if failed is not None:
            tally[where][0] += int(failed)
            tally[where][1] += 1

    with ThreadPoolExecutor(max(1, min(2, cfg.flaky.workers or 2))) as pool:
        for rounds in range(2):
            began = time.monotonic()
            list(pool.map(one, [plain, patched] * RUNS))
            if rounds or (time.monotonic() - began) / RUNS > CHEAP:
                break
    return tuple(tally[plain]), tuple(tally[patched])


def slug(nodeid: str) -> str:
    """A file name for a node id: ``tests/test_a.py::test_b[1]`` -> ``tests_test_a.py__test_b_1_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid.replace("::", "__"))[:150]
