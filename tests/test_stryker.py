"""``--stryker``: the report validates against Stryker's vendored mutation-testing-report-schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from audit.model.mutate import STATUSES, Mutant, MutateResult
from audit.model.schema import validate
from audit.report import stryker

SCHEMA = json.loads((Path(__file__).parent / "data" / "stryker" / "mutation-testing-report-schema.json").read_text())


def result() -> MutateResult:
    mutants = [Mutant(id=f"pkg.mod.x_f__mutmut_{i}", operator="change_dim" if i % 2 else "mutmut_number",
                      path="pkg/mod.py", line=3, column=11, end_line=3, end_column=30, function="f",
                      status=status, diff="--- a/pkg/mod.py\n+++ b/pkg/mod.py\n", replacement="x.sum(dim=0)",
                      killed_by=["tests/test_mod.py::test_f"] if status == "killed" else [])
               for i, status in enumerate(STATUSES, start=1)]
    return MutateResult(project="/p", mutants=mutants, operators=["change_dim", "mutmut_number"],
                        sources={"pkg/mod.py": "import torch\n\ndef f(x):\n    return x.sum(dim=1)\n"})


def test_report_validates_and_maps_every_status():
    report = stryker.to_stryker(result())
    jsonschema.validate(report, SCHEMA)
    entry = report["files"]["pkg/mod.py"]
    assert entry["language"] == "python" and entry["source"].startswith("import torch")
    # STATUSES: killed, timeout, seed_dependent, survived, no_coverage, unchecked, suspicious, skipped,
    # harness_error, error
    assert [m["status"] for m in entry["mutants"]] == ["Killed", "Timeout", "Survived", "Survived", "NoCoverage",
                                                       "Pending", "Pending", "Ignored", "RuntimeError",
                                                       "RuntimeError"]
    first = entry["mutants"][0]
    assert first["mutatorName"] == "change_dim" and first["killedBy"] == ["tests/test_mod.py::test_f"]
    assert first["location"] == {"start": {"line": 3, "column": 12}, "end": {"line": 3, "column": 31}}


def test_a_status_outside_the_schema_enum_is_rejected_by_the_schema():
    report = stryker.to_stryker(result())
    report["files"]["pkg/mod.py"]["mutants"][0]["status"] = "killed"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)


def test_json_report_has_the_issue_fields_and_scores():
    data = result().to_json()
    validate(data)
    assert data["schema"] == "ml-audit.mutate/2"
    assert set(data["mutants"][0]) == {"id", "operator", "path", "line", "function", "status", "diff", "killed_by",
                                       "ml", "killer", "seed_kills", "seed_runs", "reason"}
    # killed + timeout detected of killed, timeout, seed_dependent, survived, no_coverage (unchecked,
    # harness_error and error left out)
    assert data["score"] == 40.0
    # mutants 1, 3, 5, 7, 9 (killed, seed_dependent, no_coverage, suspicious, harness_error) are change_dim's
    assert data["by_operator"]["change_dim"] == {"killed": 1, "survived": 0, "timeout": 0, "no_coverage": 1,
                                                 "unchecked": 1, "error": 0, "seed_dependent": 1,
                                                 "harness_error": 1, "score": 33.33}
    assert data["partial"] is True and data["counts"]["unchecked"] == 3
    assert result().exit_code == 1   # a partial run never passes


def test_json_round_trips():
    data = result().to_json()
    assert MutateResult.from_json(data).to_json() == data


def test_write_creates_the_folder(tmp_path):
    path = stryker.write(result(), tmp_path / "out" / "stryker.json")
    jsonschema.validate(json.loads(path.read_text()), SCHEMA)
