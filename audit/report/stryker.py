"""``audit mutate --stryker FILE``: Stryker's mutation-testing-report-schema (version 2).

Any Stryker-compatible viewer (mutation-testing-elements, the Stryker dashboard) can show the
result: one entry per mutated file with its source, each mutant with its operator as
``mutatorName``, a 1-based location, a status from the schema's enum and the tests that killed it.
"""

from __future__ import annotations

import json
from pathlib import Path

import audit
from audit.model.mutate import MutateResult

SCHEMA_VERSION = "2"
STATUS = {"killed": "Killed", "survived": "Survived", "timeout": "Timeout", "no_coverage": "NoCoverage",
          "unchecked": "Pending", "suspicious": "Pending", "skipped": "Ignored", "error": "RuntimeError",
          "harness_error": "RuntimeError",
          "seed_dependent": "Survived"}  # a kill under some seeds only is no detection, for Stryker's score too


def _location(mutant) -> dict:
    start = {"line": max(mutant.line, 1), "column": mutant.column + 1}
    end_line = mutant.end_line or mutant.line
    end_column = (mutant.end_column or mutant.column) + 1
    if (end_line, end_column) <= (start["line"], start["column"]):
        end_line, end_column = start["line"], start["column"] + 1
    return {"start": start, "end": {"line": max(end_line, 1), "column": end_column}}


def to_stryker(result: MutateResult, high: int = 80, low: int = 60) -> dict:
    files: dict[str, dict] = {}
    for mutant in result.mutants:
        entry = files.setdefault(mutant.path, {"language": "python", "source": result.sources.get(mutant.path, ""),
                                               "mutants": []})
        item = {"id": mutant.id, "mutatorName": mutant.operator, "location": _location(mutant),
                "status": STATUS.get(mutant.status, "RuntimeError"),
                "description": mutant.diff}
        if mutant.replacement is not None:
            item["replacement"] = mutant.replacement
        if mutant.killed_by:
            item["killedBy"] = list(mutant.killed_by)
        if mutant.status == "seed_dependent" or mutant.reason:
            item["statusReason"] = mutant.verdict if mutant.status == "seed_dependent" else mutant.reason
        entry["mutants"].append(item)
    return {"schemaVersion": SCHEMA_VERSION, "thresholds": {"high": high, "low": low},
            "projectRoot": result.project, "files": files,
            "framework": {"name": "ml-audit", "version": audit.__version__}}


def write(result: MutateResult, path: str | Path, **thresholds) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_stryker(result, **thresholds), indent=2) + "\n", encoding="utf-8")
    return path
