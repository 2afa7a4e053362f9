"""The pre-release review: compare the current audit results with a baseline and decide a release.

Both sides are read from the history store (a run id, or the latest runs recorded at a git ref)
or from result files (``audit flaky --json`` / ``audit mutate --json``). The review fails on:

- ``new_flaky``: a test flaky now that was not flaky in the baseline;
- ``score_drop``: the mutation score fell by more than ``[tool.audit.review] max_score_drop`` points
  (full runs on both sides; a ``--since`` run covers changed lines only and is not compared);
- ``new_survivors``: a mutant the baseline's tests killed survives now, the trace of a weakened
  test (mutants are matched by operator, file, function and diff, since mutmut renumbers them);
- ``changed_survivors``: ML mutants surviving on lines changed since the baseline's commit.

Every reason carries its evidence; checks that cannot be made (no flaky run on one side, no git)
are listed as skipped with the reason, never silently passed.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from audit import vcs
from audit.errors import AuditError
from audit.report.weekly import ML_OPERATORS, killing_test, mutant_key
from audit.store import DETECTED, Run, Store, mutation_score, result_kind, store_path

REVIEW_SCHEMA = "ml-audit.review/1"


@dataclass
class Side:
    """One side of the comparison: where its flaky and mutate results come from, and the results."""

    label: str
    commit: str | None = None
    flaky: list[dict] | None = None          # tests, as in the flaky result
    flaky_source: str | None = None
    mutants: list[dict] | None = None        # mutants, as in the mutate result
    score: float | None = None               # points, 0-100
    partial: bool = False                    # the mutate run covered changed lines only
    operators: frozenset | None = None       # operator names the mutate run used, where it says
    mutate_source: str | None = None

    def describe(self) -> dict:
        return {"label": self.label, "commit": self.commit, "flaky": self.flaky_source,
                "mutate": self.mutate_source, "score": self.score, "partial": self.partial}


@dataclass
class Reason:
    check: str
    message: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class Review:
    baseline: Side
    current: Side
    reasons: list[Reason] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.reasons else 0

    def as_dict(self) -> dict[str, Any]:
        return {"schema": REVIEW_SCHEMA, "decision": "fail" if self.reasons else "pass",
                "exit_code": self.exit_code, "baseline": self.baseline.describe(),
                "current": self.current.describe(), "reasons": [asdict(r) for r in self.reasons],
                "passed": self.passed, "skipped": self.skipped}


# -- resolving the two sides ---------------------------------------------------------------------

def _add_run(side: Side, store: Store, run: Run) -> None:
    if run.kind == "flaky":
        side.flaky, side.flaky_source = store.tests(run.id), run.label
    else:
        side.mutants, side.score, side.partial = store.mutants(run.id), run.score, run.partial
        side.operators = _operators(store.result(run.id))
        side.mutate_source = run.label
    side.commit = side.commit or run.commit


def _add_file(side: Side, path: Path) -> None:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read result file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise AuditError(f"result file {path} is not JSON: {exc}") from None
    kind = result_kind(result)
    if kind == "flaky":
        if side.flaky is not None:
            raise AuditError(f"{side.label}: two flaky results given ({side.flaky_source} and {path})")
        side.flaky, side.flaky_source = list(result.get("tests") or []), str(path)
    else:
        if side.mutants is not None:
            raise AuditError(f"{side.label}: two mutate results given ({side.mutate_source} and {path})")
        side.mutants = list(result.get("mutants") or [])
        side.score = mutation_score(side.mutants, result.get("score"))
        side.partial = bool((result.get("settings") or {}).get("since") or result.get("since"))
        side.operators = _operators(result)
        side.mutate_source = str(path)
    side.commit = side.commit or result.get("commit")


def _operators(result: dict) -> frozenset | None:
    names = result.get("operators")
    return frozenset(names) if isinstance(names, list) and names else None


def _as_file(spec: str, root: Path) -> Path | None:
    for candidate in (Path(spec).expanduser(), root / spec):
        if candidate.is_file():
            return candidate
    return None


def _run_id(spec: str) -> int | None:
    text = spec[4:] if spec.startswith("run:") else spec
    return int(text) if text.isdigit() else None


def _resolve_commit(root: Path, ref: str) -> str | None:
    """The full sha *ref* names in the repository around *root*, or None (no git, no such ref)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root,
                              capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def resolve_baseline(store: Store | None, specs: list[str], root: Path) -> Side:
    """The baseline from RUN_ID / git REF / result FILE specs (files may be given twice: flaky + mutate)."""
    side = Side(label="baseline")
    for spec in specs:
        if (path := _as_file(spec, root)) is not None:
            _add_file(side, path)
            continue
        run_id = _run_id(spec)
        if run_id is not None and store is not None and (run := store.run(run_id)) is not None:
            _add_run(side, store, run)
            # The other kind of audit made at the same commit, no later than this run, completes it.
            other = "mutate" if run.kind == "flaky" else "flaky"
            if run.commit and (twin := store.latest(other, commit=run.commit, full_only=other == "mutate")):
                _add_run(side, store, twin)
            continue
        sha = _resolve_commit(root, spec)
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


ANCESTORS = 1000


def _state_at(store: Store, root: Path, sha: str) -> list[Run]:
    """The latest flaky run and mutate run (full ones preferred) recorded at *sha*, or, for a kind
    with none there, at its nearest ancestor that has one: CI often audits flakiness and mutation
    on different commits, and the state at a ref is what was last measured on its history."""
    try:
        proc = subprocess.run(["git", "rev-list", f"--max-count={ANCESTORS}", sha], cwd=root,
                              capture_output=True, text=True)
        history = proc.stdout.split() if proc.returncode == 0 else [sha]
    except OSError:
        history = [sha]
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
        if (path := _as_file(spec, root)) is not None:
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


# -- the checks ---------------------------------------------------------------------------------

def _pct(value) -> str:
    return "?" if value is None else f"{100 * value:.1f}%"


def _check_new_flaky(review: Review) -> None:
    base, cur = review.baseline.flaky, review.current.flaky
    if base is None or cur is None:
        review.skipped.append(f"new_flaky: no flaky results for the {'baseline' if base is None else 'current state'}")
        return
    before = {t["nodeid"]: t for t in base}
    evidence = []
    for t in sorted(cur, key=lambda t: t["nodeid"]):
        if t.get("verdict") != "flaky" or before.get(t["nodeid"], {}).get("verdict") == "flaky":
            continue
        low, high = (t.get("interval") or [None, None])[:2]
        was = before.get(t["nodeid"])
        was_text = (f"baseline: {was.get('verdict')} in {was.get('executions')} executions" if was
                    else "baseline: not in the suite")
        line = (f"{t['nodeid']}: flaky now, {t.get('failures')}/{t.get('executions')} executions failed "
                f"(rate {_pct(t.get('rate'))}, 95% interval {_pct(low)}–{_pct(high)}); {was_text}")
        causes = [c if isinstance(c, str) else ", ".join(f"{k}={v}" for k, v in c.items()) for c in t.get("causes") or []]
        if causes:
            line += f"; causes: {'; '.join(causes)}"
        if t.get("repro"):
            line += f"; repro: {t['repro']}"
        evidence.append(line)
    if evidence:
        review.reasons.append(Reason("new_flaky", f"{len(evidence)} test(s) flaky now that were not flaky in the "
                                                  "baseline", evidence))
    else:
        review.passed.append(f"new_flaky: no new flaky test ({sum(t.get('verdict') == 'flaky' for t in cur)} "
                             "flaky now, all already flaky in the baseline)")


def _ml(m: dict, ml_only: bool) -> bool:
    return not ml_only or m.get("operator") in ML_OPERATORS


def _mutant_line(m: dict, extra: str = "") -> str:
    kind, why = killing_test(m)
    return (f"{m.get('operator')} at {m.get('path')}:{m.get('line')} in {m.get('function')}{extra}; "
            f"kind of test that kills it: {kind} ({why})\n{(m.get('diff') or '').rstrip()}")


def _check_score(review: Review, max_drop: float) -> None:
    base, cur = review.baseline, review.current
    if base.mutants is None or cur.mutants is None:
        review.skipped.append(f"score_drop: no mutate results for the {'baseline' if base.mutants is None else 'current state'}")
        return
    if base.partial or cur.partial:
        review.skipped.append("score_drop: a mutate run covering only changed lines (--since) has no comparable score")
        return
    if base.operators and cur.operators and base.operators != cur.operators:
        review.skipped.append(f"score_drop: the runs used different operators ({len(base.operators)} in the "
                              f"baseline, {len(cur.operators)} now), so their scores do not compare")
        return
    if base.score is None or cur.score is None:
        review.skipped.append("score_drop: no scored mutants on one side")
        return
    drop = base.score - cur.score
    if drop > max_drop:
        evidence = [f"score {base.score:.1f} → {cur.score:.1f} ({-drop:+.1f} points; allowed: -{max_drop:g})"]
        for name, key in (("operator", lambda m: m.get("operator")), ("module", lambda m: m.get("path"))):
            old, new = _scores(base.mutants, key), _scores(cur.mutants, key)
            for group in sorted(set(old) & set(new)):
                if new[group] < old[group]:
                    evidence.append(f"{name} {group}: {old[group]:.1f} → {new[group]:.1f}")
        review.reasons.append(Reason("score_drop", f"mutation score fell by {drop:.1f} points", evidence))
    else:
        review.passed.append(f"score_drop: score {base.score:.1f} → {cur.score:.1f} (allowed drop {max_drop:g})")


def _scores(mutants: list[dict], key) -> dict[str, float]:
    groups: dict[str, list[dict]] = {}
    for m in mutants:
        groups.setdefault(str(key(m)), []).append(m)
    return {g: s for g, ms in groups.items() if (s := mutation_score(ms)) is not None}


def _check_new_survivors(review: Review, ml_only: bool) -> None:
    base, cur = review.baseline.mutants, review.current.mutants
    if base is None or cur is None:
        review.skipped.append(f"new_survivors: no mutate results for the {'baseline' if base is None else 'current state'}")
        return
    killed_before = {mutant_key(_norm(m)): m for m in base if m.get("status") in DETECTED}
    evidence = []
    for m in cur:
        if m.get("status") != "survived" or not _ml(m, ml_only):
            continue
        old = killed_before.get(mutant_key(_norm(m)))
        if old is not None:
            by = ", ".join(old.get("killed_by") or []) or "the suite"
            evidence.append(_mutant_line(m, f": killed in the baseline by {by}, survives now"))
    what = "ML mutants" if ml_only else "mutants"
    if evidence:
        review.reasons.append(Reason("new_survivors", f"{len(evidence)} {what} killed in the baseline survive now "
                                                      "(a test was weakened or removed)", evidence))
    else:
        review.passed.append(f"new_survivors: every {what[:-1]} the baseline killed is still killed")


def _norm(m: dict) -> dict:
    return {"operator": m.get("operator") or "unknown", "path": _rel(m.get("path") or ""),
            "function": m.get("function"), "diff": m.get("diff") or ""}


def _rel(path: str) -> str:
    return str(PurePosixPath(path.replace("\\", "/")))


def _check_changed_survivors(review: Review, root: Path, ml_only: bool, since: str | None) -> None:
    cur = review.current.mutants
    ref = since or review.baseline.commit
    if cur is None:
        review.skipped.append("changed_survivors: no mutate results for the current state")
        return
    if not ref:
        review.skipped.append("changed_survivors: the baseline names no git commit (give --changed-since REF)")
        return
    if vcs.head_commit(root) is None:
        review.skipped.append(f"changed_survivors: {root} is not in a git work tree")
        return
    if _resolve_commit(root, ref) is None:
        review.skipped.append(f"changed_survivors: the baseline commit {ref[:12]} is not in this repository")
        return
    changed = {_rel(p): lines for p, lines in vcs.changed_lines(root, ref).items()}
    evidence = []
    for m in cur:
        path = m.get("path") or ""
        if os.path.isabs(path):
            try:
                path = str(Path(path).resolve().relative_to(root))
            except ValueError:
                continue
        if m.get("status") == "survived" and _ml(m, ml_only) and m.get("line") in changed.get(_rel(path), ()):
            evidence.append(_mutant_line(m, f": line changed since {ref[:12]}"))
    what = "ML mutants" if ml_only else "mutants"
    if evidence:
        review.reasons.append(Reason("changed_survivors", f"{len(evidence)} {what} survive on lines changed since "
                                                          f"{ref[:12]}", evidence))
    else:
        n = sum(len(v) for v in changed.values())
        review.passed.append(f"changed_survivors: no surviving {what[:-1]} on the {n} line(s) changed since {ref[:12]}")


def run_review(cfg, *, baseline: list[str], current: list[str] | None = None, db: str | None = None,
               changed_since: str | None = None) -> Review:
    """Compare the current state with *baseline* under ``cfg.review``'s thresholds."""
    if not baseline:
        raise AuditError("--baseline is required: a recorded run id, a git ref or a result file")
    root = Path(cfg.root)
    path = store_path(cfg, db)
    needs_store = not current or any(_as_file(s, root) is None for s in [*baseline, *current])
    if needs_store and not path.exists():
        raise AuditError(f"no history store at {path}: run `audit flaky` / `audit mutate` first, "
                         "or give result files for both --baseline and --current")
    store = Store(path, create=False) if path.exists() else None
    try:
        if needs_store and store.count() == 0:
            raise AuditError(f"the history store {path} is empty: run `audit flaky` / `audit mutate` first")
        base = resolve_baseline(store, baseline, root)
        cur = resolve_current(store, current or [], root)
    finally:
        if store is not None:
            store.close()
    review = Review(baseline=base, current=cur)
    rules = cfg.review
    if rules.fail_on_new_flaky:
        _check_new_flaky(review)
    _check_score(review, rules.max_score_drop)
    if rules.fail_on_new_survivors:
        _check_new_survivors(review, rules.ml_only)
    if rules.fail_on_changed_survivors:
        _check_changed_survivors(review, root, rules.ml_only, changed_since)
    return review


# -- writing it down ----------------------------------------------------------------------------

def render_review_markdown(review: Review) -> str:
    from audit.report.markdown import block, code, text

    b, c = review.baseline, review.current
    verdict = "❌ **release blocked**" if review.reasons else "✅ **clear to release**"
    out = [f"# ml-audit review: {verdict}", "",
           f"- baseline: {text(b.flaky_source or '–')} / {text(b.mutate_source or '–')}"
           f"{f' at {code(b.commit[:12])}' if b.commit else ''}",
           f"- current: {text(c.flaky_source or '–')} / {text(c.mutate_source or '–')}"
           f"{f' at {code(c.commit[:12])}' if c.commit else ''}", ""]
    for r in review.reasons:
        out += [f"## ❌ {text(r.check)}: {text(r.message)}", ""]
        for e in r.evidence:
            head, _, diff = e.partition("\n")
            out.append(f"- {text(head)}")
            if diff:
                out += ["", block(diff, "diff"), ""]
        out.append("")
    if review.passed:
        out += ["## Passed", ""] + [f"- ✅ {text(p)}" for p in review.passed] + [""]
    if review.skipped:
        out += ["## Not checked", ""] + [f"- ⚠️ {text(s)}" for s in review.skipped] + [""]
    return "\n".join(out)


def write_review(review: Review, folder: Path) -> list[Path]:
    """review.md and review.json in *folder* (each written whole, then renamed into place)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditError(f"cannot create {folder}: {exc}") from None
    written = []
    for name, body in (("review.md", render_review_markdown(review)),
                       ("review.json", json.dumps(review.as_dict(), indent=2, default=str) + "\n")):
        path = folder / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(body, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise AuditError(f"cannot write {path}: {exc}") from None
        written.append(path)
    return written
