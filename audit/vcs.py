"""What git knows about the target project: commit, branch, refs, history and lines changed since a ref.

The one module that runs git: every other module asks it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from audit.errors import AuditError


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    """git *args* in *root*; a missing git reads as a failed command (exit 127), not an exception."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except OSError as exc:
        return subprocess.CompletedProcess(["git", *args], 127, "", str(exc))


def head_commit(root: Path) -> str | None:
    """The commit checked out in *root*, or None outside a git work tree."""
    proc = _git(root, "rev-parse", "HEAD")
    return proc.stdout.strip() if proc.returncode == 0 else None


def branch(root: Path) -> str | None:
    proc = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return proc.stdout.strip() if proc.returncode == 0 else None


def resolve_commit(root: Path, ref: str) -> str | None:
    """The full sha *ref* names in the repository around *root*, or None (no git, no such ref)."""
    proc = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return proc.stdout.strip() if proc.returncode == 0 else None


def ancestors(root: Path, sha: str, limit: int) -> list[str]:
    """*sha* and up to *limit* - 1 of its ancestors, nearest first ([sha] alone where git cannot say)."""
    proc = _git(root, "rev-list", f"--max-count={limit}", sha)
    return proc.stdout.split() if proc.returncode == 0 and proc.stdout.strip() else [sha]


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


def changed_lines(root: Path, ref: str) -> dict[str, set[int]]:
    """Lines added or changed in the work tree since *ref*: {path relative to root: {line numbers}}.

    Paths are relative to *root* even when *root* is a sub-folder of the repository.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise AuditError(f"--since needs a git work tree, and {root} is not in one")
    if resolve_commit(root, ref) is None:
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
