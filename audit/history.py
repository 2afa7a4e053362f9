"""Reading recorded results back: one loader per kind, and what makes two runs' mutants the same.

The store, the weekly report and the review all read flaky and mutate results through here, so
they accept the same schema versions and see the same fields: a version 1 mutate result is
brought up to version 2 from the operator catalog (which mutants are ML ones and which kind of
test kills them), not guessed at by each reader.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from audit.errors import AuditError
from audit.model import flaky as flaky_model
from audit.model import mutate as mutate_model
from audit.model.flaky import FlakyResult
from audit.model.mutate import Mutant, MutateResult
from audit.mutate import catalog


def result_kind(data: Any) -> str:
    """'flaky' or 'mutate' from a result's schema field, or a clear error."""
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema in flaky_model.READABLE:
        return "flaky"
    if schema in mutate_model.READABLE:
        return "mutate"
    raise AuditError(f"not an ml-audit flaky or mutate result (schema {schema!r})")


def _check(data: Any, kind: str) -> None:
    readable = flaky_model.READABLE if kind == "flaky" else mutate_model.READABLE
    if not isinstance(data, dict):
        raise AuditError(f"a {kind} result must be a JSON object, got {type(data).__name__}")
    if data.get("schema") not in readable:
        raise AuditError(f"not a {kind} result: schema is {data.get('schema')!r}, expected one of {readable}")
    rows, key = ("tests", "nodeid") if kind == "flaky" else ("mutants", "id")
    if not isinstance(data.get(rows), list) or not all(isinstance(r, dict) for r in data[rows]):
        raise AuditError(f"{kind} result: {rows!r} must be a list of objects")
    for row in data[rows]:
        if not isinstance(row.get(key), str):
            raise AuditError(f"{kind} result: an entry has no {key!r}: {str(row)[:200]}")


def load_flaky(data: Any) -> FlakyResult:
    """The flaky result in *data* (schema ml-audit.flaky/1 or /2), or an AuditError saying what is wrong."""
    _check(data, "flaky")
    try:
        return FlakyResult.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"flaky result does not match its schema {data['schema']}: {type(exc).__name__} {exc}") from None


def load_mutate(data: Any) -> MutateResult:
    """The mutate result in *data* (schema ml-audit.mutate/1 or /2), or an AuditError saying what is wrong.

    Version 1 recorded neither ``ml`` nor ``killer``: they are taken from the operator catalog.
    """
    _check(data, "mutate")
    try:
        result = MutateResult.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"mutate result does not match its schema {data['schema']}: {type(exc).__name__} {exc}") from None
    if data["schema"] != mutate_model.SCHEMA:
        for mutant in result.mutants:
            mutant.ml, mutant.killer = catalog_fields(mutant.operator)
    return result


def covers_part(result: MutateResult, data: dict) -> bool:
    """True when a mutate result's score covers part of the code only: the result says it is
    ``partial`` (mutants left unchecked, an interrupted run) or was made over changed lines
    (``since``). Such scores are not compared."""
    return result.partial or data.get("partial") is True or bool(result.since)


@lru_cache(maxsize=None)
def operator_info(name: str) -> catalog.OperatorInfo | None:
    """The catalog's entry for operator *name* (None for mutmut's own and unknown ones)."""
    return catalog.info(name)


def catalog_fields(operator: str) -> tuple[bool, str]:
    """(ml, killer) of a mutant made by *operator*, for records older than those fields."""
    known = operator_info(operator)
    return (known.ml, known.killer) if known else (False, mutate_model.GOLDEN)


def mutant_key(m: Mutant) -> tuple:
    """What identifies "the same mutant" across runs: operator, file, function and the changed lines.

    Not mutmut's id (its numbering shifts as code changes) and not the diff's context lines or
    line numbers (an edit nearby would make the same mutant look new).
    """
    changed = tuple(ln.strip() for ln in m.diff.splitlines()
                    if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---")))
    return (m.operator, m.path.replace("\\", "/"), m.function, changed)
