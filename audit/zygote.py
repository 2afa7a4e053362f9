"""The zygote of :mod:`audit.forkserver`: an interpreter that imports, runs nothing, and forks.

Started as ``python -m audit.zygote REQUESTS REPLIES PRELOAD`` under one ``PYTHONHASHSEED``, it
imports pytest, ml-audit's plugin, torch, numpy and the suite's third-party modules (the JSON list
in PRELOAD, learnt from a collection by :func:`imported_modules`), checks that none of it started
a thread pool or CUDA, freezes its heap out of the garbage collector's way, and says ``ready``.
Then each request line (pytest arguments, folder, environment, log file, torch thread count)
becomes one child in a process group of its own: it applies the environment, sets the thread count,
runs ``pytest.console_main()`` exactly as ``python -m pytest`` would, and exits. The zygote
reports each child's pid and exit status on REPLIES, and leaves once REQUESTS is closed and its
children are gone. Only the child runs a torch op, so OpenMP and CUDA start fresh in each.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import signal
import sys
import time

BASE = ("pytest", "audit.flaky.plugin", "numpy", "torch")
_PR_SET_PDEATHSIG = 1


def imported_modules(roots) -> list[str]:
    """Modules this interpreter has imported that no folder in *roots* holds, in import order:
    what a zygote may import for the suite (the project's own modules may run torch ops at import)."""
    import site

    roots = tuple(os.path.realpath(r) + os.sep for r in roots if r)
    libs = {sys.prefix, sys.base_prefix, *site.getsitepackages(), site.getusersitepackages()}
    libs = tuple(os.path.realpath(p) + os.sep for p in libs if p)   # a virtualenv inside the project is not it

    def project(path: str) -> bool:
        real = os.path.realpath(path)
        return real.startswith(roots) and not real.startswith(libs)

    names = []
    for name, mod in list(sys.modules.items()):
        if name == "__main__" or mod is None or name.startswith("audit."):
            continue
        where = getattr(mod, "__file__", None)
        paths = [where] if where else list(getattr(mod, "__path__", None) or ())
        if not paths and name not in sys.builtin_module_names:
            continue
        if any(project(p) for p in paths):
            continue
        names.append(name)
    return names


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _preload(names) -> tuple[int, list[str]]:
    """Import *names* (skipping any that fails); the number imported and the ones that failed."""
    done, failed = 0, []
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            done += 1
        except BaseException:  # noqa: BLE001 - a module that cannot load here loads in the child
            failed.append(name)
    return done, failed


def _unsafe() -> str | None:
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_initialized():
        return "CUDA was initialised"
    return None


def main(argv: list[str]) -> int:
    from audit.pytest_run import die_with_parent

    die_with_parent()
    requests, replies = int(argv[0]), int(argv[1])
    preload = json.loads(open(argv[2]).read()) if len(argv) > 2 and argv[2] else []
    out = os.fdopen(replies, "w", buffering=1)
    started = time.monotonic()
    _preload(BASE)
    before = _threads()
    imported, failed = _preload(preload)
    why = _unsafe()
    if why is None and _threads() > before:
        why = f"importing the suite's modules started {_threads() - before} thread(s) (an OpenMP or other pool)"
    if why is not None:
        out.write(json.dumps({"event": "unsafe", "why": why}) + "\n")
        return 3
    gc.collect()
    gc.freeze()   # children never scan (nor copy, by touching) the zygote's objects
    out.write(json.dumps({"event": "ready", "seconds": round(time.monotonic() - started, 3),
                          "imported": imported, "failed": len(failed), "modules": len(sys.modules)}) + "\n")
    _serve(requests, out, os.getcwd())
    return 0


def _serve(requests: int, out, home: str) -> None:
    children: dict[int, int] = {}   # pid -> request id
    buffer, open_ = b"", True
    while open_ or children:
        if open_:
            ready, _, _ = select.select([requests], [], [], 0.02)
            if ready:
                data = os.read(requests, 1 << 16)
                open_ = bool(data)
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        req = json.loads(line)
                        pid = os.fork()
                        if pid == 0:
                            _child(req, requests, out, home)
                        try:
                            os.setpgid(pid, pid)   # both sides set it: killpg works from the first reply on
                        except OSError:
                            pass
                        children[pid] = req["id"]
                        out.write(json.dumps({"event": "forked", "id": req["id"], "pid": pid}) + "\n")
        else:
            time.sleep(0.02)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            rid = children.pop(pid, None)
            if rid is not None:
                out.write(json.dumps({"event": "exit", "id": rid, "code": os.waitstatus_to_exitcode(status)}) + "\n")


def _child(req: dict, requests: int, out, home: str) -> None:
    """In the forked child: become what ``python -m pytest`` started in *req*'s folder would be."""
    code = 1
    try:
        os.setpgid(0, 0)
        _die_with_zygote()
        os.close(requests)
        os.close(out.fileno())
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        if sys.path and os.path.realpath(sys.path[0]) == os.path.realpath(home):
            sys.path[0] = os.getcwd()   # what ``python -m`` puts first, in the child's folder
        torch = sys.modules.get("torch")
        if req.get("threads") and torch is not None:
            torch.set_num_threads(int(req["threads"]))
        import pytest

        sys.argv = [sys.argv[0], *req["args"]]
        try:
            code = pytest.console_main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def _die_with_zygote() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
