"""One-factor experiments: from a setting where every source is pinned, release one at a time.

Each released failure rate is compared with the pinned baseline by Fisher's exact test. Cheap
in-process sources go first (many rounds per interpreter), then the hash seed (one interpreter
per value), then test order (whole-suite interpreters in other orders). A source stops getting
executions as soon as it is clearly significant or clearly not worth more, and a test stops
once a source explains it. The winner is confirmed the other way round: with only it pinned and
the rest released, its failures must vanish; the counts of that run are kept beside the others.
"""

from __future__ import annotations

import random

from audit.flaky import sources
from audit.flaky.attribution.case import NOT_WORTH, SIGNIFICANT, Case
from audit.flaky.attribution.lab import PIN_HASHSEEDS, PIN_SEEDS, Lab, check_unit, count, failed, rows_of
from audit.stats import upper_bound_no_failures

# the sources these experiments release: the built-ins (a registered source needs an arm of its own)
IN_PROCESS = tuple(s.name for s in sources.BUILTIN if s.scope == sources.IN_PROCESS)
FIXED = ("threads", "determinism")   # sources with a fixed released setting: one chunk decides them
BASE_ROUNDS = 40            # pinned executions per test and chunk
CHUNKS = (60, 100, 240)     # released executions of an RNG family per test and chunk (the last: only
                            # for a family that made it fail without reaching significance yet)
FIXED_ROUNDS = 12           # executions of a fixed setting (thread counts cycled, determinism on)
HASH_INTERPRETERS = (4, 6, 10)  # new hash seeds tried per test and batch (the last: as for CHUNKS)
ORDER_INTERPRETERS = (3, 4, 6)  # reversed + shuffled whole-suite orders per batch (the last: as for CHUNKS)
CONFIRM_ROUNDS = 30
TRIED = (*IN_PROCESS, "hashseed", "order")   # every source the experiments release


def find_pins(lab: Lab, cases: dict[str, Case], trace_job, everything: list[str]):
    """A pinned setting each test passes under (a seed can happen to fail): candidates in turn.
    The first candidate's wave also runs the first released chunks, betting that most tests pass
    pinned there, and *trace_job*, whose result is returned (None when the budget ran out first)."""
    traced = None
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
        check_unit(out[0])
        if pin == 0:
            traced = out[-1]
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
            _tally(cases, keys[1:-1], out[1:-1])
            for nodeid in still:   # their first chunks ran under a failing pin: start again
                cases[nodeid].chunks.clear()
        lab.progress(phase="baseline", pinned=len(cases) - len(todo), tests=len(cases))
    return traced


def _in_process_jobs(lab: Lab, cases: dict[str, Case], everything: list[str], assume_pin=None):
    """The next chunk of every in-process source still open, per pin group: released units, a
    pinned unit to grow the baseline beside them, and confirmations of new winners."""
    jobs, keys = [], []
    groups: dict[tuple, list[Case]] = {}
    for case in cases.values():
        pin = case.pin if assume_pin is None else assume_pin
        if pin is None or case.significant():
            continue
        for source in IN_PROCESS:
            k = case.chunks.get(source, 0)
            fixed = source in FIXED
            if source in case.done or (fixed and k) or k >= len(CHUNKS):
                continue
            if k == len(CHUNKS) - 1 and not case.released.get(source, (0, 0))[0]:
                continue   # the last chunk only for a source that made it fail
            groups.setdefault((pin, source, k), []).append(case)
    pinned: dict[int, set] = {}
    for (pin, source, k), group in sorted(groups.items()):
        fixed = source in FIXED
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
        more, confirming = _confirm_jobs(lab, cases, everything)
        jobs += more
        keys += [(None, "confirm", winner_and_group) for winner_and_group in confirming]
    return jobs, keys


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
    for case in cases.values():
        for source in IN_PROCESS:
            f, n = case.released.get(source, (0, 0))
            if n and ((f and case.p(source) < SIGNIFICANT) or source in FIXED
                      or (f == 0 and upper_bound_no_failures(n) < NOT_WORTH)):
                case.done.add(source)


def in_process(lab: Lab, cases: dict[str, Case], everything: list[str]) -> None:
    """Release each RNG family, the thread count and determinism, in rounds inside interpreters,
    chunk after chunk until each is decided (or its chunks are spent)."""
    wave = 0
    while lab.left() > 15:
        jobs, keys = _in_process_jobs(lab, cases, everything)
        if not any(k[1] not in ("confirm", "pinned") for k in keys):
            return   # nothing left to release: the confirmations wait for the shared batches
        wave += 1
        _tally(cases, keys, lab.run(jobs))
        lab.progress(phase="in-process sources", wave=wave,
                     explained=sum(bool(c.significant()) for c in cases.values()))


def interpreter_sources(lab: Lab, cases: dict[str, Case], everything: list[str]) -> None:
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
            check_unit(res)
            if kind == "confirm":
                _confirmed(*key, res)
                continue
            for case in need[kind]:
                if case.pin != key:
                    continue
                f, n = count(res, case.nodeid)
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
    if jobs and lab.left() > 10:
        for (source, group), res in zip(keys, lab.run(jobs)):
            check_unit(res)
            _confirmed(source, group, res)
