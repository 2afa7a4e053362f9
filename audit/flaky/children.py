"""Python processes a test spawns: give them the test's settings, and count those that escape.

Integration tests of CPU pipelines often run ``python train.py`` then ``python infer.py`` as
subprocesses; their randomness is the test's too. The plugin puts ``childhook`` first on
``PYTHONPATH`` for the whole session (the hash seed and thread variables already pass through the
environment) and, before each test, writes that test's seeds, thread count and determinism mode
to the file ``ML_AUDIT_CHILD`` names; each child applies them and logs itself. A Python child
started without them (an ``env=`` that drops the variables, or ``-I``/``-E``/``-S``) is seen
through the interpreter's audit hook (PEP 578) and counted as uncontrolled, so the verdict can say
so instead of claiming a control it did not have.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

HOOK_DIR = str(Path(__file__).with_name("childhook"))
SETTINGS_VAR = "ML_AUDIT_CHILD"
_PYTHON = re.compile(r"^python[\d.]*(?:\.exe)?$")
_NO_PATH_FLAGS = {"-I", "-E", "-S"}


def _is_python(executable, argv) -> bool:
    first = executable or (argv[0] if argv else "")
    if not first:
        return False
    first = os.fsdecode(first)
    return os.path.basename(first) == os.path.basename(sys.executable) or bool(_PYTHON.match(os.path.basename(first)))


def _controlled(argv, env) -> bool:
    if env is not None and SETTINGS_VAR not in {os.fsdecode(k) for k in env}:
        return False
    flags = []
    for arg in list(argv or ())[1:]:
        arg = os.fsdecode(arg)
        if not arg.startswith("-") or arg == "-c" or arg == "-m":
            break
        flags.append(arg)
    return not any(f in _NO_PATH_FLAGS or (len(f) > 2 and f[1] != "-" and set(f[1:]) & {"I", "E", "S"})
                   for f in flags)


class Children:
    """The session's side of it: the settings file, the children's log, the audit-hook count."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="ml-audit-children-")
        self.settings = os.path.join(self.folder, "settings.json")
        self.log = os.path.join(self.folder, "children.jsonl")
        self.uncontrolled = 0
        self._active = False
        os.environ[SETTINGS_VAR] = self.settings
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = HOOK_DIR + (os.pathsep + path if path else "")
        sys.addaudithook(self._event)

    def begin(self, nodeid: str, seeds: dict, threads: int | None, deterministic: str | None) -> None:
        """Before a test: what its children are to apply."""
        spec = {"test": nodeid, "seeds": seeds, "threads": threads, "deterministic": deterministic, "log": self.log}
        partial = self.settings + ".tmp"
        with open(partial, "w") as f:
            json.dump(spec, f)
        os.replace(partial, self.settings)
        self.uncontrolled = 0
        self._log_start = self._log_size()
        self._active = True

    def end(self, nodeid: str) -> dict | None:
        """After a test: how many Python children it ran, under the settings and not (None: none)."""
        self._active = False
        controlled = sum(1 for line in self._lines_since(self._log_start)
                         if json.loads(line).get("test") == nodeid)
        if not controlled and not self.uncontrolled:
            return None
        return {"controlled": controlled, "uncontrolled": self.uncontrolled}

    def close(self) -> None:
        import shutil

        self._active = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def _lines_since(self, offset: int) -> list[str]:
        """The children's log lines written after *offset*: only this test's part is read."""
        try:
            with open(self.log) as f:
                f.seek(offset)
                return [line for line in f if line.strip()]
        except OSError:
            return []

    def _event(self, event: str, args) -> None:
        if not self._active:
            return
        if event == "subprocess.Popen":
            executable, argv, _cwd, env = args
        elif event in ("os.posix_spawn", "os.exec"):
            executable, argv, env = args
        else:
            return
        if isinstance(argv, (str, bytes)):
            argv = [argv]
        if _is_python(executable, argv) and not _controlled(argv, env):
            self.uncontrolled += 1


def summary(rows: list[dict]) -> dict | None:
    """The children of a test over all its executions: totals, or None when it spawned none."""
    seen = [r["children"] for r in rows if r.get("children")]
    if not seen:
        return None
    return {"controlled": sum(c["controlled"] for c in seen), "uncontrolled": sum(c["uncontrolled"] for c in seen)}


def evidence(children: dict | None) -> str:
    if not children:
        return ""
    if children["uncontrolled"]:
        return (f"{children['uncontrolled']} of the Python processes it spawned ran without the audit's settings "
                "(their environment or -I/-E/-S dropped PYTHONPATH): their seeds, threads and determinism "
                "were neither varied nor pinned")
    return f"its {children['controlled']} spawned Python processes ran under each execution's settings"
