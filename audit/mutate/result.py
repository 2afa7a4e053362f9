"""The outcome of ``audit mutate``: every mutant with its operator and verdict, and the scores.

Mutation score = detected (killed + timeout) / (detected + survived + no coverage), in percent;
mutants in error (a crash of the harness, not of the tests) are left out of the denominator.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from audit.mutate.operators import ALL_OPERATORS, GOLDEN

STATUSES = ("killed", "survived", "timeout", "no_coverage", "error")

# mutmut's status names -> ours
_FROM_MUTMUT = {"killed": "killed", "survived": "survived", "timeout": "timeout", "no tests": "no_coverage",
                "segfault": "killed"}


def status_from_mutmut(exit_code: int | None, mutmut_status: str) -> str:
    if exit_code in (-9, 137):  # SIGKILL after the CPU limit's grace second: mutmut calls it a segfault
        return "timeout"
    return _FROM_MUTMUT.get(mutmut_status, "error")


@dataclass
class Mutant:
    id: str
    operator: str
    path: str
    line: int
    function: str
    status: str
    diff: str
    killed_by: list[str] = field(default_factory=list)
    column: int = 0  # 0-based, like end_column
    end_line: int = 0
    end_column: int = 0
    replacement: str | None = None

    @property
    def ml(self) -> bool:
        op = ALL_OPERATORS.get(self.operator)
        return bool(op and op.ml)

    @property
    def module(self) -> str:
        return self.path[:-3].replace("/", ".") if self.path.endswith(".py") else self.path

    @property
    def killer_kind(self) -> str:
        """The kind of test that would kill this mutant."""
        op = ALL_OPERATORS.get(self.operator)
        return op.killer if op else GOLDEN

    def to_dict(self) -> dict:
        data = asdict(self)
        for extra in ("column", "end_line", "end_column", "replacement"):
            data.pop(extra)
        return data


@dataclass
class Tally:
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    no_coverage: int = 0
    error: int = 0

    def add(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)

    @property
    def total(self) -> int:
        return self.killed + self.survived + self.timeout + self.no_coverage + self.error

    @property
    def score(self) -> float | None:
        """Percent detected, or None when nothing could be scored."""
        scored = self.killed + self.timeout + self.survived + self.no_coverage
        return 100.0 * (self.killed + self.timeout) / scored if scored else None

    def to_dict(self) -> dict:
        return {"killed": self.killed, "survived": self.survived, "timeout": self.timeout,
                "no_coverage": self.no_coverage, "error": self.error,
                "score": round(self.score, 2) if self.score is not None else None}


@dataclass
class MutateResult:
    project: str
    mutants: list[Mutant]
    operators: list[str]
    elapsed: float = 0.0
    since: str | None = None
    fail_under: float | None = None
    sources: dict[str, str] = field(default_factory=dict)  # path -> source text (for Stryker)

    def _by(self, key) -> dict[str, Tally]:
        groups: dict[str, Tally] = defaultdict(Tally)
        for mutant in self.mutants:
            groups[key(mutant)].add(mutant.status)
        return dict(sorted(groups.items()))

    @property
    def overall(self) -> Tally:
        tally = Tally()
        for mutant in self.mutants:
            tally.add(mutant.status)
        return tally

    @property
    def score(self) -> float | None:
        return self.overall.score

    def by_operator(self) -> dict[str, Tally]:
        return self._by(lambda m: m.operator)

    def by_module(self) -> dict[str, Tally]:
        return self._by(lambda m: m.module)

    def by_function(self) -> dict[str, Tally]:
        return self._by(lambda m: f"{m.module}::{m.function}")

    def survivors(self, ml_only: bool = True) -> list[Mutant]:
        return [m for m in self.mutants if m.status == "survived" and (m.ml or not ml_only)]

    @property
    def passed(self) -> bool:
        """True unless a ``fail_under`` is set and the score is below it (no mutant: nothing to fail)."""
        if self.fail_under is None or self.score is None:
            return True
        return self.score >= self.fail_under

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1
