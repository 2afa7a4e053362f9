"""Fresh interpreters at the cost of a fork: zygotes (:mod:`audit.zygote`) per hash seed.

A unit that must start a new interpreter (a new order, determinism mode, module and session
state, thread variables, hash seed) pays 1.5–4.5 s for it, mostly ``import torch``. A
:class:`ForkServer` keeps zygotes that have imported all of that and run nothing; a unit whose
hash seed one of them has is forked from it (:meth:`ForkServer.spawn`) and behaves as a fresh
``python -m pytest``. The planner draws hash seeds from the live zygotes (:meth:`hashseed`);
each is retired after :data:`RETIRE_AFTER` units (kept open a while for their repro commands)
and replaced in the background under a new hash
seed, so hash-seed flakes are still found. A hash seed asked for again and again (attribution's
pinned ones) gets a zygote of its own.

It falls back to fresh interpreters, and says why once (:attr:`fallback`), when a zygote's
imports started a thread pool or CUDA (it first retries with only pytest, the plugin, torch and
numpy), when a zygote dies before it is ready, or when a forked child fails before its first
test where a fresh interpreter does not (:meth:`disable`, from :mod:`audit.flaky.runner`).
Only Linux forks: elsewhere :func:`supported` is false and every unit starts fresh.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from audit.pytest_run import child_env, kill_group, run_process

RETIRE_AFTER = 3          # units one rotating zygote serves before a new hash seed replaces it
MOST_OPEN = 6             # zygotes kept open at once: retired ones still fork their repro commands
ROTATING = 2              # rotating zygotes alive (ready or starting) at once
PINNED_AFTER = 2          # requests for a hash seed without a zygote before it gets one
MOST_PINNED = 4
FORK_REPLY = 20.0         # seconds a zygote may take to say it forked
READY_WAIT = 15.0         # seconds a unit waits for its hash seed's zygote to finish importing
# variables read only when an interpreter starts: a request that changes one cannot be forked
START_ONLY = ("PYTHON", "LD_", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "GOMP_", "MALLOC", "CUDA_MODULE_LOADING")
# the child sets these itself; how idle OpenMP threads wait changes no result
APPLIED = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED", "OMP_WAIT_POLICY"}
ZYGOTE_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def supported() -> bool:
    """Forking an interpreter that has imported torch is safe here (Linux, with ``os.fork``)."""
    return hasattr(os, "fork") and sys.platform.startswith("linux")


class ForkedChild:
    """What :mod:`audit.pytest_run` needs of a ``Popen``: ``pid``, ``poll``, ``wait``, ``returncode``."""

    forked = True

    def __init__(self, rid: int):
        self.rid = rid
        self.pid: int | None = None
        self.returncode: int | None = None
        self.args = ["<forked>"]
        self._started = threading.Event()
        self._done = threading.Event()

    def poll(self):
        return self.returncode

    def wait(self, timeout: float | None = None):
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._started.set()
        self._done.set()


class Zygote:
    """One zygote: its process (started by :meth:`launch`), request pipe and reply reader."""

    def __init__(self, hashseed: str, rotating: bool):
        self.hashseed = hashseed
        self.rotating = rotating
        self.promised = 0                 # units the planner gave this hash seed
        self.retired = False              # no new units: its hash seed has had its share
        self.shut = False                 # no forks at all: it leaves once its children have
        self.with_suite = False           # it imports the suite's third-party modules too
        self.startup: float | None = None
        self.failed: str | None = None
        self.ready = threading.Event()
        self.children: dict[int, ForkedChild] = {}
        self.lock = threading.Lock()
        self.next_id = 0
        self.proc = None
        self.requests = None
        self.env = child_env({**ZYGOTE_ENV, "PYTHONHASHSEED": hashseed})

    def launch(self, preload: Path | None, home: Path, python: str) -> None:
        started = time.monotonic()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        home.mkdir(parents=True, exist_ok=True)
        try:
            self.proc = run_process([python, "-m", "audit.zygote", str(req_r), str(rep_w), str(preload or "")],
                                    cwd=home, env={**ZYGOTE_ENV, "PYTHONHASHSEED": self.hashseed},
                                    log=home / f"zygote-{self.hashseed}.log", pass_fds=[req_r, rep_w])
        except BaseException:
            os.close(req_w)
            os.close(rep_r)
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
        with self.lock:
            self.requests = os.fdopen(req_w, "w", buffering=1)
            if self.shut:
                self.requests.close()
        threading.Thread(target=self._read, args=(rep_r, started), daemon=True).start()

    def _read(self, fd: int, started: float) -> None:
        with os.fdopen(fd, "r") as replies:
            for line in replies:
                msg = json.loads(line)
                event = msg.get("event")
                if event == "ready":
                    self.startup = time.monotonic() - started
                    self.ready.set()
                elif event == "unsafe":
                    self.failed = msg["why"]
                    self.ready.set()
                elif event == "forked":
                    child = self.children.get(msg["id"])
                    if child is not None:
                        child.pid = msg["pid"]
                        child._started.set()
                elif event == "exit":
                    with self.lock:
                        child = self.children.pop(msg["id"], None)
                    if child is not None:
                        child._exited(msg["code"])
        self.proc.wait()
        if not self.ready.is_set():
            self.failed = f"a zygote exited ({self.proc.returncode}) before it was ready"
            self.ready.set()
        with self.lock:
            lost, self.children = list(self.children.values()), {}
        for child in lost:   # they died with it (PR_SET_PDEATHSIG)
            child._exited(-9)

    @property
    def alive(self) -> bool:
        return self.failed is None and (self.proc is None or self.proc.poll() is None)

    def usable(self) -> bool:
        return self.ready.is_set() and self.alive and not self.shut

    def fork(self, args: list[str], cwd, env: dict, log: Path, threads: int | None) -> ForkedChild | None:
        with self.lock:
            if self.shut or self.requests is None:
                return None
            self.next_id += 1
            child = ForkedChild(self.next_id)
            self.children[child.rid] = child
            try:
                self.requests.write(json.dumps({"id": child.rid, "args": args, "cwd": str(cwd), "env": env,
                                                "log": str(log), "threads": threads}) + "\n")
            except (BrokenPipeError, ValueError, OSError):
                self.children.pop(child.rid, None)
                return None
        if not child._started.wait(FORK_REPLY):
            self.failed = f"a zygote did not fork within {FORK_REPLY:.0f}s"
            self.close(kill=True)
            return None
        return child if child.pid is not None else None

    def shut_down(self) -> None:
        """Take no more requests; the zygote leaves once its children have."""
        with self.lock:
            self.retired = self.shut = True
            if self.requests is not None and not self.requests.closed:
                try:
                    self.requests.close()
                except OSError:
                    pass

    def close(self, kill: bool = False) -> None:
        self.shut_down()
        if self.proc is None:
            return
        if kill or self.children:
            kill_group(self.proc)
        else:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)


class ForkServer:
    """Zygotes for one audit: rotating hash seeds for detection, pinned ones on demand."""

    def __init__(self, home: Path, *, vary_hashseed: bool = True, seed: int = 0, python: str | None = None,
                 retire_after: int = RETIRE_AFTER):
        self.home = Path(home)
        self.python = python or sys.executable
        self.vary = vary_hashseed
        self.rand = random.Random(f"forkserver:{seed}")
        self.retire_after = retire_after
        self.zygotes: list[Zygote] = []
        self.asked: dict[str, int] = {}
        self.preload: Path | None = None
        self.modules: list[str] = []
        self.fallback: str | None = None
        self.notes: list[str] = []
        self.forked = 0
        self.fresh = 0
        self.hashseeds_used: set[str] = set()
        self.startups: list[float] = []
        self.child_startups: list[float] = []   # seconds from fork request to first test, per forked unit
        self.fresh_startups: list[float] = []   # ... and from launch to first test, per fresh one
        self.lock = threading.RLock()
        self.started = False
        self.closed = False
        self.collect_seconds = 0.0
        self.queue: queue.Queue = queue.Queue()
        self.launcher: threading.Thread | None = None

    # ---- life -------------------------------------------------------------------------
    def start(self, modules: list[str], collect_seconds: float = 0.0, seed=None) -> None:
        """Begin with zygotes that import *modules* (the suite's third-party imports, learnt
        from a collection that took *collect_seconds* in a fresh interpreter); *seed* makes their
        hash seeds repeatable."""
        with self.lock:
            if self.started or self.fallback:
                return
            self.started = True
            if seed is not None:
                self.rand.seed(f"forkserver:{seed}")
            self.collect_seconds = collect_seconds
            self.modules = list(modules)
            self._write_preload(self.modules)
            self._top_up()

    def _write_preload(self, modules: list[str]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.preload = self.home / "preload.json"
        self.preload.write_text(json.dumps(modules))

    def _add(self, hashseed: str, rotating: bool) -> Zygote:
        """A new zygote, started by the launcher thread: a process started by a short-lived
        thread would die with it (PR_SET_PDEATHSIG fires when the creating thread exits)."""
        z = Zygote(hashseed, rotating)
        self.zygotes.append(z)
        if self.launcher is None:
            self.launcher = threading.Thread(target=self._launch, daemon=True)
            self.launcher.start()
        self.queue.put(z)
        return z

    def _launch(self) -> None:
        while True:
            z = self.queue.get()
            if z is None:
                return
            if z.shut:
                continue
            try:
                z.with_suite = bool(self.modules)
                z.launch(self.preload, self.home, self.python)
            except OSError as exc:
                z.failed = f"a zygote could not start: {exc}"
                z.ready.set()

    def _top_up(self) -> None:
        """Keep ROTATING rotating zygotes alive, retiring those that served their share."""
        for z in list(self.zygotes):
            if z.ready.is_set() and z.failed:
                self._failed(z)
            elif z.shut and not z.children and (z.proc is None or z.proc.poll() is not None):
                self._drop(z)
        idle = [z for z in self.zygotes if z.retired and not z.shut and not z.children]
        for z in idle[:max(0, len([z for z in self.zygotes if not z.shut]) - MOST_OPEN)]:
            z.shut_down()   # the oldest retired ones first
        if self.fallback or self.closed:
            return
        live = [z for z in self.zygotes if z.rotating and not z.retired]
        for _ in range((ROTATING if self.vary else 1) - len(live)):
            self._add(str(self.rand.randrange(1, 2 ** 32)) if self.vary else "0", rotating=True)

    def _failed(self, z: Zygote) -> None:
        self._drop(z)
        z.close(kill=True)
        why = z.failed or "a zygote failed"
        if z.with_suite and ("thread" in why or "CUDA" in why):   # then without the suite's own imports
            if self.modules:
                self.notes.append(f"{why}; zygotes now import only pytest, the plugin, torch and numpy")
                self.modules = []
                self._write_preload([])
                for other in self.zygotes:
                    if other.with_suite or other.proc is None:
                        other.shut_down()
            return
        self.disable(why)

    def _drop(self, z: Zygote) -> None:
        if z in self.zygotes:
            self.zygotes.remove(z)
        if z.startup is not None:
            self.startups.append(z.startup)

    def disable(self, why: str) -> None:
        """Fresh interpreters from now on, for the rest of the audit; *why* is said once."""
        with self.lock:
            if self.fallback is None:
                self.fallback = why
            for z in self.zygotes:
                z.shut_down()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            zygotes, self.zygotes = list(self.zygotes), []
            if self.launcher is not None:
                self.queue.put(None)
        for z in zygotes:
            z.close()
            if z.startup is not None:
                self.startups.append(z.startup)

    # ---- serving ------------------------------------------------------------------------
    def hashseed(self, seen=frozenset()) -> str | None:
        """The hash seed for the next unit: a rotating zygote's (ready first, then the least
        promised) that is not in *seen* (seeds the unit's tests have all run under already: those
        zygotes retire and new ones start), so that the unit can be forked; None when there is none."""
        with self.lock:
            if not self.started or self.fallback:
                return None
            self._top_up()
            open_ = [z for z in self.zygotes if z.rotating and not z.retired and z.failed is None]
            if open_ and all(z.hashseed in seen for z in open_):
                for z in open_:
                    z.retired = True
                self._top_up()
                open_ = [z for z in self.zygotes if z.rotating and not z.retired and z.failed is None]
            open_ = [z for z in open_ if z.hashseed not in seen] or open_
            if not open_:
                return None
            z = min(open_, key=lambda z: (not z.ready.is_set(), z.promised))
            z.promised += 1
            if z.promised >= self.retire_after:   # its units still fork from it; new ones get a new seed
                z.retired = True
                self._top_up()
            return z.hashseed

    def spawn(self, command: list[str], cwd, env: dict[str, str], log: Path) -> ForkedChild | None:
        """Fork *command* (``python -m pytest ...``) from a zygote with its hash seed, or None when
        it must start fresh (no such zygote, a start-only variable differs, fallen back). A zygote
        still importing is waited for (up to READY_WAIT): that costs less than a fresh start."""
        with self.lock:
            if not self.started or self.fallback or command[1:3] != ["-m", "pytest"] or command[0] != self.python:
                return self._fresh()
            hashseed = env.get("PYTHONHASHSEED", "")
            zygote = next((z for z in self.zygotes if z.hashseed == hashseed and not z.shut
                           and z.failed is None), None)
            if zygote is None:
                self._ask(hashseed)
                return self._fresh()
            if any(env.get(k) != zygote.env.get(k) for k in set(env) | set(zygote.env)
                   if k.startswith(START_ONLY) and k not in APPLIED):
                return self._fresh()
            threads = env.get("OMP_NUM_THREADS") or env.get("MKL_NUM_THREADS")
        zygote.ready.wait(READY_WAIT)
        child = zygote.fork(command[3:], cwd, env, log, int(threads) if threads else None) if zygote.usable() else None
        with self.lock:
            if child is None:
                self._top_up()
                return self._fresh()
            self.forked += 1
            self.hashseeds_used.add(hashseed)
        return child

    def _fresh(self) -> None:
        self.fresh += 1
        return None

    def _ask(self, hashseed: str) -> None:
        """A hash seed asked for often enough gets a zygote of its own."""
        self.asked[hashseed] = self.asked.get(hashseed, 0) + 1
        pinned = [z for z in self.zygotes if not z.rotating]
        if (self.asked[hashseed] >= PINNED_AFTER and len(pinned) < MOST_PINNED and not self.closed
                and not any(z.hashseed == hashseed and z.alive for z in self.zygotes)):
            self._add(hashseed, rotating=False)

    def ready_limit(self) -> float:
        """Seconds a forked child may take to reach its first test before it counts as hung:
        well over what the first collection took in a fresh interpreter."""
        return max(30.0, 3 * self.collect_seconds)

    def describe(self) -> dict:
        """The settings block's account: forked and fresh units, zygotes and why it fell back."""
        starts = [z.startup for z in self.zygotes if z.startup is not None] + self.startups

        def mean(xs):
            return round(sum(xs) / len(xs), 3) if xs else None

        return {"used": self.forked > 0, "forked_units": self.forked, "fresh_units": self.fresh,
                "hashseeds": len(self.hashseeds_used), "preloaded_modules": len(self.modules),
                "zygote_startup": mean(starts), "forked_startup": mean(self.child_startups),
                "fresh_startup": mean(self.fresh_startups),
                "fallback": self.fallback, "notes": list(self.notes)}
