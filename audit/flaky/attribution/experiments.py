"""One-factor experiments: from a setting where every source is pinned, release one at a time.

Each released failure rate is compared with the pinned baseline by Fisher's exact test, and the
arms are run sequentially: a source that made the test fail gets chunk after chunk (and the
pinned arm grows beside it) until it is significant, while one that never did is excluded once
its failure rate is bounded low; the chunks go first where the decision is closest (fewest runs
still needed, :func:`audit.stats.runs_to_decide`), until the budget ends. Cheap in-process
sources go first (many rounds per interpreter), then the hash seed (one interpreter per value),
then test order (whole-suite interpreters in other orders). The winner is confirmed the other
way round: with only it pinned and the rest released, its failures must vanish; the counts of
that run are kept beside the others.
"""

from __future__ import annotations

import random

from audit.flaky import sources
from audit.flaky.attribution.case import NOT_WORTH, SIGNIFICANT, Case
from audit.flaky.attribution.lab import PIN_HASHSEEDS, PIN_SEEDS, Lab, check_unit, count, failed, rows_of
from audit.flaky.attribution.polluter import find_polluter
from audit.stats import runs_to_decide, upper_bound_no_failures

# the sources these experiments release: the built-ins (a registered source needs an arm of its own)
IN_PROCESS = tuple(s.name for s in sources.BUILTIN if s.scope == sources.IN_PROCESS)
FIXED = ("threads", "determinism")   # sources with a fixed released setting: one chunk decides them
BASE_ROUNDS = 40            # pinned executions per test and chunk
CHUNKS = (60, 100, 240)     # released executions of an RNG family per test and chunk; the last size
                            # repeats (sequentially) for a family that made it fail, until it decides
MOST_ROUNDS = 600           # the largest chunk (one arm, one test) a wave gives a source that is close
FIXED_ROUNDS = 12           # executions of a fixed setting (thread counts cycled, determinism on)
HASH_INTERPRETERS = (4, 6, 10)  # new hash seeds tried per test and batch (the last repeats: as for CHUNKS)
ORDER_INTERPRETERS = (3, 4, 6)  # reversed + shuffled whole-suite orders per batch (the last: as for CHUNKS)
CONFIRM_ROUNDS = 30
TRIED = (*IN_PROCESS, "hashseed", "order")   # every source the experiments release


def find_pins(lab: Lab, cases: dict[str, Case], everything: list[str]) -> None:
    """A pinned setting each test passes under (a seed can happen to fail): candidates in turn.
    The first candidate's wave also runs the first released chunks, betting that most tests pass
    pinned there."""
    todo = list(cases)
    for pin in range(len(PIN_SEEDS)):
        if not todo or not lab.room(10):
            break
        jobs, keys = [lab.unit(todo, pin=pin, rounds=BASE_ROUNDS)], [None]
        if pin == 0:
            more, more_keys = _in_process_jobs(lab, cases, everything, assume_pin=0)
            jobs += more
            keys += more_keys
        out = lab.run(jobs)
        check_unit(out[0])
        still = []
        for nodeid in todo:
            f, n = count(out[0], nodeid)
            case = cases[nodeid]
            case.pinned_tries.append((PIN_SEEDS[pin], PIN_HASHSEEDS[pin], f, n))
            if n and f == 0:
                case.pin, case.base = pin, [0, n]
            else:
                still.append(nodeid)
        todo = still
        if pin == 0:
            _tally(cases, keys[1:], out[1:])
            for nodeid in still:   # their first chunks ran under a failing pin: start again
                cases[nodeid].chunks.clear()
        lab.progress(phase="baseline", pinned=len(cases) - len(todo), tests=len(cases))


def _in_process_jobs(lab: Lab, cases: dict[str, Case], everything: list[str], assume_pin=None):
    """The next chunk of every in-process source still open, per pin group: released units, a
    pinned unit to grow the baseline beside them, and confirmations of new winners; the closest
    decisions first."""
    jobs, keys = [], []
    groups: dict[tuple, list[Case]] = {}
    sizes: dict[tuple, int] = {}
    for case in cases.values():
        pin = case.pin if assume_pin is None else assume_pin
        if pin is None or case.significant():
            continue
        for source in IN_PROCESS:
            k = case.chunks.get(source, 0)
            failed_before = case.released.get(source, (0, 0))[0]
            if source in case.done or (k >= len(CHUNKS) - 1 and not failed_before):
                continue   # the longer chunks only for a source that made it fail
            rounds = _rounds(case, source, k, len(lab.threads))
            groups.setdefault((pin, source, k), []).append(case)
            sizes[(pin, source, k)] = max(sizes.get((pin, source, k), 0), rounds)
    pinned: dict[int, int] = {}
    pinned_tests: dict[int, set] = {}
    order = sorted(groups.items(), key=lambda kv: (min(_closeness(c, kv[0][1]) for c in kv[1]), kv[0]))
    for (pin, source, k), group in order:
        jobs.append(lab.unit([c.nodeid for c in group], pin=pin, rounds=sizes[(pin, source, k)], release=(source,)))
        keys.append((pin, source, group))
        for case in group:
            case.chunks[source] = k + 1
            grow = _pinned_rounds(case)
            if grow:
                pinned_tests.setdefault(pin, set()).add(case.nodeid)
                pinned[pin] = max(pinned.get(pin, 0), grow)
    for pin, tests in sorted(pinned_tests.items()):
        jobs.append(lab.unit(sorted(tests, key=everything.index), pin=pin, rounds=pinned[pin]))
        keys.append((pin, "pinned", [cases[t] for t in tests]))
    if assume_pin is None:
        more, confirming = _confirm_jobs(lab, cases, everything)
        jobs += more
        keys += [(None, "confirm", winner_and_group) for winner_and_group in confirming]
    return jobs, keys


def _rounds(case: Case, source: str, k: int, thread_counts: int) -> int:
    """Released executions of *source*'s next chunk: its fixed size, or (for a source that made
    the test fail) half of what the decision still needs, within bounds."""
    if source in FIXED:
        return max(FIXED_ROUNDS, 3 * thread_counts) * (1 if not k else 2)
    size = CHUNKS[min(k, len(CHUNKS) - 1)]
    need = _needed(case, source)
    if need:
        size = max(size, min(MOST_ROUNDS, need // 2 + 1))
    return size


def _needed(case: Case, source: str) -> int | None:
    """More executions that would decide *source* at the rates seen so far (None: no sign yet)."""
    f, n = case.released.get(source, (0, 0))
    if not f:
        return None
    return runs_to_decide((f, n), tuple(case.base), SIGNIFICANT)


def _closeness(case: Case, source: str) -> float:
    """Sort key: a source near its decision first, then the ones with no sign yet."""
    need = _needed(case, source)
    return need if need is not None else float(10 ** 6)


def _pinned_rounds(case: Case) -> int:
    """Pinned executions to add beside the released chunks, once a source made the test fail:
    keep the pinned arm as large as that source's released arm (balanced arms decide soonest)."""
    suspects = [n for s, (f, n) in case.released.items() if f and s in IN_PROCESS]
    if not suspects:
        return 0   # nothing to compare yet: the first pinned chunk is enough
    missing = max(suspects) - case.base[1]
    if missing <= 0:
        return 0
    return min(MOST_ROUNDS, max(BASE_ROUNDS, missing))


def _tally(cases: dict[str, Case], keys: list, results: list) -> None:
    """Add a wave's counts to the cases, then close the sources that are decided."""
    for (pin, source, group), res in zip(keys, results):
        check_unit(res)
        if source == "confirm":
            winner, group = group
            _confirmed(winner, group, res)
            continue
        for case in group:
            if case.pin != pin:
                continue   # it turned out to fail pinned at this candidate
            f, n = count(res, case.nodeid)
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
                case.digests += [r["digest"] for r in rows_of(res, case.nodeid) if failed(r)]
            for r in rows_of(res, case.nodeid):
                if failed(r) and not r.get("attempt"):
                    case.example(source, {"seeds": r.get("seeds") or {}, "threads": r.get("threads"),
                                          "masked": bool(r.get("masked"))})
    for case in cases.values():
        for source in IN_PROCESS:
            f, n = case.released.get(source, (0, 0))
            if n and ((f and case.p(source) < SIGNIFICANT) or (source in FIXED and not f)
                      or (f == 0 and upper_bound_no_failures(n) < NOT_WORTH)
                      or (f and runs_to_decide((f, n), tuple(case.base), SIGNIFICANT) is None)):
                case.done.add(source)


def in_process(lab: Lab, cases: dict[str, Case], everything: list[str],
               arms: InterpreterArms | None = None) -> None:
    """Release each RNG family, the thread count and determinism, in rounds inside interpreters,
    chunk after chunk until each is decided (or its chunks are spent). Tests whose in-process
    sources are all decided and explain nothing get *arms*' next hash-seed and order batch in
    the same wave, so the workers never wait on one long chunk."""
    wave = 0
    while lab.room(15):
        jobs, keys = _in_process_jobs(lab, cases, everything)
        if not any(k[1] not in ("confirm", "pinned") for k in keys):
            return   # nothing left to release: the confirmations wait for the shared batches
        ready = {n for n, c in cases.items() if set(IN_PROCESS) <= c.done and not c.significant()}
        more, more_keys = arms.jobs(ready) if arms is not None and ready else ([], [])
        wave += 1
        out = lab.run(jobs + more)
        _tally(cases, keys, out[:len(jobs)])
        if more:
            arms.tally(more_keys, out[len(jobs):])
        lab.progress(phase="in-process sources", wave=wave,
                     explained=sum(bool(c.significant()) for c in cases.values()))


class InterpreterArms:
    """The hash-seed and order arms (one outcome per interpreter), batch after batch: their
    units ride along with the in-process waves for the tests those already left unexplained,
    then run on their own (:func:`interpreter_sources`)."""

    def __init__(self, lab: Lab, cases: dict[str, Case], everything: list[str]):
        self.lab, self.cases, self.everything = lab, cases, everything
        self.batches: dict[str, int] = {}    # node id -> interpreter batches it has been in

    def jobs(self, ready=None) -> tuple[list, list]:
        """The next batch's units for the tests still open (of *ready*, when given), with keys for
        :meth:`tally`."""
        final = len(HASH_INTERPRETERS) - 1
        need: dict[str, list[Case]] = {}
        for s in ("hashseed", "order"):
            need[s] = [c for c in self.cases.values()
                       if c.pin is not None and not c.significant() and s not in c.done
                       and (ready is None or c.nodeid in ready)
                       and (self.batches.get(c.nodeid, 0) < final or c.released.get(s, (0, 0))[0])]
        lab, jobs, keys = self.lab, [], []
        for pin in sorted({c.pin for c in need["hashseed"]}):
            group = [c for c in need["hashseed"] if c.pin == pin]
            size = min(min(self.batches.get(c.nodeid, 0) for c in group), final)
            for _ in range(HASH_INTERPRETERS[size]):
                jobs.append(lab.unit([c.nodeid for c in group], pin=pin, rounds=1,
                                     hashseed=str(lab.rand.randrange(1, 2 ** 32))))
                keys.append(("hashseed", pin, group))
        for pin in sorted({c.pin for c in need["order"]}):
            group = [c for c in need["order"] if c.pin == pin]
            size = min(min(self.batches.get(c.nodeid, 0) for c in group), final)
            for k in range(ORDER_INTERPRETERS[size]):
                ordered = list(self.everything)
                if size == k == 0:   # a group's first batch starts with the reversed order
                    ordered.reverse()
                    name = "reversed"
                else:
                    shuffle_seed = lab.rand.randrange(2 ** 32)
                    random.Random(shuffle_seed).shuffle(ordered)
                    name = f"shuffle:{shuffle_seed}"
                # nothing after the last victim can matter to it
                last = max(ordered.index(c.nodeid) for c in group)
                jobs.append(lab.unit(ordered[: last + 1], pin=pin, rounds=1, order=name))
                keys.append(("order", pin, group))
        for case in {c.nodeid: c for cs in need.values() for c in cs}.values():
            self.batches[case.nodeid] = self.batches.get(case.nodeid, 0) + 1
        return jobs, keys

    def tally(self, keys: list, results: list) -> None:
        """One outcome per interpreter and test; then close the arms that are decided."""
        touched: dict[str, set] = {}
        for (kind, pin, group), res in zip(keys, results):
            check_unit(res)
            for case in group:
                if case.pin != pin:
                    continue
                f, n = count(res, case.nodeid)
                if not n:
                    continue
                touched.setdefault(kind, set()).add(case.nodeid)
                tally = case.released.setdefault(kind, [0, 0])
                tally[0] += int(f > 0)
                tally[1] += 1
                if kind == "hashseed" and f:
                    case.example("hashseed", {"hashseed": res.unit.hashseed})
                if kind == "order" and f:
                    before = res.unit.tests[: res.unit.tests.index(case.nodeid)]
                    if case.failing_order is None or len(before) < len(case.failing_order):
                        case.failing_order = before
        for kind, nodeids in touched.items():
            sizes = HASH_INTERPRETERS if kind == "hashseed" else ORDER_INTERPRETERS
            most = sum(sizes) - sizes[-1]
            for nodeid in nodeids:
                case = self.cases[nodeid]
                f, n = case.released.get(kind, (0, 0))
                if ((f and case.p(kind) < SIGNIFICANT) or (f == 0 and n >= most)
                        or (f and runs_to_decide((f, n), tuple(case.base), SIGNIFICANT) is None)):
                    case.done.add(kind)


def interpreter_sources(lab: Lab, cases: dict[str, Case], everything: list[str],
                        arms: InterpreterArms | None = None) -> None:
    """Hash seed (one interpreter per value) and order (whole-suite interpreters, reversed then
    shuffled) for the tests nothing in-process explained, in shared batches (going on from
    *arms*, the batches that ran beside the in-process waves); the winners found so far are
    confirmed in the same batches."""
    arms = arms or InterpreterArms(lab, cases, everything)
    batch = 0
    while True:
        confirm_jobs, confirm_keys = _confirm_jobs(lab, cases, everything)
        jobs, keys = arms.jobs()
        if not (jobs or confirm_jobs) or not lab.room(20):
            return
        batch += 1
        out = lab.run(confirm_jobs + jobs)
        for (source, group), res in zip(confirm_keys, out):
            check_unit(res)
            _confirmed(source, group, res)
        arms.tally(keys, out[len(confirm_jobs):])
        lab.progress(phase="hash seed and order", batch=batch,
                     explained=sum(bool(c.significant()) for c in cases.values()))
        polluters(lab, cases)   # as soon as order wins: its confirmation rides along with the next batch


def polluters(lab: Lab, cases: dict[str, Case]) -> None:
    """Search the polluter of every test whose winner is the order, once each, while there is room."""
    for case in cases.values():
        if case.winner() == "order" and "polluter" not in case.done and lab.room(15):
            find_polluter(lab, case)
            case.done.add("polluter")
            lab.progress(phase="polluter", nodeid=case.nodeid, polluter=case.polluter)


def _confirm_jobs(lab: Lab, cases: dict[str, Case], everything: list[str]) -> tuple[list, list]:
    """Units that pin only each winner and release the rest (its failures must vanish), for
    the explained tests not confirmed yet; with the groups of cases they answer for."""
    groups: dict[tuple, list[Case]] = {}
    for case in cases.values():
        winner = case.winner()
        if winner and case.confirmation_of(winner) is None and _source_ready(case, winner):
            groups.setdefault((winner, case.pin), []).append(case)
    jobs, keys = [], []
    for (source, pin), group in sorted(groups.items()):
        release = [s for s in IN_PROCESS if s != source]
        if source == "order":   # file order up to the last victim
            tests, rounds = everything[: max(everything.index(c.nodeid) for c in group) + 1], 2
        else:
            tests, rounds = [c.nodeid for c in group], CONFIRM_ROUNDS
        hashseed = PIN_HASHSEEDS[pin] if source == "hashseed" else str(lab.rand.randrange(1, 2 ** 32))
        jobs.append(lab.unit(tests, pin=pin, rounds=rounds, release=release, hashseed=hashseed))
        keys.append((source, group))
    return jobs, keys


def _source_ready(case: Case, source: str) -> bool:
    """An order winner is confirmed once its polluter is known (or searched for)."""
    return source != "order" or case.polluter is not None or "polluter" in case.done


def _confirmed(source: str, group: list[Case], res) -> None:
    """Record a confirmation run's counts: only *source* pinned, every other source released."""
    for case in group:
        case.confirmed_source, case.confirmation = source, count(res, case.nodeid)


def confirm(lab: Lab, cases: dict[str, Case], everything: list[str]) -> None:
    """Confirm the winners not confirmed yet, while the budget lasts."""
    jobs, keys = _confirm_jobs(lab, cases, everything)
    if jobs and lab.room(10):
        for (source, group), res in zip(keys, lab.run(jobs)):
            check_unit(res)
            _confirmed(source, group, res)
