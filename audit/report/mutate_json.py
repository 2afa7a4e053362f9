"""``audit mutate --json FILE``: the result as schema ``ml-audit.mutate/2`` (also what the store records)."""

from __future__ import annotations

import os
from pathlib import Path

from audit.atomic import write_json
from audit.model.mutate import MutateResult


def write(result: MutateResult, path: str | os.PathLike) -> Path:
    """Write the result atomically (a reader never sees half a file)."""
    return write_json(path, result.to_json())
