"""The ``audit mutate`` result: every mutant with its operator and status, and the scores.

Mutation score = detected (killed + timeout) / (detected + seed-dependent + survived + no coverage),
in percent. A *seed-dependent* mutant was killed under the pinned seed but not under every other
seed it was re-checked with: it counts against the score, apart, since its kill is no evidence that
the suite catches the bug. Mutants mutmut never finished (``unchecked``, ``suspicious``,
``skipped``), whose run ended without a test verdict (``harness_error``: a pytest internal, usage
or collection error) or that broke the bridge (``error``) are left out of the denominator, and a
result holding any of the first three is *partial*: its score covers only what was checked.

Schema ``ml-audit.mutate/2`` (``audit/schemas/mutate.schema.json``). Version 2 added ``partial``,
``unchecked``, ``seed_dependent`` and ``harness_error`` counts per tally, ``notes``, and per mutant
``ml``, ``killer`` (so readers need no operator registry), ``seed_kills``/``seed_runs`` and
``reason``. ``from_json`` reads version 1 results too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "ml-audit.mutate/2"
READABLE = ("ml-audit.mutate/1", SCHEMA)

DETECTED = ("killed", "timeout")
SEED_DEPENDENT = "seed_dependent"                      # killed under some seeds only
SCORED = (*DETECTED, SEED_DEPENDENT, "survived", "no_coverage")
UNDETECTED = tuple(s for s in SCORED if s not in DETECTED)   # scored, and the suite let it through
UNCHECKED = ("unchecked", "suspicious", "skipped")    # the run did not finish these: partial
STATUSES = (*SCORED, *UNCHECKED, "harness_error", "error")
GOLDEN = "golden value"


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
    ml: bool = False                  # made by one of ml-audit's ML operators
    killer: str = GOLDEN              # the kind of test that would kill it
    column: int = 0                   # 0-based, like end_column
    end_line: int = 0
    end_column: int = 0
    replacement: str | None = None
    seed_kills: int | None = None     # re-checked under other seeds: how many of them killed it
    seed_runs: int | None = None      # ... of how many seeds (the pinned one included)
    reason: str = ""                  # why a harness_error gave no verdict

    @property
    def verdict(self) -> str:
        """The status as a reader says it: ``killed (seed-dependent, 2 of 5 seeds)``."""
        if self.status == SEED_DEPENDENT:
            return f"killed (seed-dependent, {self.seed_kills} of {self.seed_runs} seeds)"
        return self.status.replace("_", " ")

    @property
    def module(self) -> str:
        return self.path[:-3].replace("/", ".") if self.path.endswith(".py") else self.path

    def to_json(self) -> dict:
        return {"id": self.id, "operator": self.operator, "path": self.path, "line": self.line,
                "function": self.function, "status": self.status, "diff": self.diff,
                "killed_by": list(self.killed_by), "ml": self.ml, "killer": self.killer,
                "seed_kills": self.seed_kills, "seed_runs": self.seed_runs, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict) -> "Mutant":
        return cls(id=data["id"], operator=data["operator"], path=data["path"], line=int(data["line"]),
                   function=data.get("function", ""), status=data["status"], diff=data.get("diff", ""),
                   killed_by=list(data.get("killed_by") or ()),
                   ml=bool(data.get("ml", not data["operator"].startswith("mutmut_"))),
                   killer=data.get("killer") or GOLDEN, seed_kills=data.get("seed_kills"),
                   seed_runs=data.get("seed_runs"), reason=data.get("reason") or "")


@dataclass
class Tally:
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    no_coverage: int = 0
    unchecked: int = 0                # unchecked, suspicious or skipped by mutmut
    error: int = 0
    seed_dependent: int = 0
    harness_error: int = 0

    def add(self, status: str) -> None:
        name = "unchecked" if status in UNCHECKED else status
        setattr(self, name, getattr(self, name) + 1)

    @property
    def total(self) -> int:
        return self.scored + self.unchecked + self.harness_error + self.error

    @property
    def scored(self) -> int:
        return self.killed + self.timeout + self.seed_dependent + self.survived + self.no_coverage

    @property
    def score(self) -> float | None:
        """Percent detected, or None when nothing could be scored."""
        return 100.0 * (self.killed + self.timeout) / self.scored if self.scored else None

    def to_json(self) -> dict:
        return {"killed": self.killed, "survived": self.survived, "timeout": self.timeout,
                "no_coverage": self.no_coverage, "unchecked": self.unchecked, "error": self.error,
                "seed_dependent": self.seed_dependent, "harness_error": self.harness_error,
                "score": round(self.score, 2) if self.score is not None else None}


@dataclass
class MutateResult:
    project: str
    mutants: list[Mutant]
    operators: list[str]
    elapsed: float = 0.0
    since: str | None = None
    fail_under: float | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)         # what the run left out and why (tests deselected, ...)
    sources: dict[str, str] = field(default_factory=dict)  # path -> source text (for Stryker; not in the JSON)
    recorded: Any = None                                   # where the history store put it (audit.recording)

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

    @property
    def partial(self) -> bool:
        """True when some mutants were not checked (interrupted, or left unchecked by mutmut)."""
        return self.interrupted or self.overall.unchecked > 0

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
        """False for a partial run or a score below ``fail_under`` (no mutant: nothing to fail)."""
        if self.partial:
            return False
        if self.fail_under is None or self.score is None:
            return True
        return self.score >= self.fail_under

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_json(self) -> dict:
        score = self.score
        return {
            "schema": SCHEMA, "project": self.project,
            "score": round(score, 2) if score is not None else None, "partial": self.partial,
            "counts": self.overall.to_json(),
            "by_operator": {name: t.to_json() for name, t in self.by_operator().items()},
            "by_module": {name: t.to_json() for name, t in self.by_module().items()},
            "by_function": {name: t.to_json() for name, t in self.by_function().items()},
            "operators": list(self.operators), "since": self.since, "fail_under": self.fail_under,
            "elapsed": round(self.elapsed, 3), "interrupted": self.interrupted, "notes": list(self.notes),
            "mutants": [m.to_json() for m in self.mutants],
        }

    @classmethod
    def from_json(cls, data: dict) -> "MutateResult":
        if data.get("schema") not in READABLE:
            raise ValueError(f"not an ml-audit mutate result: schema {data.get('schema')!r}")
        return cls(project=data.get("project", ""), mutants=[Mutant.from_json(m) for m in data.get("mutants") or ()],
                   operators=list(data.get("operators") or ()), elapsed=float(data.get("elapsed", 0.0)),
                   since=data.get("since"), fail_under=data.get("fail_under"),
                   interrupted=bool(data.get("interrupted", False)), notes=list(data.get("notes") or ()))
