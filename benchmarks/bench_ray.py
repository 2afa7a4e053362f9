"""The ray executor beside the local one, and what one driver can keep busy.

Side by side in one run, on a copy of sample_project (a few tests, fixed plan seed, a fixed
number of executions per test): executions per second with the local executor (both cores),
with a local Ray instance of 1 CPU and of 2 CPUs. Then the driver's own cost per unit: the
planner choosing units and taking their rows back, plus the rows' JSON round trip (what Ray
ships), timed on synthetic rows copied from the real run, with no test running at all. One
driver keeps about ``unit seconds / driver seconds per unit`` workers busy.

    python benchmarks/bench_ray.py [--runs 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_project"
TESTS = ["tests/test_model.py::test_logits_shape", "tests/test_model.py::test_padding_mask_ignores_padded_frames",
         "tests/test_data.py::test_dataset_shapes_and_labels", "tests/test_data.py::test_label_map_covers_every_name"]
QUIET = {"threads": [1], "orders": ["file"], "hashseed": False, "determinism": False, "budget": 600.0,
         "record": False, "workers": 2, "seed": 5}


def _project(tmp: Path) -> Path:
    root = tmp / "sample_project"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "mutants", "reports"))
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text.replace('test_paths = ["tests"]', "test_paths = " + json.dumps(TESTS)))
    return root


def _audit(root: Path, tmp: Path, name: str, executor: str, runs: int):
    from audit.api import flaky

    os.environ["ML_AUDIT_STATE"] = str(tmp / f"state-{name}")
    start = time.monotonic()
    result = flaky(root, executor=executor, runs=runs, **QUIET)
    seconds = time.monotonic() - start
    return result, {"executions": result.executions, "units": result.interpreters, "seconds": round(seconds, 2),
                    "exec_per_s": round(result.executions / seconds, 2)}


def driver_cost(result, units: int = 2000, tests: int = 1000) -> dict:
    """Seconds the driver spends per unit (planning, merging rows, their JSON round trip) on
    synthetic rows, for a plan over *tests* tests shaped like the real ones (1000; or 49, the size
    of sample_project, whose units hold a few rows per test as its in-process rounds do)."""
    from audit.config import load_config
    from audit.flaky.plan import Axes, Planner

    template = [r for r in result.rows if r.get("event") == "row"] or result.rows
    tests = [f"tests/test_synth_{i // 10}.py::test_{i}" for i in range(tests)]
    cfg = load_config(result.project, {"flaky": {"runs": 10**6}})
    planner = Planner(tests, Axes.from_config(cfg.flaky), 1, runs=10**6, budget=10**9,
                      durations={t: 0.01 for t in tests})
    rows_per_unit = 0
    start = time.perf_counter()
    for _ in range(units):
        unit = planner.next_unit(10**9, 1000)
        if unit is None:
            break
        rows = [{**template[i % len(template)], "nodeid": t, "unit": unit.id} for i, t in enumerate(unit.tests)]
        rows = json.loads(json.dumps(rows))          # what a Ray task's return costs the driver
        unit = type(unit).from_json(unit.to_json())   # ... and shipping the unit
        planner.record(rows, 1.0, 0.5, unit=unit)
        rows_per_unit += len(rows)
    elapsed = time.perf_counter() - start
    return {"units": units, "rows_per_unit": round(rows_per_unit / units, 1),
            "ms_per_unit": round(elapsed / units * 1000, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    root = _project(tmp)
    out: dict = {}
    result, out["local"] = _audit(root, tmp, "local", "local", args.runs)
    for cpus in (1, 2):
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            _, out[f"ray_{cpus}"] = _audit(root, tmp, f"ray{cpus}", "ray", args.runs)
        finally:
            ray.shutdown()
    out["driver"] = driver_cost(result)
    out["driver_sample_sized"] = driver_cost(result, tests=49)
    unit_s = out["ray_2"]["seconds"] * 2 / max(1, out["ray_2"]["units"])   # CPU-seconds of one unit
    out["unit_seconds"] = round(unit_s, 2)
    out["workers_one_driver_keeps_busy"] = int(unit_s / (out["driver"]["ms_per_unit"] / 1000))
    out["workers_busy_sample_sized"] = int(unit_s / (out["driver_sample_sized"]["ms_per_unit"] / 1000))
    print(f"{'executor':10} {'executions':>10} {'units':>6} {'seconds':>8} {'exec/s':>7}")
    for name in ("local", "ray_1", "ray_2"):
        r = out[name]
        print(f"{name:10} {r['executions']:>10} {r['units']:>6} {r['seconds']:>8} {r['exec_per_s']:>7}")
    d = out["driver"]
    print(f"driver: {d['ms_per_unit']} ms per unit ({d['rows_per_unit']} rows); a unit takes {unit_s:.2f} s "
          f"of a worker here, so one driver keeps about {out['workers_one_driver_keeps_busy']} workers busy")
    d = out["driver_sample_sized"]
    print(f"driver, sample_project-sized plan (49 tests): {d['ms_per_unit']} ms per unit ({d['rows_per_unit']} rows), "
          f"so one driver keeps about {out['workers_busy_sample_sized']} workers busy")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
