"""A mirror of the project outside it, where runs that could write into the tree happen instead.

Tests that write files (a ``data.csv``, an ``out.txt``) would multiply that side effect over
hundreds of executions; mutmut writes its own copies of the sources. Both run in a mirror kept in
step with the project by size and mtime, so the user's tree is never changed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# folders never mirrored (version control, caches, environments, build output)
SKIP_DIRS = {".git", ".hg", ".svn", "mutants", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
             ".tox", ".nox", ".venv", "venv", "env", "node_modules", "build", "dist", ".eggs", ".ipynb_checkpoints",
             ".hypothesis", ".benchmarks"}


def skipped(name: str) -> bool:
    """True for a folder name that is never mirrored or watched."""
    return name in SKIP_DIRS or name.endswith(".egg-info")


def sync_copy(root: Path, dest: Path, exclude: set[str] = frozenset(), keep: set[str] = frozenset()) -> Path:
    """Mirror *root* into *dest* (mtimes kept, so change detection by mtime works), leaving out
    top-level names in *exclude*; what *dest* holds beyond the mirror is removed, except the
    top-level names in *keep*. Returns *dest*."""
    dest.mkdir(parents=True, exist_ok=True)
    seen: set[Path] = set()
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not skipped(d) and not (rel == Path(".") and d in exclude))
        (dest / rel).mkdir(parents=True, exist_ok=True)
        seen.add(rel)
        for name in files:
            if name.endswith((".pyc", ".pyo")) or (rel == Path(".") and name in exclude):
                continue
            src, dst = Path(folder, name), dest / rel / name
            seen.add(rel / name)
            st = src.stat()
            if not dst.exists() or dst.stat().st_mtime_ns != st.st_mtime_ns or dst.stat().st_size != st.st_size:
                shutil.copy2(src, dst)
    for folder, dirs, files in os.walk(dest, topdown=False):
        rel = Path(folder).relative_to(dest)
        if rel.parts and rel.parts[0] in keep:
            continue
        for name in files:
            if rel / name not in seen:
                (dest / rel / name).unlink()
        for name in dirs:
            if rel / name not in seen and not (rel == Path(".") and name in keep):
                shutil.rmtree(dest / rel / name, ignore_errors=True)
    return dest


def tree_stats(root: Path, limit: int = 20000) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under *root* outside skipped folders, at most *limit* files."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not skipped(d)]
        for name in files:
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
            if len(out) >= limit:
                return out
    return out


def changed_files(before: dict, after: dict) -> list[str]:
    """Paths created, changed or deleted between two :func:`tree_stats` snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
