"""``audit mutate``: run mutmut's engine with ML operators on a scratch copy of the project.

The steps: copy the project into a cache folder keyed by its path (mutmut writes ``mutants/``
beside the code, and the user's tree must not change), wipe cached verdicts when anything that
decides them changed (operator set, tests, settings), check the suite passes unmutated with every
seed pinned, then start ``audit.mutate.worker`` (mutmut, patched by ``audit.mutate.bridge``) with
OpenMP on one thread and CUDA hidden, and read back one record per mutant.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import audit
from audit import vcs
from audit.errors import AuditError
from audit.model.mutate import Mutant, MutateResult
from audit.mutate import registry
from audit.mutate.bridge import FORMAT, MUTMUT_VERSION, Spec, status_from_mutmut
from audit.project import cache_dir as project_cache_dir
from audit.pytest_run import QUIET_ARGS, PytestRun, kill_group, run_process
from audit.scratch import skipped, sync_copy

# Every mutant's tests run with each RNG family pinned and one thread (the shared ml_audit plugin).
PIN_ARGS = ["--audit-enable", "--audit-seed-torch=0", "--audit-seed-numpy=0", "--audit-seed-random=0",
            "--audit-threads=1"]
FORK_SAFE_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"}
NOT_SOURCE = {"tests", "test", "docs", "doc", "benchmarks", "examples", "scripts", "reports"}

STOP_GRACE = 20.0  # seconds the worker gets to save mutmut's verdicts after Ctrl-C

Progress = Callable[[int, int], None]


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


def _failing_tests(output: str) -> list[str]:
    names = []
    for line in output.splitlines():
        match = re.match(r"^(FAILED|ERROR) (\S+)", line)
        if match:
            names.append(match.group(2))
    return list(dict.fromkeys(names))


def check_suite(cfg, workdir: Path, extra: list[str]) -> None:
    """Run the selected tests once, unmutated and pinned: mutation testing needs a green suite."""
    run = PytestRun(cfg, options=["-q", "-rfE", *extra], plugins_off=["randomly"], env=FORK_SAFE_ENV, cwd=workdir)
    outcome = run.run(keep_output=True)
    out = outcome.output
    if outcome.returncode == 0:
        return
    if outcome.returncode == 5:
        raise AuditError(f"no tests collected in {cfg.root} (after tool.audit.mutate.deselect)")
    failing = _failing_tests(out)
    if failing:
        listed = "\n  ".join(failing)
        raise AuditError(f"the test suite fails before any mutation ({len(failing)} failing); fix these or "
                         f"list them in tool.audit.mutate.deselect (pyproject.toml):\n  {listed}")
    tail = "\n".join(out.strip().splitlines()[-25:])
    raise AuditError(f"the test suite cannot run before mutation (pytest exit {outcome.returncode}):\n{tail}")


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

    deselect = [arg for nodeid in settings.deselect for arg in ("--deselect", nodeid)]
    pytest_args = [*QUIET_ARGS, *cfg.pytest_args, *PIN_ARGS, *deselect]
    fingerprint = {
        "ml-audit": audit.__version__, "mutmut": MUTMUT_VERSION, "format": FORMAT, "operators": names,
        "noisy": settings.noisy, "since": allowed, "pytest_args": pytest_args, "test_paths": cfg.test_paths,
        "sources": sources, "timeout": settings.timeout,
        "tests_and_config": _tree_hash(workdir, sources + ["mutants"]),
    }
    stamp = scratch / "fingerprint.json"
    if not stamp.exists() or json.loads(stamp.read_text()) != fingerprint:
        shutil.rmtree(workdir / "mutants", ignore_errors=True)  # cached verdicts no longer hold
        shutil.rmtree(scratch / "killers", ignore_errors=True)
        stamp.unlink(missing_ok=True)

    try:
        check_suite(cfg, workdir, [*PIN_ARGS, *deselect])
    except KeyboardInterrupt:  # before any mutant: nothing was measured
        return MutateResult(project=str(cfg.root), mutants=[], operators=names, since=since,
                            fail_under=settings.fail_under, interrupted=True)

    top = {Path(s).parts[0] for s in sources}
    also_copy = sorted(p.name for p in workdir.iterdir() if p.name not in top and p.name != "mutants")
    spec = {
        "operators": names, "noisy": settings.noisy, "allowed_lines": allowed, "source_paths": sources,
        "test_paths": list(cfg.test_paths), "pytest_args": pytest_args, "also_copy": also_copy,
        "max_children": settings.max_children or os.cpu_count() or 1, "timeout": settings.timeout,
        "killers_dir": str(scratch / "killers"), "results": str(scratch / "results.json"),
    }
    (scratch / "spec.json").write_text(json.dumps(spec, indent=1))
    results = scratch / "results.json"
    results.unlink(missing_ok=True)
    log = scratch / "mutmut.log"
    interrupted = _run_worker(scratch, workdir, log, progress)
    stamp.write_text(json.dumps(fingerprint))  # mutmut's verdicts so far hold for this fingerprint

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
                      function=r["function"], status=status_from_mutmut(r["exit_code"], r["mutmut_status"]),
                      diff=r["diff"], killed_by=r["killed_by"], ml=operators[r["operator"]].ml,
                      killer=operators[r["operator"]].killer) for r in data["mutants"]]
    if not interrupted and data["exit_code"] and mutants and all(m.status == "error" for m in mutants):
        stamp.unlink(missing_ok=True)
        raise AuditError(f"mutmut failed (exit {data['exit_code']}); its log:\n{_tail(log)}")
    texts = {}
    for path in sorted({m.path for m in mutants}):
        texts[path] = (cfg.root / path).read_text(encoding="utf-8")
    return MutateResult(project=str(cfg.root), mutants=mutants, operators=names, elapsed=data["elapsed"],
                        since=since, fail_under=settings.fail_under, sources=texts, interrupted=interrupted)


def _tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_worker(scratch: Path, workdir: Path, log: Path, progress: Progress | None) -> bool:
    """Run the mutation worker to the end; True when Ctrl-C stopped it (mutmut keeps what it measured)."""
    read_fd, write_fd = os.pipe()
    interrupted = False
    try:
        proc = run_process([sys.executable, "-m", "audit.mutate.worker", str(scratch / "spec.json")], cwd=workdir,
                           env={**FORK_SAFE_ENV, "AUDIT_PROGRESS_FD": str(write_fd)}, log=log, pass_fds=[write_fd])
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        with os.fdopen(read_fd, "r") as events:
            for line in events:
                parts = line.split()
                if progress is not None and len(parts) == 2:
                    progress(int(parts[0]), int(parts[1]))
        proc.wait()
    except KeyboardInterrupt:
        interrupted = True
        _stop(proc)
    except BaseException:
        kill_group(proc)
        raise
    if proc.returncode != 0 and not interrupted:
        raise AuditError(f"the mutation worker crashed (exit {proc.returncode}); its log ({log}):\n{_tail(log)}")
    return interrupted


def _stop(proc) -> None:
    """Pass Ctrl-C on to the worker, so mutmut stops its mutants and saves its verdicts; kill it if it lingers."""
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=STOP_GRACE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    finally:
        kill_group(proc)  # the fork server and any mutant still running
