"""Start the mutation worker (``audit.mutate.worker``, mutmut through the bridge) and see it to its end.

One place for it, whether the driver runs the whole run here or a Ray task runs one shard.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from audit.errors import AuditError
from audit.pytest_run import kill_group, run_process

FORK_SAFE_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"}
STOP_GRACE = 20.0  # seconds the worker gets to save mutmut's verdicts after Ctrl-C
SPINNER = re.compile(r"^[\u2800-\u28ff] ")  # mutmut's spinner lines, never worth showing

Progress = Callable[[int, int], None]


def tail(log: Path, lines: int = 30) -> str:
    """The end of mutmut's log, without its spinner lines."""
    text = log.read_text(errors="replace").replace("\r", "\n") if log.exists() else ""
    kept = [line for line in text.splitlines() if line.strip() and not SPINNER.match(line)]
    return "\n".join(kept[-lines:])


def run_worker(scratch: Path, workdir: Path, log: Path, progress: Progress | None) -> bool:
    """Run the mutation worker to the end; True when Ctrl-C stopped it (mutmut keeps what it measured)."""
    read_fd, write_fd = os.pipe()
    interrupted = False
    try:
        proc = run_process([sys.executable, "-m", "audit.mutate.worker", str(scratch / "spec.json")], cwd=workdir,
                           env={**FORK_SAFE_ENV, "AUDIT_PROGRESS_FD": str(write_fd)}, log=log, pass_fds=[write_fd])
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        with os.fdopen(read_fd, "r") as events:
            for line in events:
                parts = line.split()
                if progress is not None and len(parts) == 2:
                    progress(int(parts[0]), int(parts[1]))
        proc.wait()
    except KeyboardInterrupt:
        interrupted = True
        _stop(proc)
    except BaseException:
        kill_group(proc)
        raise
    if proc.returncode != 0 and not interrupted:
        raise AuditError(f"the mutation worker crashed (exit {proc.returncode}); its log ({log}):\n{tail(log)}")
    return interrupted


def _stop(proc) -> None:
    """Pass Ctrl-C on to the worker, so mutmut stops its mutants and saves its verdicts; kill it if it lingers."""
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=STOP_GRACE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    finally:
        kill_group(proc)  # the fork server and any mutant still running
