"""Repro commands: one failing execution as a plain ``python -m pytest`` line plus our options.

A row carries everything needed: the seeds (or the seed base they were derived from), the thread
count, the interpreter's hash seed and thread variables, determinism, and, through its unit and
round, the tests that ran before it. ``candidates`` gives the shortest command first (the test
alone) and then the one with the tests that preceded it in its round (fixtures, order).

Once attribution knows the cause, :func:`minimal` gives the shortest pair: the test alone (or
its polluter and it, for order), with only the option of the cause set to a value that failed,
and the counterfactual with that option at a value that passed; :func:`failed` runs a command
as a user would and says whether the test failed.
"""

from __future__ import annotations

import itertools
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from audit.flaky.sources import FAMILIES

_RUN_NUMBERS = itertools.count()


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

    @classmethod
    def parse(cls, nodeid: str, command: str) -> "Repro":
        """The repro a :meth:`command` line (as a result records it) stands for."""
        words = shlex.split(command)
        at = next(i for i in range(len(words)) if words[i:i + 3] == ["python", "-m", "pytest"])
        args = words[at + 3:]
        ids = [a for a in args if "::" in a and not a.startswith("-")]
        return cls(nodeid, dict(w.split("=", 1) for w in words[:at]), args, ids[:ids.index(nodeid)] if nodeid in ids else [])


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


def _pair_part(nodeid: str, setting: dict, pytest_args: list[str], preceding: list[str]) -> Repro:
    opts = [f"--audit-seed-{f}={v}" for f, v in sorted((setting.get("seeds") or {}).items())]
    if setting.get("threads"):
        opts.append(f"--audit-threads={setting['threads']}")
    if setting.get("deterministic"):
        opts.append(f"--audit-deterministic={setting['deterministic']}")
    if opts and setting.get("no_reruns"):
        opts.append("--force-reruns=0")
    env = {"PYTHONHASHSEED": str(setting["hashseed"])} if setting.get("hashseed") is not None else {}
    args = ["-p", "no:cacheprovider", "-p", "no:randomly", *pytest_args, *preceding, nodeid]
    return Repro(nodeid, env, args + (["--audit-enable", *opts] if opts else []), list(preceding))


def minimal(nodeid: str, failing: dict, passing: dict, pytest_args: list[str],
            polluter: list[str] | None = None) -> tuple[Repro, Repro]:
    """The repro and its counterfactual for a known cause. *failing* and *passing* are settings
    of the cause only (``seeds`` of its family, ``threads``, ``deterministic`` or ``hashseed``);
    for an order cause *polluter* lists the tests to run first and the counterfactual runs the
    test alone."""
    repro = _pair_part(nodeid, failing, pytest_args, list(polluter or []))
    counter = _pair_part(nodeid, passing, pytest_args, [])
    return repro, counter


def failed(cfg, repro: Repro, workdir: Path, *, cwd=None, timeout: float = 120.0, forks=None) -> bool | None:
    """Run *repro* as a user would (its rows recorded beside it); True when the test failed,
    False when it passed, None when it did not run (crashed before, not collected). With *forks*
    the same command line and environment run forked from a zygote with its hash seed."""
    from audit.pytest_run import PytestRun

    rows_file = Path(workdir) / f"repro-{os.getpid()}-{next(_RUN_NUMBERS)}.jsonl"   # one per run, even of one repro
    extra = [] if "--audit-enable" in repro.args else ["--audit-enable"]
    run = PytestRun(cfg, verbatim=[*repro.args, *extra, f"--audit-rows={rows_file}", "-q"], env=repro.env,
                    rows_file=rows_file, cwd=cwd, forks=forks)
    out = run.run(timeout)
    rows_file.unlink(missing_ok=True)
    mine = [r for r in out.rows if r["nodeid"] == repro.nodeid]
    return mine[0]["klass"] == "fail" if mine else None
