"""The one place ml-audit starts pytest, or any other Python child, in the user's project.

A :class:`PytestRun` builds its command line from named parts (pytest plugins on and off, options,
targets, the project's own ``pytest_args``), starts it in a process group of its own with an
environment that writes nothing into the project, streams the rows the ml_audit plugin appends,
and ends it the same way every time: a per-test timeout or a stall kills the whole group (SIGTERM,
then SIGKILL after a grace second), and a test that hung or took the interpreter down comes back
as an *unfinished* record, so the caller can turn it into a row instead of losing the run.
With *forks* (an :class:`audit.forkserver.ForkServer`) the same command is forked from a zygote
that has already imported pytest and torch, when one has its hash seed; everything else is the same.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

POLL_SECONDS = 0.05
KILL_GRACE = 1.0
TAIL_CHARS = 4000


def _quiet_args() -> list[str]:
    """Arguments every pytest run we start gets, whatever the project's addopts say: nothing is
    written into the project, and plugins that would change how tests run are held still."""
    args = ["-p", "no:cacheprovider", "-p", "no:randomly"]   # pytest-randomly would reorder every run
    if importlib.util.find_spec("pytest_benchmark"):  # it creates .benchmarks/ in the rootdir of every run
        args.append(f"--benchmark-storage=file://{Path(tempfile.gettempdir()) / 'ml-audit-benchmarks'}")
    if importlib.util.find_spec("pytest_cov"):        # a --cov in addopts would measure (and slow) every run
        args.append("--no-cov")
    if importlib.util.find_spec("xdist"):             # a -n in addopts would fan every run out to workers
        args += ["-n", "0"]
    return args


QUIET_ARGS = _quiet_args()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child we start: ours, minus PYTEST_ADDOPTS and bytecode writes, plus *extra*."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


PARENT_VAR = "ML_AUDIT_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child we started: ask the kernel to SIGKILL it when ml-audit dies, even by SIGKILL.

    Called by the ml_audit plugin and the mutate worker. The variable is taken out of the
    environment so that a grandchild (a test that starts pytest itself) is left alone.
    """
    parent = os.environ.pop(PARENT_VAR, None)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):   # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def run_process(argv: list[str], *, cwd: str | os.PathLike, env: dict[str, str] | None = None,
                log: Path | None = None, pass_fds=()) -> subprocess.Popen:
    """Start *argv* in its own process group (stdin closed, output to *log*), so that
    :func:`kill_group` ends it with every process it started; a child that calls
    :func:`die_with_parent` also dies with us."""
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, cwd=cwd, env={**child_env(env), PARENT_VAR: str(os.getpid())},
                                stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=tuple(pass_fds))
    finally:
        if log is not None:
            out.close()


def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE) -> None:
    """End *proc* and its process group: SIGTERM, then SIGKILL for whatever is left after *grace*."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.wait()
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # children that outlived or ignored the SIGTERM
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def read_records(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """JSON lines appended to *path* since *offset*, leaving a half-written last line for later."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()], offset + end


@dataclass
class RunOutcome:
    """How a run ended and what it left: rows, other plugin records, and the end of its output."""

    returncode: int | None
    output: str                        # the whole output with keep_output, else its last TAIL_CHARS
    seconds: float
    rows: list[dict] = field(default_factory=list)      # the plugin's "row" records
    events: list[dict] = field(default_factory=list)    # its other records (ready, missing, end, ...)
    timed_out: bool = False            # the whole run, or one test, ran past its limit
    stalled: bool = False              # no record for too long outside any test
    interrupted: bool = False          # stopped from outside (Ctrl-C)
    startup: float | None = None       # seconds until the plugin said it was ready
    forked: bool = False               # forked from a zygote instead of a fresh interpreter
    unfinished: dict | None = None     # the test that hung or crashed: nodeid, round, attempt, outcome, digest, duration

    @property
    def output_tail(self) -> str:
        return self.output[-TAIL_CHARS:]

    @property
    def crashed(self) -> bool:
        return self.returncode is not None and self.returncode < 0


class PytestRun:
    """``python -m pytest`` in a project, from named parts.

    The command is ``python -m pytest QUIET_ARGS [project pytest_args] [-p no:OFF ...] [-p PLUGIN ...]
    OPTIONS TARGETS`` where TARGETS default to the project's test paths; ``verbatim`` runs exactly
    the arguments a user would type (a repro line) instead.
    """

    def __init__(self, cfg, *, options=(), targets=None, env: dict[str, str] | None = None, plugins=(),
                 plugins_off=(), rows_file: Path | None = None, cwd: str | os.PathLike | None = None,
                 log: Path | None = None, python: str | None = None, verbatim: list[str] | None = None,
                 forks=None):
        self.cfg = cfg
        self.options = list(options)
        self.targets = list(cfg.test_paths) if targets is None else list(targets)
        self.env = dict(env or {})
        self.plugins = list(plugins)
        self.plugins_off = list(dict.fromkeys(plugins_off))
        self.rows_file = rows_file
        self.cwd = Path(cwd) if cwd is not None else Path(cfg.run_dir)
        self.log = log
        self.python = python or sys.executable
        self.verbatim = verbatim
        self.forks = forks

    def command(self) -> list[str]:
        if self.verbatim is not None:
            return [self.python, "-m", "pytest", *self.verbatim]
        off = [a for name in self.plugins_off for a in ("-p", f"no:{name}")]
        on = [a for name in self.plugins for a in ("-p", name)]
        return [self.python, "-m", "pytest", *QUIET_ARGS, *self.cfg.pytest_args, *off, *on, *self.options,
                *self.targets]

    def run(self, timeout: float | None = None, *, test_timeout: float | None = None, stall: float | None = None,
            stop: threading.Event | None = None, procs: dict | None = None, key=None,
            keep_output: bool = False, ready_within: float | None = None) -> RunOutcome:
        """Run to the end, or until *timeout* (the whole run), *test_timeout* (one test, from the
        plugin's start records), *stall* (no record outside a test), *ready_within* (a forked run
        whose plugin has not said it is ready) or *stop* is set. *procs* holds the live process
        under *key* meanwhile, for a pool that must kill it from outside."""
        if self.rows_file is not None:
            self.rows_file.unlink(missing_ok=True)
        log = self.log or Path(tempfile.mkstemp(prefix="ml-audit-pytest-", suffix=".log")[1])
        started = time.monotonic()
        proc = self.forks.spawn(self.command(), self.cwd, child_env(self.env), log) if self.forks else None
        forked = proc is not None
        if proc is None:
            proc = run_process(self.command(), cwd=self.cwd, env=self.env, log=log)
        if procs is not None:
            procs[key] = proc
        out = RunOutcome(returncode=None, output="", seconds=0.0, forked=forked)
        running, running_since, last_news, offset = None, started, started, 0
        try:
            while True:
                done = proc.poll() is not None
                if self.rows_file is not None:
                    new, offset = read_records(self.rows_file, offset)
                    now = time.monotonic()
                    if new:
                        last_news = now
                    for rec in new:
                        event = rec.get("event")
                        if event == "start":
                            running, running_since = rec, now
                        elif event == "row":
                            out.rows.append(rec)
                            running = None
                        else:
                            if event == "ready" and out.startup is None:
                                out.startup = now - started
                            out.events.append(rec)
                if done:
                    break
                now = time.monotonic()
                if stop is not None and stop.is_set():
                    out.interrupted = True
                    break
                if timeout is not None and now - started > timeout:
                    out.timed_out = True
                    break
                if running is not None and test_timeout is not None and now - running_since > test_timeout:
                    out.timed_out = True
                    out.unfinished = _unfinished(running, "timeout",
                                                 f"timeout: still running after {test_timeout:.0f}s", test_timeout)
                    running = None
                    break
                if forked and ready_within is not None and out.startup is None and now - started > ready_within:
                    out.stalled = True   # a forked child that never reached its tests
                    out.events.append({"event": "stalled", "seconds": round(now - started, 1)})
                    break
                if running is None and stall is not None and now - last_news > stall:
                    out.stalled = True   # stuck outside any test: collection, a session fixture, exit
                    out.events.append({"event": "stalled", "seconds": round(now - last_news, 1)})
                    break
                time.sleep(POLL_SECONDS)
        finally:
            if proc.poll() is None:
                kill_group(proc)
            if procs is not None:
                procs.pop(key, None)
        out.returncode = proc.returncode
        out.seconds = time.monotonic() - started
        if stop is not None and stop.is_set():
            out.interrupted = True   # killed by the pool, whichever check saw it first
        if running is not None and not out.interrupted:
            how = f"killed by {signal_name(-out.returncode)}" if out.crashed else f"interpreter exited with {out.returncode}"
            out.unfinished = _unfinished(running, "crashed", f"crashed: {how} during the test",
                                         time.monotonic() - running_since)
        text = log.read_text(errors="replace") if log.exists() else ""
        out.output = text if keep_output else text[-TAIL_CHARS:]
        if self.log is None:
            log.unlink(missing_ok=True)
        return out


def signal_name(number: int) -> str:
    """``signal 11 (SIGSEGV)``: the number, and the name where the platform has one."""
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def _unfinished(start: dict, outcome: str, digest: str, seconds: float) -> dict:
    return {"nodeid": start["nodeid"], "round": start.get("round", 0), "attempt": start.get("attempt", 0),
            "outcome": outcome, "digest": digest, "duration": round(seconds, 3)}
