"""Writing files so that a reader never sees half of one, and a failed write leaves nothing behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from audit.errors import AuditError


def check_writable(path: str | os.PathLike) -> Path:
    """*path* if a file can be written there, else an AuditError now, before any work is spent."""
    path = Path(path)
    if path.is_dir():
        raise AuditError(f"cannot write {path}: it is a folder (give a file name)")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise AuditError(f"cannot write {path}: {parent} is not a writable folder")
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write *text* to *path* through a temporary file in the same folder, then rename it."""
    path = check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise AuditError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, data) -> Path:
    """*data* as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")
