"""Mutants per second: ``audit mutate`` vs plain ``mutmut run`` vs one fresh pytest process per mutant.

    python benchmarks/bench_mutate.py [PROJECT] [--operators ml] [--sample 15]

All three run on a scratch copy of PROJECT (default: sample_project) with the same operators,
the same tests (``[tool.audit.mutate] deselect`` applied, seeds pinned by the ml_audit plugin)
and OpenMP on one thread (without it plain mutmut's forked children hang on torch):

* audit: ``audit.mutate.engine.run_mutate`` from a cold cache (wall time of the whole run);
* mutmut: ``mutmut run`` with the same operator functions put in its operator list, in its
  ``forkserver`` mode (wall time of the whole run, from a fresh copy). Its default ``fork`` mode
  runs the stats and clean-test passes in one process, so on sample_project a test's environment
  change leaks into the clean run and mutmut stops with "Failed to run clean test";
* process: each of ``--sample`` mutants (spread over the run's mutants) in a fresh
  ``python -m pytest`` process running the mutant's covering tests, as a tool without forking
  would; the rate is extrapolated from the sample.

Prints the three rates and the ratios audit/mutmut and audit/process. Timings are noisy on a
shared machine: compare the ratios, taken side by side, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audit.config import load_config  # noqa: E402
from audit.mutate import engine  # noqa: E402
from audit.pytest_run import QUIET_ARGS, child_env as pytest_env  # noqa: E402

MUTMUT_DRIVER = """
import sys
from mutmut.mutation import mutators
from audit.mutate.registry import select
chosen = select(sys.argv[1])
mutators.mutation_operators[:] = [(op.node_type, op.mutate) for op in chosen if op.ml] + [
    (t, f) for (t, f) in list(mutators.mutation_operators) if 'mutmut_' + f.__name__.removeprefix('operator_')
    in {op.name for op in chosen}]
from mutmut.__main__ import cli
cli(['run', '--max-children', sys.argv[2]])
"""


def bench_audit(cfg, cache: Path) -> tuple[int, float, Path]:
    os.environ["AUDIT_MUTATE_CACHE"] = str(cache)
    start = time.perf_counter()
    result = engine.run_mutate(cfg)
    return len(result.mutants), time.perf_counter() - start, engine.cache_dir(cfg.root)


def untrampolined(scratch: Path) -> list[str]:
    """The tests audit mutate found failing under mutmut's trampolines (``torch.jit.script`` of
    mutated code) and deselected: plain mutmut gets them deselected too, or its stats pass fails."""
    path = scratch / "untrampolined.json"
    return sorted(json.loads(path.read_text()).get("failures", {})) if path.exists() else []


def bench_mutmut(cfg, workdir: Path, operators: str, children: int, also: list[str]) -> tuple[int, float]:
    engine.sync_copy(cfg.root, workdir, set())
    sources = engine.source_paths(cfg)
    deselect = [a for n in [*cfg.mutate.deselect, *also] for a in ("--deselect", n)]
    args = [*QUIET_ARGS, *engine.neutral_args(), *cfg.pytest_args, *engine.PIN_ARGS, *deselect]
    toml = workdir / "pyproject.toml"
    before = toml.read_text() if toml.exists() else ""
    toml.write_text(before + "\n[tool.mutmut]\n" + f"source_paths = {json.dumps(sources)}\n"
                    f"pytest_add_cli_args = {json.dumps(args)}\n"
                    f"pytest_add_cli_args_test_selection = {json.dumps(list(cfg.test_paths))}\n"
                    'process_isolation = "forkserver"\n')
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MUTMUT_DRIVER, operators, str(children)], cwd=workdir,
                          env=pytest_env(engine.FORK_SAFE_ENV), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    metas = list((workdir / "mutants").rglob("*.meta"))
    count = sum(v is not None for m in metas for v in json.loads(m.read_text())["exit_code_by_key"].values())
    if not count:
        raise SystemExit(f"mutmut failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return count, elapsed


def bench_process(scratch: Path, cfg, sample: int, also: list[str]) -> tuple[int, float]:
    mutants_dir = scratch / "project" / "mutants"
    stats = json.loads((mutants_dir / "mutmut-stats.json").read_text())
    tests_by_function = stats["tests_by_mangled_function_name"]
    names = []
    for meta in sorted(mutants_dir.rglob("*.meta")):
        names.extend(json.loads(meta.read_text())["exit_code_by_key"])
    covered = [n for n in names if tests_by_function.get(n.partition("__mutmut_")[0])]
    if not covered:
        return 0, 0.0
    step = max(1, len(covered) // sample)
    chosen = covered[::step][:sample]
    deselect = [a for n in [*cfg.mutate.deselect, *also] for a in ("--deselect", n)]
    start = time.perf_counter()
    for name in chosen:
        tests = sorted(tests_by_function[name.partition("__mutmut_")[0]])
        env = pytest_env({**engine.FORK_SAFE_ENV, "MUTANT_UNDER_TEST": name})
        subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", *QUIET_ARGS, *engine.neutral_args(),
                        *cfg.pytest_args,
                        *engine.PIN_ARGS, *deselect, *tests], cwd=mutants_dir, env=env, capture_output=True)
    return len(chosen), time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", nargs="?", default=str(REPO / "sample_project"))
    parser.add_argument("--operators", default="ml")
    parser.add_argument("--sample", type=int, default=15, help="mutants run as fresh processes")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers as JSON")
    parser.add_argument("--deselect", action="append", default=[], metavar="NODEID",
                        help="also leave this test out (e.g. a planted flaky test that fails at seed 0)")
    args = parser.parse_args(argv)
    root = Path(args.project).resolve()
    deselect = load_config(root).mutate.deselect + args.deselect
    cfg = load_config(root, {"mutate": {"operators": args.operators, "max_children": args.children,
                                        "deselect": deselect}})
    with tempfile.TemporaryDirectory(prefix="bench-mutate-") as tmp:
        tmp = Path(tmp)
        n_audit, t_audit, scratch = bench_audit(cfg, tmp / "cache")
        plain_cfg = load_config(root, {"mutate": {"operators": args.operators, "max_children": args.children,
                                                  "deselect": deselect, "seed_rechecks": 0}})
        n_plain, t_plain, _ = bench_audit(plain_cfg, tmp / "cache-no-recheck")
        also = untrampolined(scratch)
        n_mutmut, t_mutmut = bench_mutmut(cfg, tmp / "mutmut", args.operators, args.children, also)
        n_proc, t_proc = bench_process(scratch, cfg, args.sample, also)
        shutil.rmtree(tmp / "mutmut", ignore_errors=True)
    rate = {"audit": n_audit / t_audit, "audit_no_recheck": n_plain / t_plain, "mutmut": n_mutmut / t_mutmut if t_mutmut else 0.0,
            "process": n_proc / t_proc if t_proc else 0.0}
    print(f"project {cfg.root}  operators {args.operators}  children {args.children}")
    if also:
        print(f"deselected for all three (fail under mutmut's trampolines): {', '.join(also)}")
    print(f"audit mutate      {n_audit:4d} mutants in {t_audit:7.1f}s  {rate['audit']:.2f} mutants/s")
    print(f"  no seed re-check{n_plain:4d} mutants in {t_plain:7.1f}s  {rate['audit_no_recheck']:.2f} mutants/s")
    print(f"plain mutmut run  {n_mutmut:4d} mutants in {t_mutmut:7.1f}s  {rate['mutmut']:.2f} mutants/s")
    print(f"process/mutant    {n_proc:4d} mutants in {t_proc:7.1f}s  {rate['process']:.2f} mutants/s (sample)")
    if rate["mutmut"]:
        print(f"ratio audit/mutmut  {rate['audit'] / rate['mutmut']:.2f}  "
              f"(without the seed re-check {rate['audit_no_recheck'] / rate['mutmut']:.2f})")
    if rate["process"]:
        print(f"ratio audit/process {rate['audit'] / rate['process']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "project": str(cfg.root), "operators": args.operators, "children": args.children,
            "deselected": also,
            "mutants": {"audit": n_audit, "audit_no_recheck": n_plain, "mutmut": n_mutmut, "process": n_proc},
            "seconds": {"audit": t_audit, "audit_no_recheck": t_plain, "mutmut": t_mutmut, "process": t_proc},
            "per_second": rate,
            "ratio": {"audit/mutmut": rate["audit"] / rate["mutmut"] if rate["mutmut"] else None,
                      "audit_no_recheck/mutmut": rate["audit_no_recheck"] / rate["mutmut"] if rate["mutmut"] else None,
                      "audit/process": rate["audit"] / rate["process"] if rate["process"] else None},
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
