"""``audit mutate``: run mutmut's engine with ML operators on a scratch copy of the project.

The steps: copy the project into a cache folder keyed by its path (mutmut writes ``mutants/``
beside the code, and the user's tree must not change), wipe cached verdicts when anything that
decides them changed (operator set, tests, settings), check the suite passes unmutated with every
seed pinned, then start ``audit.mutate.worker`` (mutmut, patched by ``audit.mutate.bridge``) with
OpenMP on one thread and CUDA hidden, and read back one record per mutant.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import audit
from audit import vcs
from audit.errors import AuditError
from audit.model.mutate import Mutant, MutateResult
from audit.mutate import registry
from audit.mutate.bridge import FORMAT, MUTMUT_VERSION, Spec, status_from_mutmut
from audit.mutate.launch import FORK_SAFE_ENV, Progress, run_worker, tail as _tail
from audit.project import cache_dir as project_cache_dir
from audit.pytest_run import QUIET_ARGS, PytestRun
from audit.scratch import skipped, sync_copy

# Every mutant's tests run with each RNG family pinned and one thread (the shared ml_audit plugin).
PIN_ARGS = ["--audit-enable", "--audit-seed-torch=0", "--audit-seed-numpy=0", "--audit-seed-random=0",
            "--audit-threads=1"]
NOT_SOURCE = {"tests", "test", "docs", "doc", "benchmarks", "examples", "scripts", "reports"}


def neutral_args() -> list[str]:
    """Options every pytest run of a mutation audit gets, whatever the project's config says: mutmut's
    own copies (``mutants/``) are never collected, and coverage plugins from ``addopts`` stay off."""
    args = ["--ignore=mutants"]
    if importlib.util.find_spec("pytest_cov"):  # only then is --no-cov an option pytest knows
        args.append("--no-cov")
    return args


def cache_dir(root: Path) -> Path:
    """The scratch folder mutmut works in for *root*: ``$AUDIT_MUTATE_CACHE`` or the user cache."""
    return project_cache_dir(root, "mutate", "AUDIT_MUTATE_CACHE")


def source_paths(cfg) -> list[str]:
    """What to mutate: ``paths_to_mutate``, else ``src/`` packages, else top-level packages."""
    root = cfg.root
    if cfg.mutate.paths_to_mutate:
        for p in cfg.mutate.paths_to_mutate:
            if not (root / p).exists():
                raise AuditError(f"tool.audit.mutate.paths_to_mutate: {p!r} does not exist in {root}")
        return [str(Path(p)) for p in cfg.mutate.paths_to_mutate]
    base = root / "src" if (root / "src").is_dir() else root
    found = sorted(str(d.relative_to(root)) for d in base.iterdir()
                   if d.is_dir() and (d / "__init__.py").exists() and d.name not in NOT_SOURCE
                   and not d.name.startswith((".", "test")))
    if not found:
        raise AuditError(f"no Python package found to mutate in {root}; "
                         f"set tool.audit.mutate.paths_to_mutate in pyproject.toml")
    return found


def _tree_hash(root: Path, skip_prefixes: list[str]) -> str:
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not skipped(d))
        for name in sorted(files):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if name.endswith((".pyc", ".pyo")) or any(rel == p or rel.startswith(p + "/") for p in skip_prefixes):
                continue
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _allowed_lines(cfg, since: str, sources: list[str]) -> dict[str, list[int]]:
    changed = vcs.changed_lines(cfg.root, since)
    return {path: sorted(lines) for path, lines in changed.items()
            if path.endswith(".py") and any(path == s or path.startswith(s.rstrip("/") + "/") for s in sources)}


def run_mutate(cfg, progress: Progress | None = None) -> MutateResult:
    """Mutation-test the project at ``cfg.root``; returns every mutant's verdict and the scores."""
    settings = cfg.mutate
    chosen = registry.select(settings.operators)
    names = [op.name for op in chosen]
    sources = source_paths(cfg)
    since = getattr(settings, "since", "") or None
    allowed = _allowed_lines(cfg, since, sources) if since else None
    if allowed is not None and not any(allowed.values()):  # no source line changed: nothing to mutate
        return MutateResult(project=str(cfg.root), mutants=[], operators=names, since=since,
                            fail_under=settings.fail_under)

    scratch = cache_dir(cfg.root)
    workdir = scratch / "project"
    exclude = {Path(cfg.reports_dir).parts[0]} if cfg.reports_dir else set()
    sync_copy(cfg.root, workdir, exclude, keep={"mutants"})
    tests_hash = _tree_hash(workdir, sources + ["mutants"])
    untrampolined = Untrampolined(scratch / "untrampolined.json", tests_hash)
    notes: list[str] = []
    deselect = [arg for nodeid in settings.deselect for arg in ("--deselect", nodeid)]
    pytest_args = [*QUIET_ARGS, *cfg.pytest_args, *neutral_args(), *PIN_ARGS, *deselect]
    fingerprint = {
        "ml-audit": audit.__version__, "mutmut": MUTMUT_VERSION, "format": FORMAT, "operators": names,
        "noisy": settings.noisy, "since": allowed, "pytest_args": pytest_args, "test_paths": cfg.test_paths,
        "sources": sources, "timeout": settings.timeout, "tests_and_config": tests_hash,
    }
    stamp = scratch / "fingerprint.json"
    if not stamp.exists() or json.loads(stamp.read_text()) != fingerprint:
        shutil.rmtree(workdir / "mutants", ignore_errors=True)  # cached verdicts no longer hold
        shutil.rmtree(scratch / "killers", ignore_errors=True)
        (scratch / "draws.jsonl").unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)

    # mutmut copies only the paths it mutates: everything else at the top goes along, the rest
    # of a package whose modules are mutated one by one included (its __init__, its tests), or
    # the tests would import an installed copy of the package, or find no tests at all
    whole = {s.rstrip("/") for s in sources if len(Path(s).parts) == 1}
    also_copy = sorted(p.name for p in workdir.iterdir() if p.name not in whole and p.name != "mutants")
    diagnostics, found = scratch / "diagnostics.json", scratch / "untrampolined-found.json"
    baseline = scratch / "baseline.json"
    check = PytestRun(cfg, options=["-q", *neutral_args(), *PIN_ARGS, *deselect], plugins_off=["randomly"],
                      targets=[])
    spec = {
        "operators": names, "noisy": settings.noisy, "allowed_lines": allowed, "source_paths": sources,
        "test_paths": list(cfg.test_paths), "pytest_args": pytest_args, "also_copy": also_copy,
        "max_children": settings.max_children or os.cpu_count() or 1, "timeout": settings.timeout,
        "killers_dir": str(scratch / "killers"), "results": str(scratch / "results.json"),
        "diagnostics": str(diagnostics), "draws": str(scratch / "draws.jsonl"), "recheck_rounds": settings.seed_rechecks,
        "check_args": check.command()[1:], "untrampolined": str(found), "left_out": untrampolined.tests,
        "baseline": str(baseline),
    }
    (scratch / "spec.json").write_text(json.dumps(spec, indent=1))
    results = scratch / "results.json"
    for stale in (results, diagnostics, found, baseline):
        stale.unlink(missing_ok=True)
    log = scratch / "mutmut.log"
    if cfg.executor == "ray":
        from audit.mutate.ray_shards import run_shards

        interrupted = run_shards(cfg, spec, scratch, workdir, chosen, progress)
    else:
        interrupted = run_worker(scratch, workdir, log, progress)
    if found.exists():
        untrampolined.add(json.loads(found.read_text()))
    failed = json.loads(diagnostics.read_text()) if diagnostics.exists() and not interrupted else None
    if failed is not None:
        raise AuditError(mutmut_failure(failed, cfg.root, _tail(log)))
    stamp.write_text(json.dumps(fingerprint))  # mutmut's verdicts so far hold for this fingerprint
    if untrampolined.tests:
        notes.append(untrampolined.note())

    if results.exists():
        data = json.loads(results.read_text())
    elif interrupted:  # the worker was stopped before it could write: read mutmut's files ourselves
        from audit.mutate.worker import collect

        data = {"exit_code": None, "elapsed": 0.0,
                "mutants": collect(Spec(spec), workdir / "mutants")}
    else:
        raise AuditError(f"mutmut stopped without results; its log:\n{_tail(log)}")
    operators = registry.all_operators()
    mutants = [Mutant(id=r["id"], operator=r["operator"], path=r["path"], line=r["line"], column=r["column"],
                      end_line=r["end_line"], end_column=r["end_column"], replacement=r["replacement"],
                      function=r["function"], status=status_from_mutmut(r["exit_code"], r["mutmut_status"],
                                                                         r.get("seed_kills"), r.get("seed_runs")),
                      seed_kills=r.get("seed_kills"), seed_runs=r.get("seed_runs"),
                      diff=r["diff"], killed_by=r["killed_by"], ml=operators[r["operator"]].ml,
                      killer=operators[r["operator"]].killer, reason=r.get("reason", ""))
               for r in data["mutants"]]
    if not interrupted and data["exit_code"] and all(m.status in ("error", "unchecked") for m in mutants):
        stamp.unlink(missing_ok=True)
        raise AuditError(f"mutmut failed (exit {data['exit_code']}) before checking any mutant; "
                         f"its log ({log}):\n{_tail(log)}")
    texts = {}
    for path in sorted({m.path for m in mutants}):
        texts[path] = (cfg.root / path).read_text(encoding="utf-8")
    return MutateResult(project=str(cfg.root), mutants=mutants, operators=names, elapsed=data["elapsed"],
                        since=since, fail_under=settings.fail_under, sources=texts, interrupted=interrupted,
                        notes=notes)


class Untrampolined:
    """Tests that pass on the project but fail as mutmut runs them, kept per state of the tests and
    config (a later run leaves them out from the start instead of finding them again)."""

    def __init__(self, path: Path, tests_hash: str):
        self.path, self.tests_hash = path, tests_hash
        data = json.loads(path.read_text()) if path.exists() else {}
        self.failures: dict[str, str] = data.get("failures", {}) if data.get("tests_and_config") == tests_hash else {}

    @property
    def tests(self) -> list[str]:
        return sorted(self.failures)

    def add(self, failures: dict[str, str]) -> None:
        self.failures.update(failures)
        self.path.write_text(json.dumps({"tests_and_config": self.tests_hash, "failures": self.failures}, indent=1))

    def note(self) -> str:
        lines = [f"  {nodeid}: {_last_error_line(text)}" for nodeid, text in sorted(self.failures.items())]
        return (f"{len(self.failures)} test(s) pass on the project but fail as mutmut runs them (under its "
                f"trampolines, e.g. torch.jit.script of mutated code, or its coverage tracing); they were left "
                f"out of mutation testing:\n"
                + "\n".join(lines))


def _last_error_line(report: str) -> str:
    lines = [line.strip() for line in report.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ") or "Error" in line.split(":")[0]]
    return (errors or lines or ["(no report)"])[-1][:200]


def mutmut_failure(failed: dict, root: Path, log_tail: str = "", limit: int = 6000) -> str:
    """The error for a suite that cannot be mutation-tested: the failing tests by name, then their
    pytest reports; or, when no test failed, why pytest stopped and the end of mutmut's log."""
    if failed["phase"] == "stats" and failed["exit_code"] == 5:
        return f"no tests collected in {root} (after tool.audit.mutate.deselect)"
    if failed["phase"] == "suite":
        listed = "\n  ".join(failed["failed"])
        return (f"the test suite fails before any mutation ({len(failed['failed'])} failing); fix these or "
                f"list them in tool.audit.mutate.deselect (pyproject.toml):\n  {listed}")
    what = {"stats": "mutmut's stats run (the whole suite under its trampolines)",
            "clean": "mutmut's clean run (the covering tests under its trampolines, no mutant active)"}
    head = f"{what.get(failed['phase'], failed['phase'])} failed: {failed['reason'].splitlines()[0]}"
    if failed["failed"]:
        names = "\n  ".join(failed["failed"])
        reports = "\n\n".join(f"___ {nodeid} ___\n{text.strip()}" for nodeid, text in failed["failed"].items())
        body = (f"{len(failed['failed'])} failing test(s); deselect them with tool.audit.mutate.deselect "
                f"(pyproject.toml) if they cannot run under mutmut:\n  {names}\n\n{reports}")
    else:
        body = "\n".join(filter(None, [failed["reason"], log_tail]))
    return f"{head}\n{body[:limit]}" + ("\n..." if len(body) > limit else "")
