"""Tracing a set of tests: one fresh interpreter under the trace plugin, and its records read back.

A test's trace is a deterministic fact (which sites draw), so one execution is enough; the
attribution engine and ``audit flaky`` read records through :func:`trace_tests`, the reports
through :func:`hygiene_list`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from audit.errors import AuditError
from audit.pytest_run import PytestRun

PLUGIN = "audit.flaky.trace"


def read_trace(path) -> dict[str, dict]:
    """The records of a trace file by node id (the last execution of each test wins)."""
    records = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                records[rec["nodeid"]] = rec
    return records


def hygiene_list(records) -> list[dict]:
    """The RNG hygiene list: tests that consume a global RNG they never seed (latent flakiness,
    failing or not), with the unseeded sites per family, in node id order."""
    listed = []
    for rec in sorted(records, key=lambda r: r["nodeid"]):
        if not rec.get("rng_hygiene"):
            continue
        sites = {f: [f"{s['path']}:{s['line']} ({s['function']})" for s in rec["draws"][f]["sites"] if s["unseeded"]]
                 for f in rec["unseeded_families"]}
        listed.append({"nodeid": rec["nodeid"], "families": list(rec["unseeded_families"]), "sites": sites})
    return listed


def trace_tests(cfg, nodeids, *, extra_args=(), env: dict | None = None, timeout: float = 600.0) -> dict[str, dict]:
    """Run *nodeids* once in a fresh interpreter under the trace plugin; their records by node id.
    Nothing is written into the project; an :class:`AuditError` says why tracing failed."""
    with tempfile.TemporaryDirectory(prefix="ml-audit-trace-") as tmp:
        out = Path(tmp) / "trace.jsonl"
        run = PytestRun(cfg, plugins=[PLUGIN], options=[f"--audit-trace={out}", *extra_args],
                        targets=list(nodeids), env=env)
        ended = run.run(timeout)
        if ended.timed_out:
            raise AuditError(f"tracing {len(nodeids)} test(s) in {cfg.root} took more than {timeout:.0f}s")
        if ended.returncode not in (0, 1) or not out.exists():
            tail = "\n".join(ended.output_tail.strip().splitlines()[-15:])
            raise AuditError(f"tracing tests in {cfg.root} failed (pytest exit {ended.returncode}):\n{tail}")
        return read_trace(out)
