"""The target project as both engines see it: its root, how to start pytest in it, its tests.

Shared by ``audit flaky`` and ``audit mutate`` so that both collect tests, build pytest command
lines and keep the user's tree clean (no ``.pytest_cache``, no ``__pycache__``) the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from audit.errors import AuditError


def _quiet_args() -> list[str]:
    args = ["-p", "no:cacheprovider"]
    if importlib.util.find_spec("pytest_benchmark"):  # it creates .benchmarks/ in the rootdir of every run
        args.append(f"--benchmark-storage=file://{Path(tempfile.gettempdir()) / 'ml-audit-benchmarks'}")
    return args


# Arguments every pytest run we start gets: nothing may be written into the user's project.
QUIET_ARGS = _quiet_args()


def project_root(path: str | os.PathLike) -> Path:
    """The project folder for a PATH argument, or a clear error when it is missing."""
    root = Path(path).expanduser()
    if not root.exists():
        raise AuditError(f"path does not exist: {root}")
    if not root.is_dir():
        raise AuditError(f"not a folder: {root} (give the project folder, not a file)")
    return root.resolve()


def cache_dir(root: Path, kind: str, env_var: str) -> Path:
    """ml-audit's own scratch folder for project *root*, never inside it.

    ``$env_var`` if set, else ``$XDG_CACHE_HOME/ml-audit/<kind>`` (``~/.cache``), keyed by the
    project's path so that two projects never share state.
    """
    base = os.environ.get(env_var) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ml-audit" / kind
    return Path(base) / f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def pytest_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a pytest run we start: ours, minus bytecode writes, plus *extra*."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def pytest_command(cfg, *extra: str, python: str | None = None) -> list[str]:
    """``python -m pytest`` with the project's configured test paths and arguments."""
    return [python or sys.executable, "-m", "pytest", *QUIET_ARGS, *cfg.pytest_args, *extra, *cfg.test_paths]


_NODEID = re.compile(r"^(\S+::\S.*)$")


def _summary(output: str, lines: int = 25) -> str:
    keep = [ln for ln in output.strip().splitlines() if ln.strip()]
    return "\n".join(keep[-lines:])


def collect(cfg, timeout: float = 300.0, env: dict[str, str] | None = None) -> list[str]:
    """Node ids of the project's tests, in pytest's order.

    Raises AuditError (exit 2) naming the problem for a pytest usage error, a test module that
    fails to import, or a suite that collects no test.
    """
    cmd = pytest_command(cfg, "--collect-only", "-q")
    try:
        proc = subprocess.run(cmd, cwd=cfg.root, env=pytest_env(env), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AuditError(f"collecting tests in {cfg.root} took more than {timeout:.0f}s") from None
    out = proc.stdout + proc.stderr
    if proc.returncode == 5:
        raise AuditError(f"no tests collected in {cfg.root} (ran: {' '.join(cmd[2:])})")
    if proc.returncode == 4:
        raise AuditError(f"pytest usage error in {cfg.root}:\n{_summary(out)}")
    if proc.returncode != 0:
        raise AuditError(f"pytest could not collect the tests in {cfg.root} "
                         f"(exit {proc.returncode}); a test module fails to import?\n{_summary(out)}")
    ids = [m.group(1) for ln in proc.stdout.splitlines() if (m := _NODEID.match(ln.strip()))]
    if not ids:
        raise AuditError(f"no tests collected in {cfg.root}")
    return ids
