"""audit flaky (forked and fresh interpreters) against a plain ``python -m pytest`` loop and pytest-flakefinder.

All four run on sample_project for the same wall-clock budget, both cores busy, each test
execution recorded by ml-audit's plugin (``--audit-rows``), so the measures are the same:

* test executions per second;
* time until every planted flaky test of expected.toml has shown both outcomes;
* and, measured apart, a unit's start-up (launch to its first test) forked from a zygote and in a
  fresh interpreter, in milliseconds.

audit flaky runs detection only (``attribute=False``), once with its fork server (the default)
and once with ``fork_server=False``.

(a) runs the whole suite in fresh interpreters, two at a time, with the same settings audit
flaky varies (fresh seeds, hash seed, 1/2 threads, determinism on/off, file/reversed order).
(b) runs pytest-flakefinder's in-process repetition in two interpreters (threads 1 + determinism
off, threads 2 + determinism on), also with fresh seeds from our plugin; it cannot vary the
hash seed or the order within an interpreter. Prints a table and the ratios; ``--json FILE``
keeps the raw numbers.

    python benchmarks/bench_flaky.py [--budget 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_project"
SEEDS = ["--audit-enable", "--audit-seed-torch=fresh", "--audit-seed-numpy=fresh", "--audit-seed-random=fresh"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def planted() -> list[str]:
    with (SAMPLE / "expected.toml").open("rb") as f:
        return [x["nodeid"] for x in tomllib.load(f)["flaky"]]


def time_to_find(rows: list[dict], targets: list[str], t0: float) -> tuple[float | None, int]:
    """Seconds from t0 until every target has passed and failed at least once, and how many did."""
    seen: dict[str, set] = {t: set() for t in targets}
    found_at: dict[str, float] = {}
    for row in sorted(rows, key=lambda r: r.get("ended_at", 0)):
        n = row.get("nodeid")
        if n in seen and n not in found_at:
            seen[n].add(row.get("klass"))
            if {"pass", "fail"} <= seen[n]:
                found_at[n] = row["ended_at"] - t0
    done = len(found_at) == len(targets)
    return (max(found_at.values()) if done else None), len(found_at)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "row":
            out.append(rec)
    return out


def env_for(extra: dict) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **extra)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def run_audit(project: Path, budget: float, state: Path, fork_server: bool = True) -> dict:
    from audit.api import flaky

    os.environ["ML_AUDIT_STATE"] = str(state)
    t0 = time.time()
    result = flaky(project, budget=budget, seed=12345, attribute=False, record=False, fork_server=fork_server)
    wall = time.time() - t0
    rows = read_rows(next(state.rglob("rows.jsonl")))
    return {"rows": rows, "wall": wall, "t0": t0, "fork_server": result.settings.get("fork_server")}


def startup_ms(project: Path, work: Path, units: int = 3) -> dict:
    """Median milliseconds from launch to the first test of one unit, forked and fresh."""
    import statistics

    from audit.config import load_config
    from audit.flaky.runner import Unit, run_unit
    from audit.forkserver import ForkServer

    cfg = load_config(project)
    imports: list[str] = []
    from audit.project import collect

    tests = collect(cfg, imports=imports)
    server = ForkServer(work / "zygotes", seed=1)
    times: dict[str, list[float]] = {"forked": [], "fresh": []}
    try:
        server.start(imports, seed=1)
        hashseed = server.hashseed()
        run_unit(cfg, Unit(id=0, tests=tests[:1], hashseed=hashseed), 60.0, work / "warm", forks=server)
        for i in range(units):
            unit = Unit(id=i + 1, tests=tests[:1], hashseed=hashseed)
            for kind, forks in (("forked", server), ("fresh", None)):
                res = run_unit(cfg, unit, 60.0, work / f"{kind}-{i}", forks=forks)
                times[kind].append(res.startup)
    finally:
        server.close()
    return {k: round(1000 * statistics.median(v), 1) for k, v in times.items()}


def run_loop(project: Path, budget: float, work: Path, collected: list[str]) -> dict:
    rows_file = work / "loop-rows.jsonl"
    t0 = time.time()
    stop = t0 + budget
    rand = random.Random(1)
    lock = threading.Lock()
    counter = [0]

    def worker():
        while time.time() < stop:
            with lock:
                k = counter[0]
                counter[0] += 1
                hashseed = rand.randrange(2 ** 32)
            threads = 1 + k % 2
            det = "on" if (k // 2) % 2 else "off"
            order = collected[::-1] if (k // 4) % 2 else collected
            cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:randomly",
                   *order, *SEEDS, f"--audit-threads={threads}", f"--audit-deterministic={det}",
                   f"--audit-rows={rows_file}"]
            env = env_for({"PYTHONHASHSEED": str(hashseed), "OMP_NUM_THREADS": str(threads),
                           "MKL_NUM_THREADS": str(threads)})
            try:
                subprocess.run(cmd, cwd=project, env=env, capture_output=True,
                               timeout=max(1.0, stop - time.time()))
            except subprocess.TimeoutExpired:
                pass

    pool = [threading.Thread(target=worker) for _ in range(2)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"rows": read_rows(rows_file), "wall": time.time() - t0, "t0": t0}


def run_flakefinder(project: Path, budget: float, work: Path) -> dict:
    t0 = time.time()
    procs = []
    for i, (threads, det) in enumerate(((1, "off"), (2, "on"))):
        rows_file = work / f"ff-rows-{i}.jsonl"
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:randomly",
               "--flake-finder", "--flake-runs=400",  # copies are made at collection: keep it finite
               *SEEDS, f"--audit-threads={threads}", f"--audit-deterministic={det}", f"--audit-rows={rows_file}"]
        env = env_for({"PYTHONHASHSEED": str(1000 + i), "OMP_NUM_THREADS": str(threads),
                       "MKL_NUM_THREADS": str(threads)})
        procs.append(subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    for p in procs:  # rows are flushed one by one: stopping at the budget loses nothing
        try:
            p.wait(timeout=max(0.1, t0 + budget - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    rows = [r for i in range(2) for r in read_rows(work / f"ff-rows-{i}.jsonl")]
    for r in rows:  # flakefinder names its copies test[0], test[1], ...
        r["nodeid"] = re.sub(r"\[\d+\]$", "", r["nodeid"])
    return {"rows": rows, "wall": time.time() - t0, "t0": t0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=150.0, help="seconds each contender gets")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    targets = planted()
    work = Path(tempfile.mkdtemp(prefix="bench-flaky-"))
    project = work / "sample_project"
    shutil.copytree(SAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "reports", "mutants"))
    from audit.config import load_config
    from audit.project import collect

    collected = collect(load_config(project))
    results = {}
    print("measuring unit start-up, forked and fresh ...", flush=True)
    startup = startup_ms(project, work)
    for name, fn in (("audit flaky", lambda: run_audit(project, args.budget, work / "state")),
                     ("audit flaky, fresh", lambda: run_audit(project, args.budget, work / "state-fresh", False)),
                     ("plain pytest loop", lambda: run_loop(project, args.budget, work, collected)),
                     ("pytest-flakefinder", lambda: run_flakefinder(project, args.budget, work))):
        print(f"running {name} for {args.budget:.0f}s ...", flush=True)
        out = fn()
        found_s, found = time_to_find(out["rows"], targets, out["t0"])
        results[name] = {"executions": len(out["rows"]), "wall": out["wall"],
                         "executions_per_s": len(out["rows"]) / out["wall"],
                         "time_to_find_all": found_s, "found": found, "planted": len(targets),
                         **({"fork_server": out["fork_server"]} if out.get("fork_server") else {})}
    base = results["audit flaky"]
    print(f"\n{'contender':<20} {'executions':>10} {'exec/s':>8} {'found':>7} {'all found at':>13}")
    for name, r in results.items():
        at = f"{r['time_to_find_all']:.1f}s" if r["time_to_find_all"] is not None else "never"
        print(f"{name:<20} {r['executions']:>10} {r['executions_per_s']:>8.1f} "
              f"{r['found']:>3}/{r['planted']:<3} {at:>13}")
    for name in ("audit flaky, fresh", "plain pytest loop", "pytest-flakefinder"):
        r = results[name]
        speed = base["executions_per_s"] / r["executions_per_s"] if r["executions_per_s"] else float("inf")
        line = f"audit flaky vs {name}: {speed:.1f}x executions per second"
        if base["time_to_find_all"] and r["time_to_find_all"]:
            line += f", {r['time_to_find_all'] / base['time_to_find_all']:.1f}x faster to find all planted flakes"
        elif base["time_to_find_all"]:
            line += f"; {name} found only {r['found']}/{r['planted']} in {args.budget:.0f}s"
        print(line)
    print(f"unit start-up (median of 3): forked {startup['forked']:.0f} ms, fresh {startup['fresh']:.0f} ms "
          f"({startup['forked'] / startup['fresh']:.0%} of fresh)")
    print(f"machine load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"contenders": results, "startup_ms": startup,
                                               "load_average": os.getloadavg()}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
