"""The ``ml-audit.flaky/1`` JSON report: the contract later commands and outside tools read.

Keys named in the contract are never renamed; fields are only ever added.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SCHEMA = "ml-audit.flaky/1"


def to_dict(result) -> dict:
    data = result.to_json()
    assert data["schema"] == SCHEMA
    return data


def write(result, path: str | os.PathLike) -> Path:
    """Write the report atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_dict(result), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path
