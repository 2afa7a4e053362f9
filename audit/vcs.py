"""What git knows about the target project: commit, branch, and lines changed since a ref."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from audit.errors import AuditError


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def head_commit(root: Path) -> str | None:
    """The commit checked out in *root*, or None outside a git work tree."""
    proc = _git(root, "rev-parse", "HEAD")
    return proc.stdout.strip() if proc.returncode == 0 else None


def branch(root: Path) -> str | None:
    proc = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return proc.stdout.strip() if proc.returncode == 0 else None


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


def changed_lines(root: Path, ref: str) -> dict[str, set[int]]:
    """Lines added or changed in the work tree since *ref*: {path relative to root: {line numbers}}.

    Paths are relative to *root* even when *root* is a sub-folder of the repository.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise AuditError(f"--since needs a git work tree, and {root} is not in one")
    if _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise AuditError(f"unknown git ref: {ref!r}")
    proc = _git(root, "diff", "--unified=0", "--no-color", "--relative", ref, "--", ".")
    if proc.returncode != 0:
        raise AuditError(f"git diff {ref} failed: {proc.stderr.strip()}")
    changed: dict[str, set[int]] = {}
    current = None
    for line in proc.stdout.splitlines():
        if line.startswith("+++ "):
            name = line[4:]
            current = None if name == "/dev/null" else name[2:] if name.startswith("b/") else name
        elif current and (m := _HUNK.match(line)):
            start, count = int(m.group(1)), int(m.group(2) or 1)
            changed.setdefault(current, set()).update(range(start, start + count))
    return changed
