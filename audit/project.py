"""The target project as both engines see it: its root, its scratch folder outside it, its tests.

Shared by ``audit flaky`` and ``audit mutate`` so that both find the project, collect its tests and
keep the user's tree clean the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from audit.errors import AuditError
from audit.pytest_run import PytestRun


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


def _summary(output: str, lines: int = 25) -> str:
    keep = [ln for ln in output.strip().splitlines() if ln.strip()]
    return "\n".join(keep[-lines:])


def collect(cfg, timeout: float = 300.0, env: dict[str, str] | None = None,
            imports: list[str] | None = None) -> list[str]:
    """Node ids of the project's tests, in pytest's order; *imports*, when given, gets the modules
    collection imported from outside the project (for :mod:`audit.forkserver`).

    Raises AuditError (exit 2) naming the problem for a pytest usage error, a test module that
    fails to import, or a suite that collects no test.
    """
    with tempfile.TemporaryDirectory(prefix="ml-audit-collect-") as tmp:
        listing = Path(tmp) / "ids.json"
        run = PytestRun(cfg, options=["--collect-only", "-q", f"--audit-collect={listing}"],
                        env={"ML_AUDIT_PROJECT": str(cfg.root), **(env or {})})
        out = run.run(timeout, keep_output=True)
        listed = json.loads(listing.read_text(encoding="utf-8")) if listing.is_file() else {}
    ids = listed.get("ids", [])
    if imports is not None:
        imports.extend(listed.get("imports", []))
    if out.timed_out:
        raise AuditError(f"collecting tests in {cfg.root} took more than {timeout:.0f}s")
    if out.returncode == 5:
        raise AuditError(f"no tests collected in {cfg.root} (ran: {' '.join(run.command()[2:])})")
    if out.returncode == 4:
        raise AuditError(f"pytest usage error in {cfg.root}:\n{_summary(out.output)}")
    if out.returncode != 0:
        raise AuditError(f"pytest could not collect the tests in {cfg.root} "
                         f"(exit {out.returncode}); a test module fails to import?\n{_summary(out.output)}")
    if not ids:
        raise AuditError(f"no tests collected in {cfg.root}")
    return ids


# pytest plugins that cost seconds per interpreter and only matter to suites that use them
_COSTLY_PLUGINS = {"hypothesispytest": "hypothesis"}


def unused_plugins(root: Path, tests: list[str]) -> list[str]:
    """Costly plugins no test file or conftest mentions: our interpreters start without them."""
    texts = []
    for name in dict.fromkeys(t.split("::", 1)[0] for t in tests):
        path = Path(root) / name
        try:
            texts.append(path.read_text(errors="replace"))
        except OSError:
            return []  # cannot tell: keep everything
    folders = {Path(root) / Path(t.split("::", 1)[0]).parent for t in tests}
    for folder in list(folders):
        folders.update(p for p in folder.parents if Path(root) in (p, *p.parents))
    for folder in folders:
        conftest = folder / "conftest.py"
        if conftest.is_file():
            texts.append(conftest.read_text(errors="replace"))
    blob = "\n".join(texts)
    return [plugin for plugin, word in _COSTLY_PLUGINS.items() if word not in blob]
