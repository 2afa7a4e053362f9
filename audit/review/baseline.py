"""The two sides of a review: what the baseline and the current state are, and where they come from.

A side is read from the history store (a run id, or the runs recorded at a git ref or its
nearest audited ancestors) or from result files, always through the results model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from audit import vcs
from audit.errors import AuditError
from audit.history import covers_part, load_flaky, load_mutate, result_kind
from audit.model.flaky import TestVerdict
from audit.model.mutate import Mutant, MutateResult
from audit.store import Run, Store

# How far back a git ref's history is searched for a recorded run.
ANCESTORS = 1000


@dataclass
class Side:
    """One side of the comparison: where its flaky and mutate results come from, and the results."""

    label: str
    commit: str | None = None
    flaky: list[TestVerdict] | None = None
    flaky_source: str | None = None
    mutants: list[Mutant] | None = None
    score: float | None = None               # percent, the model's Tally
    partial: bool = False                    # the score covers part of the code only
    operators: frozenset | None = None       # operator names the mutate run used, where it says
    mutate_source: str | None = None

    def describe(self) -> dict:
        return {"label": self.label, "commit": self.commit, "flaky": self.flaky_source,
                "mutate": self.mutate_source, "score": self.score, "partial": self.partial}

    def add_mutate(self, result: MutateResult, source: str, partial: bool, *, replace: bool = False) -> None:
        if self.mutants is not None and not replace:
            raise AuditError(f"{self.label}: two mutate results given ({self.mutate_source} and {source})")
        self.mutants, self.score, self.partial = list(result.mutants), result.score, partial
        self.operators = frozenset(result.operators) or None
        self.mutate_source = source

    def add_flaky(self, tests: list[TestVerdict], source: str, *, replace: bool = False) -> None:
        if self.flaky is not None and not replace:
            raise AuditError(f"{self.label}: two flaky results given ({self.flaky_source} and {source})")
        self.flaky, self.flaky_source = list(tests), source


def _add_run(side: Side, store: Store, run: Run) -> None:
    if run.kind == "flaky":
        side.add_flaky(store.flaky_result(run.id).tests, run.label, replace=True)
    else:
        side.add_mutate(store.mutate_result(run.id), run.label, run.partial, replace=True)
    side.commit = side.commit or run.commit


def _add_file(side: Side, path: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read result file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise AuditError(f"result file {path} is not JSON: {exc}") from None
    if result_kind(data) == "flaky":
        side.add_flaky(load_flaky(data).tests, str(path))
    else:
        result = load_mutate(data)
        side.add_mutate(result, str(path), covers_part(result, data))
    side.commit = side.commit or data.get("commit")


def as_file(spec: str, root: Path) -> Path | None:
    """The result file *spec* names (as given, or under *root*), or None."""
    for candidate in (Path(spec).expanduser(), root / spec):
        if candidate.is_file():
            return candidate
    return None


def _run_id(spec: str) -> int | None:
    text = spec[4:] if spec.startswith("run:") else spec
    return int(text) if text.isdigit() else None


def resolve_baseline(store: Store | None, specs: list[str], root: Path) -> Side:
    """The baseline from RUN_ID / git REF / result FILE specs (files may be given twice: flaky + mutate)."""
    side = Side(label="baseline")
    for spec in specs:
        if (path := as_file(spec, root)) is not None:
            _add_file(side, path)
            continue
        run_id = _run_id(spec)
        if run_id is not None and store is not None and (run := store.run(run_id)) is not None:
            _add_run(side, store, run)
            # The other kind of audit made at the same commit completes it.
            other = "mutate" if run.kind == "flaky" else "flaky"
            if run.commit and (twin := store.latest(other, commit=run.commit, full_only=other == "mutate")):
                _add_run(side, store, twin)
            continue
        sha = vcs.resolve_commit(root, spec)
        if sha is not None:
            if store is None:
                raise AuditError(f"baseline {spec!r} is a git ref, but there is no history store to find its runs in")
            found = _state_at(store, root, sha)
            if not found:
                raise AuditError(f"no audit run is recorded at {spec} ({sha[:12]}) or its ancestors in {store.path}: "
                                 "run `audit flaky` / `audit mutate` on that commit, or give a run id or result file")
            side.commit = sha
            for run in found:
                _add_run(side, store, run)
            continue
        hint = "" if store is None else f" (the store {store.path} has runs {_run_range(store)})"
        raise AuditError(f"unknown baseline {spec!r}: not a result file, a recorded run id or a git ref{hint}")
    if side.flaky is None and side.mutants is None:
        raise AuditError("no baseline given")
    return side


def _state_at(store: Store, root: Path, sha: str) -> list[Run]:
    """The latest flaky run and mutate run (full ones preferred) recorded at *sha*, or, for a kind
    with none there, at its nearest ancestor that has one: CI often audits flakiness and mutation
    on different commits, and the state at a ref is what was last measured on its history."""
    history = vcs.ancestors(root, sha, ANCESTORS)
    found = []
    for kind, full in (("flaky", False), ("mutate", True), ("mutate", False)):
        if any(r.kind == kind for r in found):
            continue
        recorded = store.commits(kind, full_only=full)
        commit = next((c for c in history if c in recorded), None)
        if commit is not None:
            found.append(store.latest(kind, commit=commit, full_only=full))
    return found


def _run_range(store: Store) -> str:
    runs = store.runs()
    return f"{runs[0].id}..{runs[-1].id}" if runs else "none: it is empty"


def resolve_current(store: Store | None, specs: list[str], root: Path) -> Side:
    """The current state: the given runs/files, else the latest flaky and mutate runs in the store."""
    side = Side(label="current")
    for spec in specs:
        if (path := as_file(spec, root)) is not None:
            _add_file(side, path)
        elif (run_id := _run_id(spec)) is not None and store is not None and (run := store.run(run_id)):
            _add_run(side, store, run)
        else:
            raise AuditError(f"unknown --current {spec!r}: not a result file or a recorded run id")
    if not specs:
        if store is None or store.count() == 0:
            where = store.path if store is not None else "the history store"
            raise AuditError(f"{where} holds no runs: run `audit flaky` / `audit mutate` first, or give --current FILE")
        for kind in ("flaky", "mutate"):
            if (run := store.latest(kind)) is not None:
                _add_run(side, store, run)
    return side
