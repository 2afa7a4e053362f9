"""``audit flaky --quarantine FILE``: the flaky tests, with why, for pytest's ``--audit-quarantine FILE``.

The file is JSON (``ml-audit.quarantine/1``): ``tests`` lists each flaky test's node id and the
reason its xfail mark will show (rate, cause and its status), so CI stays green on known flakes
while they are fixed, and a quarantined test that passes is still reported (``strict=False``).
"""

from __future__ import annotations

import json
from pathlib import Path

from audit.atomic import write_json

SCHEMA = "ml-audit.quarantine/1"


def reason(test) -> str:
    cause = test.causes[0] if test.causes else None
    why = f", cause {cause.source} ({cause.status})" if cause else ""
    return f"flaky: failed {test.failures}/{test.executions} under audit flaky{why}"


def to_json(result) -> dict:
    return {"schema": SCHEMA, "project": result.project,
            "tests": [{"nodeid": t.nodeid, "reason": reason(t)} for t in result.flaky]}


def write(result, path) -> Path:
    return write_json(path, to_json(result))


def read(path) -> dict[str, str]:
    """Node id -> reason from a quarantine file; ValueError when it is not one."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not an ml-audit quarantine file (schema {SCHEMA})")
    return {t["nodeid"]: t.get("reason") or "quarantined by ml-audit" for t in data.get("tests", [])}
