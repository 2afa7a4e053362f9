"""The process that runs mutmut: ``python -m audit.mutate.worker SPEC.json``, started by the engine.

It runs in the scratch copy of the project (never the user's tree), with OpenMP pinned to one
thread and CUDA hidden (set in its environment by the engine, before torch is imported), so that
forked children neither hang nor touch a GPU. Progress goes to the file descriptor named by
``AUDIT_PROGRESS_FD``; the outcome of every mutant goes to the spec's results file as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from audit.atomic import write_json


def guard_threads() -> None:
    """Pin torch to one intra-op thread and keep user code from raising it (fork + OpenMP hangs)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - a project without torch
        return
    original = torch.set_num_threads
    original(1)

    def set_num_threads(n: int) -> None:
        original(1)

    set_num_threads.__doc__ = "ml-audit: pinned to 1 thread during mutation testing (fork safety)."
    torch.set_num_threads = set_num_threads


def collect(spec, mutants: Path = Path("mutants")) -> list[dict]:
    """Every mutant's record joined with mutmut's verdict and the test that killed it."""
    from audit.mutate.bridge import HARNESS_SUFFIX, SEEDS_SUFFIX, SIDECAR_SUFFIX, mutmut_status

    out = []
    for sidecar in sorted(mutants.rglob("*" + SIDECAR_SUFFIX)):
        data = json.loads(sidecar.read_text())
        meta_path = mutants / (data["path"] + ".meta")
        exit_codes = json.loads(meta_path.read_text())["exit_code_by_key"] if meta_path.exists() else {}
        for record in data["mutants"]:
            code = exit_codes.get(record["id"])
            killer = Path(spec.killers_dir, record["id"])
            harness, seeds = Path(str(killer) + HARNESS_SUFFIX), Path(str(killer) + SEEDS_SUFFIX)
            status = mutmut_status(code)
            killed = killer.exists() and status == "killed"
            record.update(path=data["path"], exit_code=code, mutmut_status=status,
                          killed_by=killer.read_text().splitlines() if killed else [],
                          reason=harness.read_text() if harness.exists() else "")
            if killed and seeds.exists():
                record.update(json.loads(seeds.read_text()))
            out.append(record)
    return out


def main(argv: list[str]) -> int:
    from audit.pytest_run import die_with_parent

    die_with_parent()  # before mutmut and torch load: a parent killed meanwhile takes this process along
    from audit.mutate.bridge import NO_TESTS, Spec, forget_harness_errors, install, nothing_covered, run_mutmut
    from audit.mutate.registry import select

    spec = Spec(json.loads(Path(argv[1]).read_text()))
    fd = int(os.environ.get("AUDIT_PROGRESS_FD", "-1"))
    last = [None]

    def progress(done: int, total: int) -> None:
        if fd >= 0 and (done, total) != last[0]:
            last[0] = (done, total)
            try:
                os.write(fd, f"{done} {total}\n".encode())
            except OSError:
                pass

    guard_threads()
    forget_harness_errors()
    install(spec, select(",".join(spec.operators)), progress)
    start = time.monotonic()
    try:
        exit_code = run_mutmut(spec.max_children, spec.names)
    except KeyboardInterrupt:  # stopped before mutmut's own handler was in place: keep what is on disk
        exit_code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    elapsed = time.monotonic() - start
    sys.stdout.flush()
    mutants = collect(spec)
    if exit_code == 1 and nothing_covered():
        for record in mutants:
            record.update(exit_code=NO_TESTS, mutmut_status="no tests")
        exit_code = 0
    write_json(spec.results, {"exit_code": exit_code, "elapsed": elapsed, "mutants": mutants})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
