"""The settings space of an audit and which executions to spend next (the adaptive budget).

Per-test settings (RNG seeds, thread count) vary inside one interpreter, round after round;
per-interpreter settings (hash seed, determinism, order, thread variables at start) vary
between units. The planner keeps a tally per test and, each time a worker is free, builds the
next ``Unit``: the tests still worth running, and as many rounds as pay for the interpreter's
start-up. A test stops getting executions once it is proven flaky, or once it has reached the
target (more of them when it draws randomness: a test that draws none only needs new
interpreters and each thread count).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field

from audit.errors import AuditError
from audit.flaky.runner import Unit
from audit.flaky.sources import FAMILIES
from audit.stats import upper_bound_no_failures

ORDERS = ("file", "reversed", "shuffle")

# Targets a test must reach before the audit stops spending on it (the budget usually ends
# the audit first): 0 failures in 300 executions bounds a rate below 1% (95%), and a flake of
# rate 5% is missed with chance 2e-7; 100 interpreters bound a hash-seed/order flake below 3%.
EXEC_TARGET = 300
UNIT_TARGET = 100
MAX_ROUNDS = 60
MAX_IN_PROCESS = 8.0   # seconds of planned executions per unit beyond its first round
# in-process repetition per unit, relative to its start-up: more finds rare RNG flakes sooner,
# less buys more interpreters (hash seeds, orders, determinism)
IN_PROCESS_SHARE = 0.75
SLOW_TEST = 0.25       # seconds: slower tests take turns instead of joining every interpreter
QUARANTINE_UNITS = 3   # extra lone runs of a test that hung or crashed


@dataclass
class Axes:
    """What an audit varies, resolved from ``cfg.flaky`` and the machine."""

    rng: list[str]
    hashseed: bool
    threads: list[int]
    default_threads: int
    orders: list[str]
    determinism: bool
    cuda: bool

    @classmethod
    def from_config(cls, flaky) -> "Axes":
        bad = [f for f in flaky.rng if f not in FAMILIES]
        if bad:
            raise AuditError(f"unknown RNG family {', '.join(bad)} (known: {', '.join(FAMILIES)})")
        bad = [o for o in flaky.orders if o not in ORDERS]
        if bad:
            raise AuditError(f"unknown test order {', '.join(bad)} (known: {', '.join(ORDERS)})")
        if any(t < 1 for t in flaky.threads):
            raise AuditError("thread counts must be at least 1")
        default = default_threads()
        threads = sorted(set(flaky.threads)) if flaky.threads else sorted({1, 2, default})
        return cls(rng=[f for f in FAMILIES if f in flaky.rng], hashseed=flaky.hashseed,
                   threads=threads, default_threads=default,
                   orders=list(dict.fromkeys(flaky.orders)) or ["file"],
                   determinism=flaky.determinism, cuda=cuda_present())

    def describe(self) -> dict:
        """The settings block of the JSON report: what was varied and what was not."""
        return {
            "rng_varied": self.rng,
            "rng_pinned": [f for f in FAMILIES if f not in self.rng],
            "hashseed": "varied per interpreter" if self.hashseed else "pinned to 0",
            "threads": self.threads, "default_threads": self.default_threads,
            "orders": self.orders,
            "determinism": ["off", "on"] if self.determinism else "not varied",
            "cuda": ("cuDNN benchmark/deterministic and CUBLAS_WORKSPACE_CONFIG varied with determinism"
                     if self.cuda and self.determinism else
                     "not varied: no CUDA device" if not self.cuda else "not varied"),
        }


def default_threads() -> int:
    """torch's default intra-op thread count here (the physical cores it sees)."""
    try:
        import torch
        return int(torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch is a dependency
        return os.cpu_count() or 1


def cuda_present() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


@dataclass
class Tally:
    """What is known about one test so far."""

    executions: int = 0
    failures: int = 0
    passes: int = 0
    skips: int = 0
    units: set = field(default_factory=set)
    drawing_runs: int = 0   # executions that consumed a global RNG (or used a fixture that did)
    signatures: set = field(default_factory=set)
    faults: int = 0         # hung or crashed executions
    lone_units: int = 0

    @property
    def flaky(self) -> bool:
        return self.failures > 0 and self.passes > 0

    @property
    def draws(self) -> bool:
        """Draws fresh randomness: it consumed an RNG and (once seen twice) left it in a
        different state under different seeds, so more executions can still vary it."""
        return self.drawing_runs == 1 or len(self.signatures) > 1


class Planner:
    """Builds units until every test is proven flaky or has reached its target."""

    def __init__(self, tests: list[str], axes: Axes, master_seed: int, runs: int = 0,
                 exec_target: int = EXEC_TARGET, unit_target: int = UNIT_TARGET):
        self.tests = list(tests)
        self.axes = axes
        self.rand = random.Random(master_seed)
        self.master_seed = master_seed
        self.runs = runs
        self.exec_target = runs or exec_target
        self.unit_target = runs if runs else unit_target
        self.tally = {t: Tally() for t in self.tests}
        self.next_id = 0
        self.startup = 3.0          # seconds to start an interpreter and collect; learnt
        self.first_startup = True
        self.overhead = 0.005       # seconds pytest spends per execution besides the test
        self.test_seconds: dict[str, float] = {}

    # ---- learning from results --------------------------------------------------------
    def record(self, rows: list[dict], unit_seconds: float | None = None,
               startup: float | None = None) -> None:
        spent = 0.0
        for row in rows:
            t = self.tally.get(row["nodeid"])
            if t is None:
                continue
            t.units.add(row["unit"])
            spent += row.get("duration", 0.0)
            prev = self.test_seconds.get(row["nodeid"])
            d = row.get("duration", 0.0)
            self.test_seconds[row["nodeid"]] = d if prev is None else 0.8 * prev + 0.2 * d
            if row["klass"] == "skip":
                t.skips += 1
                continue
            t.executions += 1
            if row["klass"] == "fail":
                t.failures += 1
            else:
                t.passes += 1
            if row.get("drew_any"):
                t.drawing_runs += 1
                t.signatures.add(tuple(tuple(x) for x in row.get("signature", [])))
            if row["outcome"] in ("timeout", "crashed"):
                t.faults += 1
        if startup is not None:
            self.startup = startup if self.first_startup else 0.7 * self.startup + 0.3 * startup
            self.first_startup = False
            if unit_seconds is not None and rows:
                # what pytest spends around each execution besides the test itself
                per_exec = max(0.0, unit_seconds - startup - spent) / len(rows)
                self.overhead = 0.7 * self.overhead + 0.3 * min(per_exec, 0.5)

    # ---- deciding ---------------------------------------------------------------------
    def satisfied(self, nodeid: str) -> bool:
        t = self.tally[nodeid]
        if t.flaky:
            return True
        if t.skips and not t.executions:
            return len(t.units) >= 1
        if t.faults:
            return t.lone_units >= QUARANTINE_UNITS or t.executions >= self.exec_target
        if self.runs:
            return t.executions >= self.runs
        enough_units = len(t.units) >= self.unit_target
        return enough_units and (not t.draws or t.executions >= self.exec_target)

    def pending(self) -> list[str]:
        return [n for n in self.tests if not self.satisfied(n)]

    def next_unit(self, seconds_left: float, workers: int = 1) -> Unit | None:
        """The next unit to run, or None when nothing is worth starting in *seconds_left*."""
        if seconds_left < self.startup + 0.5:
            return None
        pending = self.pending()
        if not pending:
            return None
        lone = [n for n in pending if self.tally[n].faults]
        if lone:
            nodeid = lone[0]
            self.tally[nodeid].lone_units += 1
            return self._unit([nodeid], rounds=1, seconds_left=seconds_left)
        chosen = self._choose(pending)
        rounds, caps = self._allocate(chosen, seconds_left, workers)
        return self._unit(chosen, rounds=rounds, seconds_left=seconds_left, caps=caps)

    def _choose(self, pending: list[str]) -> list[str]:
        """Every cheap pending test, and the slow ones that fit, least sampled first: a slow
        test then sits out some interpreters instead of making every one of them slow."""
        cheap = [n for n in pending if self.test_seconds.get(n, 0.0) < SLOW_TEST]
        slow = sorted((n for n in pending if n not in cheap),
                      key=lambda n: (len(self.tally[n].units), n))
        room = max(0.3 * self.startup, 0.5)
        chosen = set(cheap)
        for n in slow:
            if room <= 0:
                break
            chosen.add(n)
            room -= self.test_seconds[n]
        return [n for n in pending if n in chosen]

    def _allocate(self, tests: list[str], seconds_left: float, workers: int) -> tuple[int, dict]:
        """Executions per test for the next unit, as (rounds, caps).

        Every test runs once per thread count. Tests that draw fresh randomness then get more,
        always to the one with the fewest executions so far (weighing slow tests by their
        cost), until the unit's in-process time reaches IN_PROCESS_SHARE of its start-up time
        (at most MAX_IN_PROCESS seconds); no test gets more than the remaining units need.
        """
        floor = 1   # thread counts then alternate between interpreters (thread_offset)
        caps = {n: floor for n in tests}
        cost = {n: self.test_seconds.get(n, 0.05) + self.overhead for n in tests}
        spent = sum(cost[n] * floor for n in tests)
        for n in tests:
            if not self.tally[n].executions:
                caps[n] = 2   # a second execution shows whether its draws vary with the seed
        spent = sum(cost[n] * caps[n] for n in tests)
        drawing = [n for n in tests if self.tally[n].draws and self.tally[n].executions]
        allowance = min(max(IN_PROCESS_SHARE * self.startup, 1.0), MAX_IN_PROCESS)
        if self.exec_target and drawing:
            need = {n: self.exec_target - self.tally[n].executions for n in drawing}
            # do not plan beyond what the remaining units can reach anyway
            units_left = max(1.0, workers * seconds_left / (self.startup + allowance))
            # no test may take more than twice its fair share of the unit's time
            fair = 2 * allowance / len(drawing)
            want = {n: max(floor, min(need[n], math.ceil(need[n] / units_left) * 2,
                                      caps[n] + int(fair / cost[n]))) for n in drawing}
            progress = {n: self.tally[n].executions + floor for n in drawing}
            first_round = spent
            while spent - first_round < allowance:
                open_ = [n for n in drawing if caps[n] < want[n] and caps[n] < MAX_ROUNDS]
                if not open_:
                    break
                n = min(open_, key=lambda m: (progress[m] * cost[m] ** 0.5, m))
                caps[n] += 1
                progress[n] += 1
                spent += cost[n]
        return max(caps.values()), caps

    def _unit(self, tests: list[str], rounds: int, seconds_left: float, caps: dict | None = None) -> Unit:
        k = self.next_id
        self.next_id += 1
        axes, rand = self.axes, self.rand
        order = axes.orders[(k // (2 if axes.determinism else 1)) % len(axes.orders)]
        ordered = list(tests)
        if order == "reversed":
            ordered.reverse()
        elif order == "shuffle":
            shuffle_seed = rand.randrange(2 ** 32)
            random.Random(shuffle_seed).shuffle(ordered)
            order = f"shuffle:{shuffle_seed}"
        threads = axes.threads
        return Unit(
            id=k, tests=ordered, order=order,
            hashseed=str(rand.randrange(2 ** 32)) if axes.hashseed else "0",
            deterministic=("on" if k % 2 else "off") if axes.determinism else None,
            seeds={f: ("fresh" if f in axes.rng else 0) for f in FAMILIES},
            seed_base=rand.randrange(2 ** 32),
            rounds=rounds, threads=threads, thread_offset=k % len(threads),
            env_threads=threads[k % len(threads)] if len(threads) > 1 else None,
            runs_without_draws=1,
            max_runs_per_test=rounds, caps=caps or {},
            max_seconds=max(1.0, min(seconds_left - self.startup - 1.0,
                                     4 * self.startup + 3 * self._planned(tests, caps))),
            cuda=axes.cuda,
        )

    def _planned(self, tests: list[str], caps: dict | None) -> float:
        return sum(self.test_seconds.get(n, 0.05) * (caps or {}).get(n, 1) for n in tests)

    # ---- what was reached -------------------------------------------------------------
    def confidence(self, nodeid: str) -> str:
        t = self.tally[nodeid]
        if t.flaky:
            return "proven flaky"
        if not t.executions:
            return "not run"
        bound = upper_bound_no_failures(t.executions)
        if t.failures == t.executions:
            return f"failed {t.failures}/{t.executions} in {len(t.units)} interpreters"
        return (f"0 failures in {t.executions} executions over {len(t.units)} interpreters: "
                f"rate < {bound:.1%} (95%)")
