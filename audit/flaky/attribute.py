"""Why a flaky test is flaky: one-factor experiments, the polluter search, and the causes.

After detection, each flaky test is run from a baseline where every source is pinned (RNG
seeds, hash seed, thread count, determinism off, file order), then with one source released
at a time; each released failure rate is compared with the baseline by Fisher's exact test.
Cheap in-process sources go first (many rounds per interpreter), then the hash seed (one
interpreter per value), then test order (whole-suite interpreters in other orders). A source
stops getting executions as soon as it is clearly significant or clearly not worth more, and
a test stops once a source explains it. The winner is confirmed the other way round: with only
it pinned and the rest released, the failures must vanish. For order, delta debugging over the
tests that ran before the victim finds the polluter, and a probe plugin (audit.flaky.statediff)
says what state it leaves. Causes are built by audit.flaky.hints with the trace's draw sites.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from audit.errors import AuditError
from audit.flaky import callgraph, sources, statediff
from audit.flaky.hints import make_cause
from audit.flaky.plan import Axes
from audit.flaky.runner import Pool, Unit, run_unit
from audit.flaky.tracing import hygiene_list, trace_tests
from audit.project import pytest_command, pytest_env
from audit.stats import fisher_exact, upper_bound_no_failures

RNG = sources.FAMILIES
IN_PROCESS = sources.names(scope=sources.IN_PROCESS)
SIGNIFICANT = 1e-3          # p below this: the source clearly changes the outcome
NOT_WORTH = 0.03            # 0 failures and a 95% bound below this: stop releasing the source
PIN_SEEDS = (1234, 20261122, 777, 31337)      # tried in turn until a test passes pinned
PIN_HASHSEEDS = ("1", "2", "3", "4")
BASE_ROUNDS = 40            # pinned executions per test and chunk
CHUNKS = (60, 100, 240)     # released executions of an RNG family per test and chunk (the last: only
                            # for a family that made it fail without reaching significance yet)
FIXED_ROUNDS = 12           # executions of a fixed setting (thread counts cycled, determinism on)
HASH_INTERPRETERS = (4, 6, 10)  # new hash seeds tried per test and batch (the last: as for CHUNKS)
ORDER_INTERPRETERS = (3, 4, 6)  # reversed + shuffled whole-suite orders per batch (the last: as for CHUNKS)
CONFIRM_ROUNDS = 30


class Attribution(dict):
    """Node id -> causes (issue 4's dicts), plus what the lead puts beside them in the JSON."""

    def __init__(self, causes=(), *, rng_graph=None, rng_hygiene=None, seconds=0.0, executions=0,
                 interpreters=0):
        super().__init__(causes)
        self.rng_graph = rng_graph or {}
        self.rng_hygiene = rng_hygiene or []
        self.seconds = seconds
        self.executions = executions
        self.interpreters = interpreters


@dataclass
class _Case:
    """What the experiments found so far for one flaky test."""

    nodeid: str
    pin: int | None = None                         # index into PIN_SEEDS/PIN_HASHSEEDS once found
    base: list = field(default_factory=lambda: [0, 0])               # pinned failures, executions
    released: dict = field(default_factory=dict)   # source -> [failures, executions]
    done: set = field(default_factory=set)         # sources decided (either way)
    digests: list = field(default_factory=list)    # failure digests under threads
    failing_order: list | None = None              # the tests of an order in which it failed
    polluter: str | None = None
    state: str | None = None
    confirmation: str = ""
    pinned_tries: list = field(default_factory=list)
    chunks: dict = field(default_factory=dict)     # source -> chunks of released rounds run

    def p(self, source: str) -> float:
        f, n = self.released.get(source, (0, 0))
        return fisher_exact(f, n - f, self.base[0], self.base[1] - self.base[0])

    def significant(self) -> list[str]:
        found = [s for s in self.released if self.released[s][0] and self.p(s) < SIGNIFICANT]
        return sorted(found, key=lambda s: (self.p(s), s))


def _nodeids(result) -> tuple[list[str], list[str]]:
    """(every test, the flaky ones) of a FlakyResult or its JSON dict, in collection order."""
    tests = result["tests"] if isinstance(result, dict) else result.tests
    rows = [t if isinstance(t, dict) else {"nodeid": t.nodeid, "verdict": t.verdict} for t in tests]
    return [t["nodeid"] for t in rows], [t["nodeid"] for t in rows if t["verdict"] == "flaky"]


def _failed(row: dict) -> bool:
    """A failing execution, counting one pytest-rerunfailures retried (masked)."""
    return row["klass"] == "fail" or bool(row.get("masked"))


class _Lab:
    """Runs units two (or *workers*) at a time and keeps the clock and the counters."""

    def __init__(self, cfg, workers: int, deadline: float, seed: int, progress):
        self.cfg = cfg
        self.workers = workers
        self.deadline = deadline
        self.rand = random.Random(seed)
        self.progress = progress or (lambda **kw: None)
        self.workdir = Path(tempfile.mkdtemp(prefix="ml-audit-attribute-"))
        self.timeout = float(cfg.flaky.timeout)
        self.next_id = 0
        self.executions = 0
        self.interpreters = 0
        axes = Axes.from_config(cfg.flaky)
        self.default_threads = axes.default_threads
        self.threads = axes.threads if len(axes.threads) > 1 else sorted({1, 2, axes.default_threads})
        self.plugins_off: list[str] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def unit(self, tests, *, pin: int, rounds: int = 1, release=(), order="file",
             hashseed: str | None = None, deterministic: str = "off", threads=None) -> Unit:
        """A unit with every source pinned at candidate *pin* except those in *release*."""
        seed = PIN_SEEDS[pin]
        if threads is None:
            threads = self.threads if "threads" in release else [self.default_threads]
        self.next_id += 1
        unit = Unit(id=self.next_id, tests=list(tests), order=order,
                    hashseed=hashseed or PIN_HASHSEEDS[pin],
                    deterministic="on" if "determinism" in release else deterministic,
                    seeds={f: ("fresh" if f in release else seed) for f in RNG},
                    seed_base=self.rand.randrange(2 ** 32), rounds=rounds, threads=list(threads),
                    env_threads=threads[0] if len(threads) == 1 else None,
                    runs_without_draws=rounds, max_runs_per_test=rounds, stop_when_flaky=False,
                    max_seconds=max(1.0, self.left()), plugins_off=list(self.plugins_off))
        return unit

    def run(self, jobs: list) -> list:
        """Run *jobs* (units, or callables for other work) in parallel; results in job order."""
        results: dict[int, object] = {}
        queue = list(enumerate(jobs))
        pool = Pool(self.workers)

        def next_job():
            if not queue:
                return None
            i, job = queue.pop(0)
            if isinstance(job, Unit):
                return _Job(i, lambda: run_unit(self.cfg, job, self.timeout, self.workdir, pool.stop, pool.procs))
            return _Job(i, job)

        def on_result(job, value):
            results[job.index] = value
            if hasattr(value, "rows"):
                self.interpreters += 1
                self.executions += len(value.rows)

        pool.run(next_job, on_result)
        return [results.get(i) for i in range(len(jobs))]


@dataclass
class _Job:
    """One job for the Pool, remembering its place in the batch."""

    index: int
    work: object

    def __call__(self):
        return self.work()


def _rows_of(res, nodeid: str) -> list[dict]:
    return [r for r in (res.rows if res is not None else []) if r["nodeid"] == nodeid and r["klass"] != "skip"]


def _count(res, nodeid: str) -> tuple[int, int]:
    rows = _rows_of(res, nodeid)
    return sum(_failed(r) for r in rows), len(rows)


def _check_unit(res) -> None:
    if res is not None and res.returncode not in (0, 1) and not res.rows and not res.interrupted:
        raise AuditError(f"pytest could not run the tests for attribution (exit {res.returncode}):\n"
                         f"{res.log_tail[-1500:]}")


# ---------------------------------------------------------------- the experiments

def _find_pins(lab: _Lab, cases: dict[str, _Case], trace_job, everything: list[str]) -> dict:
    """A pinned setting each test passes under (a seed can happen to fail): candidates in turn.
    The first candidate's wave also runs the first released chunks, betting that most tests pass
    pinned there, and the trace."""
    records = {}
    todo = list(cases)
    for pin in range(len(PIN_SEEDS)):
        if not todo or lab.left() < 10:
            break
        jobs, keys = [lab.unit(todo, pin=pin, rounds=BASE_ROUNDS)], [None]
        if pin == 0:
            more, more_keys = _in_process_jobs(lab, cases, everything, assume_pin=0)
            jobs += more + [trace_job]
            keys += more_keys + [None]
        out = lab.run(jobs)
        _check_unit(out[0])
        if pin == 0:
            records = out[-1] or {}
        still = []
        for nodeid in todo:
            f, n = _count(out[0], nodeid)
            case = cases[nodeid]
            case.pinned_tries.append(f"seeds {PIN_SEEDS[pin]}, hash seed {PIN_HASHSEEDS[pin]}: {f}/{n} failed")
            if n and f == 0:
                case.pin, case.base = pin, [0, n]
            else:
                still.append(nodeid)
        todo = still
        if pin == 0:
            _tally(cases, keys[1:-1], out[1:-1])
            for nodeid in still:   # their first chunks ran under a failing pin: start again
                cases[nodeid].chunks.clear()
        lab.progress(phase="baseline", pinned=len(cases) - len(todo), tests=len(cases))
    return records


def _in_process_jobs(lab: _Lab, cases: dict[str, _Case], everything: list[str], assume_pin=None):
    """The next chunk of every in-process source still open, per pin group: released units, a
    pinned unit to grow the baseline beside them, and confirmations of new winners."""
    jobs, keys = [], []
    groups: dict[tuple, list[_Case]] = {}
    for case in cases.values():
        pin = case.pin if assume_pin is None else assume_pin
        if pin is None or case.significant():
            continue
        for source in IN_PROCESS:
            k = case.chunks.get(source, 0)
            fixed = source in ("threads", "determinism")
            if source in case.done or (fixed and k) or k >= len(CHUNKS):
                continue
            if k == len(CHUNKS) - 1 and not case.released.get(source, (0, 0))[0]:
                continue   # the last chunk only for a source that made it fail
            groups.setdefault((pin, source, k), []).append(case)
    pinned: dict[int, set] = {}
    for (pin, source, k), group in sorted(groups.items()):
        fixed = source in ("threads", "determinism")
        rounds = max(FIXED_ROUNDS, 3 * len(lab.threads)) if fixed else CHUNKS[k]
        jobs.append(lab.unit([c.nodeid for c in group], pin=pin, rounds=rounds, release=(source,)))
        keys.append((pin, source, group))
        for case in group:
            case.chunks[source] = k + 1
            if case.base[1] and case.base[1] < 3 * BASE_ROUNDS:
                pinned.setdefault(pin, set()).add(case.nodeid)
    for pin, tests in sorted(pinned.items()):
        jobs.append(lab.unit(sorted(tests, key=everything.index), pin=pin, rounds=BASE_ROUNDS))
        keys.append((pin, "pinned", [cases[t] for t in tests]))
    if assume_pin is None:
        more, groups_ = _confirm_jobs(lab, cases, everything)
        jobs += more
        keys += [(None, "confirm", g) for g in groups_]
    return jobs, keys


def _tally(cases: dict[str, _Case], keys: list, results: list) -> None:
    """Add a wave's counts to the cases, then close the sources that are decided."""
    for (pin, source, group), res in zip(keys, results):
        _check_unit(res)
        if source == "confirm":
            _confirmed(group, res)
            continue
        for case in group:
            if case.pin != pin:
                continue   # it turned out to fail pinned at this candidate
            f, n = _count(res, case.nodeid)
            if not n:
                continue
            if source == "pinned":
                case.base[0] += f
                case.base[1] += n
                continue
            tally = case.released.setdefault(source, [0, 0])
            tally[0] += f
            tally[1] += n
            if source == "threads":
                case.digests += [r["digest"] for r in _rows_of(res, case.nodeid) if _failed(r)]
    for case in cases.values():
        for source in IN_PROCESS:
            f, n = case.released.get(source, (0, 0))
            if n and ((f and case.p(source) < SIGNIFICANT) or source in ("threads", "determinism")
                      or (f == 0 and upper_bound_no_failures(n) < NOT_WORTH)):
                case.done.add(source)


def _in_process(lab: _Lab, cases: dict[str, _Case], everything: list[str]) -> None:
    """Release each RNG family, the thread count and determinism, in rounds inside interpreters,
    chunk after chunk until each is decided (or its chunks are spent)."""
    wave = 0
    while lab.left() > 15:
        jobs, keys = _in_process_jobs(lab, cases, everything)
        if not any(k[1] not in ("confirm", "pinned") for k in keys):
            # nothing left to release: the confirmations wait for the shared batches
            for _, source, group in keys:
                if source == "confirm":
                    for case in group:
                        case.confirmation = ""
            return
        wave += 1
        _tally(cases, keys, lab.run(jobs))
        lab.progress(phase="in-process sources", wave=wave,
                     explained=sum(bool(c.significant()) for c in cases.values()))


def _interpreter_sources(lab: _Lab, cases: dict[str, _Case], everything: list[str]) -> None:
    """Hash seed (one interpreter per value) and order (whole-suite interpreters, reversed then
    shuffled) for the tests nothing in-process explained, in shared batches; the winners found
    so far are confirmed in the same batches."""
    orders_tried = 0
    for batch in range(len(HASH_INTERPRETERS)):
        need = {s: [c for c in cases.values() if c.pin is not None and not c.significant() and s not in c.done
                    and (batch < len(HASH_INTERPRETERS) - 1 or c.released.get(s, (0, 0))[0])]
                for s in ("hashseed", "order")}
        confirm_jobs, confirm_keys = _confirm_jobs(lab, cases, everything)
        if not (need["hashseed"] or need["order"] or confirm_jobs) or lab.left() < 20:
            return
        jobs, kinds = list(confirm_jobs), [("confirm", k) for k in confirm_keys]
        for pin in sorted({c.pin for c in need["hashseed"]}):
            tests = [c.nodeid for c in need["hashseed"] if c.pin == pin]
            for _ in range(HASH_INTERPRETERS[batch]):
                jobs.append(lab.unit(tests, pin=pin, rounds=1, hashseed=str(lab.rand.randrange(1, 2 ** 32))))
                kinds.append(("hashseed", pin))
        for pin in sorted({c.pin for c in need["order"]}):
            victims = {c.nodeid for c in need["order"] if c.pin == pin}
            for k in range(ORDER_INTERPRETERS[batch]):
                ordered = list(everything)
                if orders_tried + k == 0:
                    ordered.reverse()
                    name = "reversed"
                else:
                    shuffle_seed = lab.rand.randrange(2 ** 32)
                    random.Random(shuffle_seed).shuffle(ordered)
                    name = f"shuffle:{shuffle_seed}"
                # nothing after the last victim can matter to it
                last = max(ordered.index(v) for v in victims)
                jobs.append(lab.unit(ordered[: last + 1], pin=pin, rounds=1, order=name))
                kinds.append(("order", pin))
        orders_tried += ORDER_INTERPRETERS[batch]
        for (kind, key), res in zip(kinds, lab.run(jobs)):
            _check_unit(res)
            if kind == "confirm":
                _confirmed(key, res)
                continue
            for case in need[kind]:
                if case.pin != key:
                    continue
                f, n = _count(res, case.nodeid)
                if not n:
                    continue
                tally = case.released.setdefault(kind, [0, 0])   # one outcome per interpreter
                tally[0] += int(f > 0)
                tally[1] += 1
                if kind == "order" and f:
                    before = res.unit.tests[: res.unit.tests.index(case.nodeid)]
                    if case.failing_order is None or len(before) < len(case.failing_order):
                        case.failing_order = before
        for kind, todo in need.items():
            most = sum(HASH_INTERPRETERS if kind == "hashseed" else ORDER_INTERPRETERS)
            most -= (HASH_INTERPRETERS if kind == "hashseed" else ORDER_INTERPRETERS)[-1]
            for case in todo:
                f, n = case.released.get(kind, (0, 0))
                if (f and case.p(kind) < SIGNIFICANT) or (f == 0 and n >= most) or batch == len(HASH_INTERPRETERS) - 1:
                    case.done.add(kind)
        lab.progress(phase="hash seed and order", batch=batch + 1,
                     explained=sum(bool(c.significant()) for c in cases.values()))


def _fails_after(lab: _Lab, case: _Case, subsets: list[list[str]]) -> list[bool]:
    """For each subset: does the victim fail when run right after it (pinned, in one interpreter)?"""
    units = [lab.unit([*s, case.nodeid], pin=case.pin, order="given") for s in subsets]
    return [_count(res, case.nodeid)[0] > 0 for res in lab.run(units)]


def _ddmin(lab: _Lab, case: _Case, items: list[str]) -> list[str]:
    """The smallest set of earlier tests (usually one) after which the victim fails: ddmin over
    *items*, which must make it fail."""
    n = 2
    while len(items) >= 2 and lab.left() > 10:
        size = len(items) / n
        chunks = [c for c in (items[round(i * size): round((i + 1) * size)] for i in range(n)) if c]
        hit = next((c for c, bad in zip(chunks, _fails_after(lab, case, chunks)) if bad), None)
        if hit is not None:
            items, n = hit, 2
            continue
        if n > 2:
            rest = [[t for t in items if t not in c] for c in chunks]
            hit = next((r for r, bad in zip(rest, _fails_after(lab, case, rest)) if bad), None)
            if hit is not None:
                items, n = hit, max(n - 1, 2)
                continue
        if n >= len(items):
            break
        n = min(len(items), 2 * n)
    return items


def _probe(lab: _Lab, case: _Case, tests: list[str]) -> dict[str, list[dict]]:
    """The global state each of *tests* (run in this order, then the victim) changes, by the
    statediff probe in one interpreter."""
    with tempfile.TemporaryDirectory(prefix="ml-audit-statediff-") as tmp:
        out = Path(tmp) / "diff.jsonl"
        off = [a for name in lab.plugins_off for a in ("-p", f"no:{name}")]
        cmd = pytest_command(lab.cfg, "-p", "no:randomly", *off, "-p", "audit.flaky.statediff",
                             f"--audit-statediff={out}")
        cmd = cmd[: len(cmd) - len(lab.cfg.test_paths)] + [*tests, case.nodeid]
        env = {"PYTHONHASHSEED": PIN_HASHSEEDS[case.pin], "OMP_WAIT_POLICY": "PASSIVE"}
        try:
            subprocess.run(cmd, cwd=lab.cfg.root, env=pytest_env(env), capture_output=True,
                           timeout=lab.timeout + 120)
        except subprocess.TimeoutExpired:
            return {}
        lab.interpreters += 1
        if not out.exists():
            return {}
        found = {}
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            found[rec["nodeid"]] = rec["changes"]
        return found


def _find_polluter(lab: _Lab, case: _Case) -> None:
    """The earlier test(s) the victim fails after, and the state they leave. The probe's
    suspects (tests that change env, dtype, cwd or project globals) are tried first; delta
    debugging over every earlier test when they do not reproduce the failure."""
    prefix = list(case.failing_order or [])
    if not prefix:
        return
    changes = _probe(lab, case, prefix)
    suspects = [t for t in prefix if any(c["kind"] != "rng" for c in changes.get(t, ()))]
    if suspects and _fails_after(lab, case, [suspects])[0]:
        culprits = _ddmin(lab, case, suspects)
    else:
        culprits = _ddmin(lab, case, prefix)
    case.polluter = culprits[0] if len(culprits) == 1 else " + ".join(culprits)
    seen = [c for t in culprits for c in changes.get(t, ())]
    if not seen and len(culprits) < len(prefix):
        seen = [c for t in culprits for c in _probe(lab, case, culprits).get(t, ())]
    case.state = statediff.describe(seen)


def _confirm_jobs(lab: _Lab, cases: dict[str, _Case], everything: list[str]) -> tuple[list, list]:
    """Units that pin only each winner and release the rest (its failures must vanish), for
    the explained tests not confirmed yet; with the groups of cases they answer for."""
    groups: dict[tuple, list[_Case]] = {}
    for case in cases.values():
        sig = case.significant()
        if sig and not case.confirmation and _source_ready(case, sig[0]):
            groups.setdefault((sig[0], case.pin), []).append(case)
    jobs, keys = [], []
    for (source, pin), group in sorted(groups.items()):
        release = [s for s in IN_PROCESS if s != source]
        if source == "order":   # file order up to the last victim
            tests, rounds = everything[: max(everything.index(c.nodeid) for c in group) + 1], 2
        else:
            tests, rounds = [c.nodeid for c in group], CONFIRM_ROUNDS
        hashseed = PIN_HASHSEEDS[pin] if source == "hashseed" else str(lab.rand.randrange(1, 2 ** 32))
        jobs.append(lab.unit(tests, pin=pin, rounds=rounds, release=release, hashseed=hashseed))
        keys.append(group)
        for case in group:
            case.confirmation = "running"
    return jobs, keys


def _source_ready(case: _Case, source: str) -> bool:
    """An order winner is confirmed once its polluter is known (or searched for)."""
    return source != "order" or case.polluter is not None or "polluter" in case.done


def _confirmed(group: list[_Case], res) -> None:
    source = group[0].significant()[0]
    others = ", ".join(_NAMES[s] for s in (*IN_PROCESS, "hashseed") if s != source)
    for case in group:
        f, n = _count(res, case.nodeid)
        verdict = "failures vanish" if f == 0 and n else "failures remain"
        case.confirmation = f"only {_NAMES[source]} pinned ({others} released): {f}/{n} failed, {verdict}"


def _confirm(lab: _Lab, cases: dict[str, _Case], everything: list[str]) -> None:
    jobs, keys = _confirm_jobs(lab, cases, everything)
    if jobs and lab.left() > 10:
        for group, res in zip(keys, lab.run(jobs)):
            _check_unit(res)
            _confirmed(group, res)
    for case in cases.values():
        if case.confirmation == "running":
            case.confirmation = ""


_NAMES = {name: sources.label(name) for name in sources.names()}


def _deviation(digests: list[str]) -> float | None:
    """The abs difference of the two numbers a failed ``assert a == b`` compared, if it says them."""
    import re

    number = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
    best = None
    for text in digests:
        m = re.search(rf"({number})\s*==\s*({number})", text) or re.search(rf"({number})\s*!=\s*({number})", text)
        if m:
            d = abs(float(m.group(1)) - float(m.group(2)))
            if d > 0 and (best is None or d > best):
                best = d
    return best


def _evidence(case: _Case, source: str) -> str:
    f, n = case.released[source]
    bf, bn = case.base
    unit = "interpreters" if source in ("hashseed", "order") else "executions"
    what = {"threads": "thread counts varied", "determinism": "deterministic algorithms on",
            "order": "order released (reversed/shuffled)", "hashseed": "hash seed released"}.get(
        source, f"{_NAMES[source]} released")
    text = f"pinned {bf}/{bn} failed, {what} {f}/{n} {unit} failed"
    if case.confirmation and source == case.significant()[0]:
        text += f"; {case.confirmation}"
    return text


def _causes(case: _Case, records: dict, tried_all: list[str]) -> list[dict]:
    record = records.get(case.nodeid)
    significant = case.significant()
    if significant and "failures vanish" in case.confirmation:
        # pinning the winner alone was enough with every other source released: the others
        # that moved the rate on their own are noise around it (or its side effects), not causes
        significant = significant[:1]
    causes = []
    for source in significant:
        kwargs = {}
        if source in (*RNG, "determinism"):
            kwargs["trace"] = record
        elif source == "threads":
            kwargs["deviation"] = _deviation(case.digests)
        elif source == "order":
            kwargs.update(polluter=case.polluter, state=case.state)
        evidence = _evidence(case, source)
        extra = [s for s in case.significant() if s not in significant]
        if source == significant[0] and extra:
            evidence += "; also moved the rate alone, but not needed once this is pinned: " + ", ".join(
                f"{_NAMES[s]} {case.released[s][0]}/{case.released[s][1]} (p={case.p(s):.2g})" for s in extra)
        cause = make_cause(source, case.p(source), evidence, nodeid=case.nodeid, **kwargs)
        if source == "threads" and kwargs["deviation"] is None:
            cause["evidence"] += " (bitwise difference; the failure did not show both values)"
        causes.append(cause)
    if causes:
        return causes
    tried = [f"{_NAMES[s]} {f}/{n}" for s, (f, n) in case.released.items()]
    if case.pin is None:
        evidence = "fails under every pinned setting tried: " + "; ".join(case.pinned_tries)
        p = 1.0
    else:
        evidence = f"pinned {case.base[0]}/{case.base[1]} failed; released: " + ", ".join(tried)
        p = min((case.p(s) for s in case.released), default=1.0)
    untried = [s for s in tried_all if s not in case.released]
    if untried:
        evidence += f" (not tried in the budget: {', '.join(_NAMES[s] for s in untried)})"
    return [make_cause("unknown", p, evidence, nodeid=case.nodeid, tried=[_NAMES[s] for s in case.released])]


def attribute(cfg, result, *, budget_seconds: float, progress=None, workers: int | None = None,
              seed: int | None = None) -> Attribution:
    """Causes per flaky test of a finished ``audit flaky`` run (a FlakyResult or its JSON dict).

    Spends at most about *budget_seconds*; a test the budget leaves unexplained gets an
    "unknown" cause saying what was tried. The returned dict also carries ``rng_graph`` (the
    unseeded RNG call graph of the flaky tests, node-link JSON) and ``rng_hygiene`` (every test
    that consumes a global RNG it never seeds).
    """
    if budget_seconds <= 0:
        raise AuditError("the attribution budget must be positive")
    started = time.monotonic()
    everything, flaky = _nodeids(result)
    if seed is None:
        settings = result.get("settings", {}) if isinstance(result, dict) else result.settings
        seed = int(settings.get("master_seed") or 0)
    lab = _Lab(cfg, workers or cfg.flaky.workers or os.cpu_count() or 1, started + budget_seconds, seed, progress)
    from audit.flaky.engine import unused_plugins   # here: the engine imports this module

    lab.plugins_off = unused_plugins(cfg.root, everything)
    if not flaky:
        return Attribution(rng_graph=callgraph.to_json(callgraph.build_graph([])), seconds=time.monotonic() - started)
    cases = {n: _Case(n) for n in flaky}

    def trace_job():
        try:
            return trace_tests(cfg, everything, timeout=max(30.0, lab.left()))
        except AuditError:
            return {}   # the causes then name no sites; the experiments still stand

    records = _find_pins(lab, cases, trace_job, everything)
    _in_process(lab, cases, everything)
    _interpreter_sources(lab, cases, everything)
    for case in cases.values():
        if case.significant()[:1] == ["order"] and lab.left() > 15:
            _find_polluter(lab, case)
            case.done.add("polluter")
            lab.progress(phase="polluter", nodeid=case.nodeid, polluter=case.polluter)
    _confirm(lab, cases, everything)
    tried_all = [*IN_PROCESS, "hashseed", "order"]
    causes = {n: _causes(case, records, tried_all) for n, case in cases.items()}
    flaky_records = [records[n] for n in flaky if n in records]
    return Attribution(causes, rng_graph=callgraph.to_json(callgraph.build_graph(flaky_records, unseeded_only=True)),
                       rng_hygiene=hygiene_list(records.values()), seconds=time.monotonic() - started,
                       executions=lab.executions, interpreters=lab.interpreters)
