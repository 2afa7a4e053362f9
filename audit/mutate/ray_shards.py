"""``audit mutate`` on Ray: the mutants cut into shards, one Ray task each, verdicts merged.

The driver names the mutants as mutmut will (:func:`audit.mutate.bridge.mutant_names`) and deals
them round-robin to as many shards as the cluster has CPUs. Each task runs the ordinary mutation
worker (:func:`audit.mutate.launch.run_worker`, mutmut through the bridge) on its shard, in its
own copy of the shipped project, and returns the worker's records. Every shard knows every
mutant: a mutant's record is taken from the shard that checked it, and a mutant no shard was
given stays unchecked, so a partial run says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from audit import executor as executors
from audit.atomic import write_json
from audit.job import Job
from audit.mutate.bridge import Spec, mutant_names


def shard_job(spec: dict, names: list[str], *, where: Path, workdir: Path, stop=None, procs=None) -> dict:
    """On a worker: check the mutants *names* in the project copy *where*; the worker's results,
    the tests it found failing only under the trampolines, and its diagnostics when mutmut's
    stats or clean run failed."""
    from audit.mutate.launch import run_worker, tail

    workdir.mkdir(parents=True, exist_ok=True)
    mine = {**spec, "names": names, "max_children": 1, "killers_dir": str(workdir / "killers"),
            "results": str(workdir / "results.json"), "diagnostics": str(workdir / "diagnostics.json"),
            "draws": str(workdir / "draws.jsonl"), "untrampolined": str(workdir / "untrampolined.json"),
            "baseline": str(workdir / "baseline.json")}
    (workdir / "spec.json").write_text(json.dumps(mine, indent=1))
    log = workdir / "mutmut.log"
    run_worker(workdir, where, log, None)
    read = (lambda p: json.loads(p.read_text()) if p.exists() else None)
    return {"names": names, "results": read(workdir / "results.json"),
            "untrampolined": read(workdir / "untrampolined.json"),
            "diagnostics": read(workdir / "diagnostics.json"), "log": tail(log)}


def shards(names: list[str], count: int) -> list[list[str]]:
    """*names* dealt round-robin into at most *count* non-empty shards."""
    count = max(1, min(count, len(names)))
    return [names[i::count] for i in range(count)]


def merge(done: list[dict], elapsed: float) -> dict:
    """One results record from the shards' (in mutmut's order): each mutant from the shard that
    checked it, else as the first shard left it (unchecked)."""
    order: list[str] = []
    first: dict[str, dict] = {}
    checked: dict[str, dict] = {}
    exit_code = 0
    for shard in done:
        results = shard["results"] or {"mutants": [], "exit_code": None}
        exit_code = exit_code or results["exit_code"]
        mine = set(shard["names"])
        for rec in results["mutants"]:
            if rec["id"] not in first:
                order.append(rec["id"])
                first[rec["id"]] = rec
            if rec["id"] in mine:
                checked[rec["id"]] = rec
    return {"exit_code": exit_code, "elapsed": elapsed, "mutants": [checked.get(i, first[i]) for i in order]}


def run_shards(cfg, spec: dict, scratch: Path, workdir: Path, operators, progress=None) -> bool:
    """Check *spec*'s mutants on the Ray cluster; writes the merged ``results`` (the first failing
    shard's ``diagnostics``, every shard's ``untrampolined``) where the local worker would. True
    when Ctrl-C stopped it."""
    names = mutant_names(Spec(spec), operators, workdir)
    ex = executors.make(cfg, scratch / "work", cfg.mutate.max_children)
    start = time.monotonic()
    todo = [Job("shard", i, len(part), shard_job, (spec, part))
            for i, part in enumerate(shards(names, ex.slots))]
    done: list[dict] = []
    interrupted = False

    def on_result(job, value):
        done.append(value)
        if progress is not None:
            progress(sum(len(d["names"]) for d in done), len(names))

    try:
        ex.run(lambda: todo.pop(0) if todo else None, on_result)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        ex.close()
    found = {nodeid: report for d in done for nodeid, report in (d.get("untrampolined") or {}).items()}
    if found:
        write_json(Path(spec["untrampolined"]), found)
    failed = next((d["diagnostics"] for d in done if d["diagnostics"]), None)
    if failed is not None:
        write_json(Path(spec["diagnostics"]), failed)
    if done:
        write_json(Path(spec["results"]), merge(done, time.monotonic() - start))
    return interrupted
