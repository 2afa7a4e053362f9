"""``audit mutate --json FILE``: the result as schema ``ml-audit.mutate/1`` (also what the store records)."""

from __future__ import annotations

import json
from pathlib import Path

from audit.mutate.result import MutateResult

SCHEMA = "ml-audit.mutate/1"


def to_dict(result: MutateResult) -> dict:
    score = result.score
    return {
        "schema": SCHEMA,
        "project": result.project,
        "score": round(score, 2) if score is not None else None,
        "by_operator": {name: tally.to_dict() for name, tally in result.by_operator().items()},
        "by_module": {name: tally.to_dict() for name, tally in result.by_module().items()},
        "by_function": {name: tally.to_dict() for name, tally in result.by_function().items()},
        "operators": list(result.operators),
        "since": result.since,
        "elapsed": round(result.elapsed, 3),
        "mutants": [m.to_dict() for m in result.mutants],
    }


def write(result: MutateResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(result), indent=2) + "\n", encoding="utf-8")
    return path
