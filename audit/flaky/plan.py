"""The settings space of an audit and which executions to spend next (the adaptive budget).

Per-test settings (RNG seeds, thread count) vary inside one interpreter, round after round;
per-interpreter settings (hash seed, determinism, order, thread variables at start) vary
between units. The planner first measures the suite (a *survey*: every test once, the suite
split across the workers, unless the history store already knows the durations), then keeps a
tally per test and, each time a worker is free, builds the next ``Unit``:

* *fast* units hold every fast test that is still worth running, with as many rounds as pay for
  the unit's fixed cost (start-up and one round), most of them for the tests that draw fresh
  randomness;
* *slow* tests take turns in units of their own, so a few 20-second tests never starve the fast
  ones: once each has run, they wait until every fast test that draws randomness has
  DRAWING_FLOOR executions, and then take at most half the workers;
* a test whose memory would crowd the machine, and a rerun of one that hung or crashed under
  load, runs *alone* (``Unit.exclusive``): nothing else runs beside it.

A test stops getting executions once it is proven flaky, or once it has reached the target
(more of them when it draws randomness: a test that draws none only needs new interpreters and
each thread count).
"""

from __future__ import annotations

import math
import os
import random
import statistics
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
# distinct hash seeds a test must have run under (when they vary): with a fork server a new
# interpreter is cheap but a new hash seed still costs a zygote's start (audit.forkserver); 30
# seeds miss a hash-seed flake of rate 10% with chance 4%, one of rate 50% with chance 2e-9
HASHSEED_TARGET = 30
MAX_ROUNDS = 60
# executions every fast test that draws randomness gets before slow tests take more than one
# pass (coverage first, then value per second): 0 failures in 50 bound a rate below 6% (95%),
# and a 10% RNG flake is missed with chance 5e-3; a second 20 s execution proves far less
DRAWING_FLOOR = 50
MAX_IN_PROCESS = 8.0   # seconds of planned executions per unit beyond its first round
# in-process repetition per unit, relative to its fixed cost: more finds rare RNG flakes sooner,
# less buys more interpreters (hash seeds, orders, determinism)
IN_PROCESS_SHARE = 0.75
SLOW_TEST = 0.25       # seconds at least: slower tests take turns instead of joining every interpreter
SLOW_SHARE = 1 / 600   # ... and at least this share of the budget (0.25 s of a 150 s budget)
SLOW_UNIT = 15.0       # seconds of slow tests packed into one slow unit (at least the slowest one)
HEAVY_SHARE = 0.35     # a test peaking above this share of the machine's memory runs alone
QUARANTINE_UNITS = 3   # extra lone runs of a test that hung or crashed
SURVEY_SECONDS = 15.0  # a survey unit times tests for at least this long, ...
SURVEY_SHARE = 0.1     # ... or this share of the budget, then hands the rest of its chunk on
SURVEY_TRIES = 2       # survey units that may time nothing before their tests run with the fast ones
TIMEOUT_FACTOR = 5     # a test may take this many times its measured duration before it counts as hung
DURATION_WINDOW = 9    # a test's duration is the median of its last executions (and the stored one):
                       # one warm-up execution (a first import, a lazy init) does not make it slow


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


def machine_memory_mb() -> float | None:
    """Physical memory of this machine in MiB (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20
    except (ValueError, OSError, AttributeError):
        return None


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
    hashseeds: set = field(default_factory=set)
    drawing_runs: int = 0   # executions that consumed a global RNG (or used a fixture that did)
    signatures: set = field(default_factory=set)
    faults: int = 0         # hung or crashed executions
    lone_units: int = 0

    @property
    def flaky(self) -> bool:
        return self.failures > 0 and self.passes > 0

    @property
    def ran(self) -> bool:
        """Executed or skipped at least once."""
        return bool(self.executions or self.skips)

    @property
    def draws(self) -> bool:
        """Draws fresh randomness: it consumed an RNG and (once seen twice) left it in a
        different state under different seeds, so more executions can still vary it."""
        return self.drawing_runs == 1 or len(self.signatures) > 1


class Planner:
    """Builds units until every test is proven flaky or has reached its target."""

    def __init__(self, tests: list[str], axes: Axes, master_seed: int, runs: int = 0,
                 exec_target: int = EXEC_TARGET, unit_target: int = UNIT_TARGET, budget: float = 150.0,
                 durations: dict[str, float] | None = None, memory_mb: float | None = None):
        self.tests = list(tests)
        self.axes = axes
        self.rand = random.Random(master_seed)
        self.master_seed = master_seed
        self.runs = runs
        self.exec_target = runs or exec_target
        self.unit_target = runs if runs else unit_target
        self.hashseed_target = min(runs, HASHSEED_TARGET) if runs else min(unit_target, HASHSEED_TARGET)
        self.tally = {t: Tally() for t in self.tests}
        self.next_id = 0
        self.per_kind: dict[str, int] = {}   # units planned so far of each kind (their settings cycle)
        self.startup = 3.0          # seconds to start an interpreter and collect; learnt
        self.first_startup = True
        self.overhead = 0.005       # seconds pytest spends per execution besides the test
        self.test_seconds: dict[str, float] = dict(durations or {})   # measured, or from the history
        self.durations_seen: dict[str, list[float]] = {}                # the recent ones behind each
        self.budget = budget
        self.memory_mb = memory_mb if memory_mb is not None else machine_memory_mb()
        self.peak_mb: dict[str, float] = {}
        self.surveying: set[str] = set()      # tests in a survey unit still running
        self.survey_units = 0                 # survey units running
        self.survey_tries: dict[str, int] = {}
        self.turn = 0
        self.heavy_due = False
        # where hash seeds come from when they vary: a fork server's live zygotes (see
        # audit.forkserver), so that a new interpreter costs a fork; None: drawn here
        self.hashseeds = None

    # ---- learning from results --------------------------------------------------------
    def record(self, rows: list[dict], unit_seconds: float | None = None,
               startup: float | None = None, unit: Unit | None = None, missing=()) -> None:
        spent = 0.0
        if unit is not None and unit.kind == "survey":
            self.surveying.difference_update(unit.tests)
            timed = {r["nodeid"] for r in rows}
            for n in unit.tests:   # the rest of a chunk cut short goes to the next survey unit, ...
                if n in timed:
                    continue
                if not rows:       # ... unless the unit timed nothing at all (it stalled) ...
                    self.survey_tries[n] = self.survey_tries.get(n, 0) + 1
                if n in missing or self.survey_tries.get(n, 0) >= SURVEY_TRIES:   # ... or cannot time it
                    self.test_seconds.setdefault(n, 0.0)
        for row in rows:
            t = self.tally.get(row["nodeid"])
            if t is None:
                continue
            if row.get("peak_rss_mb") is not None:
                self.peak_mb[row["nodeid"]] = max(self.peak_mb.get(row["nodeid"], 0.0), row["peak_rss_mb"])
            t.units.add(row["unit"])
            if row.get("hashseed") is not None:
                t.hashseeds.add(row["hashseed"])
            spent += row.get("duration", 0.0)
            self._timed(row["nodeid"], row.get("duration", 0.0))
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

    def _timed(self, nodeid: str, seconds: float) -> None:
        """One more measured duration of *nodeid*: its estimate is the median of the recent ones,
        the stored or surveyed one counting as one of them."""
        recent = self.durations_seen.get(nodeid)
        if recent is None:
            prior = self.test_seconds.get(nodeid)
            recent = self.durations_seen[nodeid] = [] if prior is None else [prior]
        recent.append(seconds)
        del recent[:-DURATION_WINDOW]
        self.test_seconds[nodeid] = statistics.median(recent)

    # ---- deciding ---------------------------------------------------------------------
    def satisfied(self, nodeid: str) -> bool:
        t = self.tally[nodeid]
        if t.flaky:
            return True
        if t.skips and not t.executions:
            return len(t.units) >= 1
        if t.faults:
            return t.lone_units >= QUARANTINE_UNITS or t.executions >= self.exec_target
        if self.hashseeds is not None and self.axes.hashseed and len(t.hashseeds) < self.hashseed_target:
            return False   # with forked units the hash seed is the one costly axis: counted apart
        if self.runs:
            return t.executions >= self.runs
        enough_units = len(t.units) >= self.unit_target
        return enough_units and (not t.draws or t.executions >= self.exec_target)

    def pending(self) -> list[str]:
        return [n for n in self.tests if not self.satisfied(n)]

    def next_unit(self, seconds_left: float, workers: int = 1, running=()) -> Unit | None:
        """The next unit to run beside *running* ones, or None when nothing is worth starting
        in *seconds_left* (or, while others run, nothing may start beside them yet)."""
        if seconds_left < self.startup + 0.5:
            return None
        pending = [n for n in self.pending() if n not in self.surveying]
        if not pending or any(u.exclusive for u in running):
            return None
        faulted = [n for n in pending if self.tally[n].faults]
        if faulted:   # hung or crashed: rerun alone with the whole machine before it counts
            if running:
                return None
            self.tally[faulted[0]].lone_units += 1
            return self._alone(faulted[0], seconds_left)
        unmeasured = [n for n in pending if n not in self.test_seconds]
        if unmeasured:
            return self._survey(unmeasured, workers, running, seconds_left)
        heavy = [n for n in pending if self.heavy(n)]
        if heavy and self.heavy_due:
            if running:
                return None     # let the running units finish: it needs the memory to itself
            self.heavy_due = False
            return self._alone(min(heavy, key=lambda n: (self.tally[n].executions, n)), seconds_left)
        slow = [n for n in pending if self.slow(n) and n not in heavy]
        fast = [n for n in pending if not self.slow(n) and n not in heavy]
        slow_running = sum(1 for u in running if u.kind == "slow")
        # coverage first: once every fast test has run, slow tests that never ran get every worker
        never_ran = [n for n in slow if not self.tally[n].ran]
        fast_ran = all(self.tally[n].ran for n in fast)
        shared = not self.starved(fast) and slow_running < max(1, workers // 2) and (workers > 1 or self.turn % 2 == 1)
        slow_turn = (slow or heavy) and (not fast or (never_ran and fast_ran) or shared)
        self.turn += 1
        if slow_turn and heavy and (not slow or self.turn % 4 == 0):
            self.heavy_due = True
            return None if running else self.next_unit(seconds_left, workers, running)
        busy = {n for u in running for n in u.tests}
        if slow_turn and slow:
            return self._slow_unit(slow, seconds_left, busy)
        if fast:
            rounds, caps = self._allocate(fast, seconds_left, workers)
            return self._unit(fast, rounds=rounds, seconds_left=seconds_left, caps=caps)
        return self._slow_unit(slow, seconds_left, busy) if slow else None

    def _alone(self, nodeid: str, seconds_left: float) -> Unit:
        return self._unit([nodeid], rounds=1, seconds_left=seconds_left, caps={nodeid: 1}, kind="alone",
                          exclusive=True)

    @property
    def drawing_floor(self) -> int:
        """DRAWING_FLOOR, or the executions target when that is lower (``runs``)."""
        return min(DRAWING_FLOOR, self.exec_target)

    def starved(self, fast: list[str] | None = None) -> list[str]:
        """Fast tests (of *fast*, or of every pending one) that draw randomness and are short
        of ``drawing_floor`` executions."""
        if fast is None:
            fast = [n for n in self.pending() if not self.slow(n) and not self.heavy(n)]
        return [n for n in fast if self.tally[n].draws and self.tally[n].executions < self.drawing_floor]

    def allowance(self, first_round: float) -> float:
        """Seconds of a fast unit's repetitions beyond its first round: a share of what the unit
        costs anyway (start-up and that round), at least a second, at most MAX_IN_PROCESS."""
        return min(max(IN_PROCESS_SHARE * (self.startup + first_round), 1.0), MAX_IN_PROCESS)

    def slow_threshold(self) -> float:
        return max(SLOW_TEST, SLOW_SHARE * self.budget)

    def slow(self, nodeid: str) -> bool:
        return self.test_seconds.get(nodeid, 0.0) >= self.slow_threshold()

    def heavy(self, nodeid: str) -> bool:
        """Its peak memory alone would take a large share of the machine."""
        return bool(self.memory_mb) and self.peak_mb.get(nodeid, 0.0) > HEAVY_SHARE * self.memory_mb

    def _survey(self, unmeasured: list[str], workers: int, running, seconds_left: float) -> Unit:
        """Every test timed: the untimed tests split into contiguous chunks among the workers not
        surveying yet (modules stay together, so their fixtures are built once). A chunk stops
        after SURVEY_SECONDS; what it left goes to the next survey unit."""
        free = max(1, workers - sum(1 for u in running if u.kind == "survey"))
        chunk = unmeasured[:math.ceil(len(unmeasured) / free)]
        self.surveying.update(chunk)
        # two rounds when the chunk is quick: both thread counts, and whether its draws vary with the seed
        unit = self._unit(chunk, rounds=2, seconds_left=seconds_left, caps={n: 2 for n in chunk}, kind="survey",
                          order="file")
        unit.max_seconds = max(1.0, min(seconds_left - self.startup - 1.0,
                                         max(SURVEY_SECONDS, SURVEY_SHARE * self.budget)))
        return unit

    def _slow_unit(self, slow: list[str], seconds_left: float, busy=frozenset()) -> Unit:
        """Slow tests, least sampled first (those not running in another unit before those that
        are), one execution each, up to SLOW_UNIT seconds."""
        ordered = sorted(slow, key=lambda n: (n in busy, len(self.tally[n].units), self.tally[n].executions, n))
        room = max(SLOW_UNIT, max(self.test_seconds[n] for n in ordered))
        chosen = []
        for n in ordered:
            if chosen and self.test_seconds[n] > room:
                break
            chosen.append(n)
            room -= self.test_seconds[n]
        chosen = [n for n in slow if n in chosen]   # in suite order
        return self._unit(chosen, rounds=1, seconds_left=seconds_left, caps={n: 1 for n in chosen}, kind="slow")

    def timeout_for(self, unit: Unit, floor: float) -> float:
        """Seconds one execution of *unit*'s tests may take: *floor*, or TIMEOUT_FACTOR times
        the slowest measured duration among them."""
        measured = [self.test_seconds.get(n, 0.0) for n in unit.tests]
        return max(floor, TIMEOUT_FACTOR * max(measured, default=0.0))

    def _allocate(self, tests: list[str], seconds_left: float, workers: int) -> tuple[int, dict]:
        """Executions per test for the next unit, as (rounds, caps).

        Every test runs once per thread count. Tests that draw fresh randomness then get more,
        always to the one with the fewest executions so far (weighing slow tests by their
        cost), for the time ``allowance`` gives the unit; no test gets more than the remaining
        units need.
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
        allowance = self.allowance(sum(cost[n] * floor for n in tests))
        if self.exec_target and drawing:
            need = {n: self.exec_target - self.tally[n].executions for n in drawing}
            # do not plan beyond what the remaining units can reach anyway
            units_left = max(1.0, workers * seconds_left / (self.startup + spent + allowance))
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

    def _unit(self, tests: list[str], rounds: int, seconds_left: float, caps: dict | None = None,
              kind: str = "fast", exclusive: bool = False, order: str | None = None) -> Unit:
        k = self.next_id
        self.next_id += 1
        axes, rand = self.axes, self.rand
        # settings cycle per kind of unit, full-factorially: with fast and slow units interleaved a
        # count over all units would give every fast unit the same parity (threads, determinism)
        j = self.per_kind.get(kind, 0)
        self.per_kind[kind] = j + 1
        threads = axes.threads
        d = 2 if axes.determinism else 1
        t = j // d % len(threads)
        order = order or axes.orders[j // (d * len(threads)) % len(axes.orders)]
        ordered = list(tests)
        if order == "reversed":
            ordered.reverse()
        elif order == "shuffle":
            shuffle_seed = rand.randrange(2 ** 32)
            random.Random(shuffle_seed).shuffle(ordered)
            order = f"shuffle:{shuffle_seed}"
        hashseed = str(rand.randrange(2 ** 32)) if axes.hashseed else "0"
        if axes.hashseed and self.hashseeds is not None:
            short = [self.tally[n].hashseeds for n in tests if len(self.tally[n].hashseeds) < self.hashseed_target]
            hashseed = self.hashseeds(set.intersection(*short) if short else set()) or hashseed
        return Unit(
            id=k, tests=ordered, order=order,
            hashseed=hashseed,
            deterministic=("on" if j % 2 else "off") if axes.determinism else None,
            seeds={f: ("fresh" if f in axes.rng else 0) for f in FAMILIES},
            seed_base=rand.randrange(2 ** 32),
            rounds=rounds, threads=threads, thread_offset=t,
            env_threads=threads[t] if len(threads) > 1 else None,
            runs_without_draws=1,
            max_runs_per_test=rounds, caps=caps or {},
            max_seconds=max(1.0, min(seconds_left - self.startup - 1.0,
                                     4 * self.startup + 3 * self._planned(tests, caps))),
            cuda=axes.cuda, kind=kind, exclusive=exclusive,
        )

    def _planned(self, tests: list[str], caps: dict | None) -> float:
        return sum(self.test_seconds.get(n, 0.05) * (caps or {}).get(n, 1) for n in tests)

    # ---- what the budget can reach -----------------------------------------------------
    def describe(self, seconds_left: float, workers: int) -> dict:
        """The plan once every test's duration is known: the suite's pass time, how its tests
        divide into fast, slow and alone, and about how many executions each kind will have had
        (the fewest so far, plus what the time left gives), with the failure rate a clean record
        of that many would bound."""
        heavy = [n for n in self.tests if self.heavy(n)]
        slow = [n for n in self.tests if self.slow(n) and n not in heavy]
        fast = [n for n in self.tests if n not in slow and n not in heavy]
        worker_seconds = max(0.0, seconds_left) * max(1, workers)
        if not (slow or heavy):
            slow_share = 0.0
        elif not fast:
            slow_share = 1.0
        else:
            slow_share = max(1, workers // 2) / workers if workers > 1 else 0.5
        slow_pass = sum(self.test_seconds[n] for n in slow + heavy)
        slow_units = max(1, math.ceil(slow_pass / SLOW_UNIT)) + len(heavy)
        slow_cost = slow_pass + slow_units * self.startup     # worker seconds of one pass of them
        cost = {n: self.test_seconds[n] + self.overhead for n in fast}
        drawing = [n for n in fast if self.tally[n].draws]
        allowance = self.allowance(sum(cost.values()))
        unit_cost = self.startup + sum(cost.values()) + allowance
        per_unit = min(1 + allowance / max(sum(cost[n] for n in drawing), 1e-3), MAX_ROUNDS) if drawing else 1

        def had(tests):
            return min((self.tally[n].executions for n in tests), default=0)

        # coverage first: a slow test that has not run gets its pass; then the fast tests get
        # every worker until those that draw reach the floor; then the two share the workers
        slow_runs = 0
        if slow_pass and any(not self.tally[n].ran for n in slow + heavy):
            worker_seconds = max(0.0, worker_seconds - slow_cost)
            slow_runs = 1
        fast_units = 0.0
        if drawing:
            short = max(0, self.drawing_floor - had(drawing))
            first = min(worker_seconds / unit_cost, math.ceil(short / per_unit))
            fast_units, worker_seconds = first, worker_seconds - first * unit_cost
        if slow_pass:
            slow_runs += int(worker_seconds * slow_share / slow_cost)
        if fast:
            fast_units += worker_seconds * (1 - slow_share) / unit_cost
        fast_runs = min(int(fast_units), self.unit_target)
        drawing_runs = min(int(fast_units * per_unit) + had(drawing), self.exec_target)

        def kind(tests, runs):
            runs = runs + had(tests) if tests else 0
            return {"tests": len(tests), "seconds": round(sum(self.test_seconds[n] for n in tests), 2),
                    "executions_each": runs, "rate_bound": round(upper_bound_no_failures(runs), 4)}

        return {"pass_seconds": round(sum(self.test_seconds[n] for n in self.tests), 2),
                "seconds_left": round(max(0.0, seconds_left), 1), "workers": workers,
                "slow_threshold": round(self.slow_threshold(), 3), "startup": round(self.startup, 2),
                "fast": {**kind(fast, fast_runs), "drawing": len(drawing), "drawing_executions_each": drawing_runs,
                         "drawing_rate_bound": round(upper_bound_no_failures(drawing_runs), 4)},
                "slow": kind(slow, slow_runs), "alone": kind(heavy, slow_runs)}

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
        seeds = f" ({len(t.hashseeds)} hash seeds)" if self.axes.hashseed and len(t.hashseeds) < len(t.units) else ""
        return (f"0 failures in {t.executions} executions over {len(t.units)} interpreters{seeds}: "
                f"rate < {bound:.1%} (95%)")
