"""A run mutmut did not finish is partial: counted as such, flagged in the JSON, non-zero, and said so."""

from __future__ import annotations

from rich.console import Console

from audit.model.mutate import Mutant, MutateResult
from audit.model.schema import validate
from audit.report.mutate_table import render


def mutant(n: int, status: str) -> Mutant:
    return Mutant(id=f"tinyml.core.x_probs__mutmut_{n}", operator="change_dim", path="tinyml/core.py", line=6,
                  function="probs", status=status, diff="", ml=True, killer="shape")


def partial_result(**kwargs) -> MutateResult:
    statuses = ["killed", "killed", "survived", "unchecked", "suspicious", "skipped"]
    return MutateResult(project="/p", mutants=[mutant(i, s) for i, s in enumerate(statuses, 1)],
                        operators=["change_dim"], fail_under=50.0, **kwargs)


def rendered(result: MutateResult) -> str:
    console = Console(record=True, width=200)
    render(result, console)
    return " ".join(console.export_text().split())


def test_unchecked_suspicious_and_skipped_mutants_make_the_run_partial():
    result = partial_result()
    data = result.to_json()
    validate(data)
    assert data["partial"] is True and data["interrupted"] is False
    assert data["counts"]["unchecked"] == 3 and data["counts"]["score"] == round(200 / 3, 2)
    assert result.score >= result.fail_under and result.exit_code == 1  # the score alone would pass


def test_the_terminal_score_says_partial_and_how_many_were_not_checked():
    text = rendered(partial_result())
    assert "PARTIAL: 3 of 6 mutants not checked" in text and "(interrupted)" not in text
    assert "unchk" in text


def test_an_interrupted_run_says_so():
    result = partial_result(interrupted=True)
    assert "PARTIAL: 3 of 6 mutants not checked (interrupted)" in rendered(result)
    empty = MutateResult(project="/p", mutants=[], operators=["change_dim"], interrupted=True)
    assert empty.partial and empty.exit_code == 1
    assert "interrupted before any mutant was checked" in rendered(empty)


def test_a_finished_run_is_not_called_partial():
    result = MutateResult(project="/p", mutants=[mutant(1, "killed"), mutant(2, "survived")],
                          operators=["change_dim"])
    assert not result.partial and result.exit_code == 0 and "PARTIAL" not in rendered(result)
