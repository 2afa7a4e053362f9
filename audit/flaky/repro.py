"""Repro commands: one failing execution as a plain ``python -m pytest`` line plus our options.

A row carries everything needed: the seeds (or the seed base they were derived from), the thread
count, the interpreter's hash seed and thread variables, determinism, and, through its unit and
round, the tests that ran before it. ``candidates`` gives the shortest command first (the test
alone) and then the one with the tests that preceded it in its round (fixtures, order).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from audit.flaky.sources import FAMILIES


@dataclass
class Repro:
    nodeid: str
    env: dict[str, str]
    args: list[str]                        # after "python -m pytest"
    preceding: list[str] = field(default_factory=list)
    verified: bool | None = None           # None: not tried; True: it failed again when run

    def command(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        args = " ".join(shlex.quote(a) for a in self.args)
        return f"{env} python -m pytest {args}".strip()


def _options(row: dict, unit: dict, alone: bool) -> list[str]:
    opts = ["--audit-enable"]
    modes = row.get("seed_modes") or unit.get("seeds", {})
    seeds = row.get("seeds") or {}
    use_base = row.get("attempt", 0) == 0 and row.get("seed_base") is not None
    for family in FAMILIES:
        mode = modes.get(family)
        if mode is None:
            continue
        if mode == "fresh" and use_base:
            opts.append(f"--audit-seed-{family}=fresh")
        elif mode == "fresh" and seeds.get(family) is not None:
            opts.append(f"--audit-seed-{family}={seeds[family]}")
        else:
            opts.append(f"--audit-seed-{family}={mode}")
    if use_base and any(modes.get(f) == "fresh" for f in FAMILIES):
        opts.append(f"--audit-seed-base={row['seed_base']}")
    if row.get("threads"):
        opts.append(f"--audit-threads={row['threads']}")
    det = row.get("deterministic") or unit.get("deterministic")
    if det:
        opts.append(f"--audit-deterministic={det}")
    if row.get("masked") or row.get("attempt", 0):
        opts.append("--force-reruns=0")  # pytest-rerunfailures would rerun it until it passes
    return opts


def build(row: dict, unit: dict, preceding: list[str], pytest_args: list[str]) -> Repro:
    env = {"PYTHONHASHSEED": str(unit.get("hashseed", row.get("hashseed", "0")))}
    if unit.get("env_threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(unit["env_threads"])
    if unit.get("cuda") and (row.get("deterministic") or unit.get("deterministic")) == "on":
        env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    args = ["-p", "no:cacheprovider", "-p", "no:randomly", *pytest_args, *preceding, row["nodeid"],
            *_options(row, unit, alone=not preceding)]
    return Repro(row["nodeid"], env, args, list(preceding))


def preceding_tests(row: dict, unit_rows: list[dict]) -> list[str]:
    """Node ids that ran before *row* in the same round of its interpreter, in order."""
    before = []
    for other in unit_rows:
        if other is row or (other["nodeid"] == row["nodeid"] and other.get("round") == row.get("round")
                            and other.get("attempt") == row.get("attempt")):
            break
        if other.get("round") == row.get("round") and other["nodeid"] not in before \
                and other["nodeid"] != row["nodeid"]:
            before.append(other["nodeid"])
    return before


def candidates(failing_rows: list[dict], rows_by_unit: dict, units: dict,
               pytest_args: list[str], limit: int = 2) -> list[Repro]:
    """Repro commands to try, shortest first: for up to *limit* failing executions, the test
    alone and then with the tests that preceded it (when any did)."""
    def rank(row):
        return (row.get("attempt", 0) > 0, row.get("round", 0) > 0, row.get("round", 0))

    out = []
    for row in sorted(failing_rows, key=rank)[:limit]:
        unit = units.get(row["unit"], {})
        out.append(build(row, unit, [], pytest_args))
        before = preceding_tests(row, rows_by_unit.get(row["unit"], []))
        if before:
            out.append(build(row, unit, before, pytest_args))
    return out
