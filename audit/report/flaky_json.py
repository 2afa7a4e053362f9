"""``audit flaky --json FILE``: the result as schema ``ml-audit.flaky/4`` (also what the store records)."""

from __future__ import annotations

import os
from pathlib import Path

from audit.atomic import write_json


def write(result, path: str | os.PathLike) -> Path:
    """Write the report atomically (a reader never sees half a file)."""
    return write_json(path, result.to_json())
