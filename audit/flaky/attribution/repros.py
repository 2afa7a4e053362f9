"""Minimal verified repros of the explained tests: the cause alone, failing N/N, and its
counterfactual (the cause pinned at a value that passed), passing N/N.

The failing value comes from an execution of the experiments that failed with only that source
released; the passing one is the pinned setting the test passed under. Only the cause's own
option is set (and the pins of other RNG families the test draws, which change its draws): no
``--audit-seed-numpy`` for a torch flake. An order-dependent test's repro runs its polluter and
it, nothing else.
"""

from __future__ import annotations

from audit.flaky import repro as repro_mod
from audit.flaky.attribution.case import Case
from audit.flaky.attribution.lab import PIN_HASHSEEDS, PIN_SEEDS, Lab
from audit.flaky.sources import FAMILIES

RUNS = 3            # each command is run this many times: verified means N/N
CANDIDATES = 4      # failing settings tried in turn until one fails N/N (a module fixture seeded
                    # on its own key replays differently: more than one may be needed)
MIN_SECONDS = 8.0   # budget a batch of verifications needs left to start


def settings_for(case: Case, source: str, default_threads: int) -> tuple[list[dict], dict, list[str]]:
    """(failing settings to try, the passing setting, the tests to run first) for *source*."""
    pin = case.pin or 0
    examples = case.examples.get(source, [])
    if source in FAMILIES:
        drawn = {f: PIN_SEEDS[pin] for f in FAMILIES if f != source and f not in case.not_drawn}
        fails = [{"seeds": {**drawn, source: e["seeds"][source]}, "no_reruns": e["masked"]}
                 for e in examples if e.get("seeds", {}).get(source) is not None]
        return fails, {"seeds": {**drawn, source: PIN_SEEDS[pin]}}, []
    if source == "threads":
        counts = list(dict.fromkeys(e["threads"] for e in examples if e.get("threads")))
        return [{"threads": t} for t in counts], {"threads": default_threads}, []
    if source == "determinism":
        return [{"deterministic": "on"}], {"deterministic": "off"}, []
    if source == "hashseed":
        return list(examples), {"hashseed": PIN_HASHSEEDS[pin]}, []
    if source == "order" and case.polluter:
        return [{}], {}, case.polluter.split(" + ")
    return [], {}, []


def verify(lab: Lab, cases: dict[str, Case], winners: dict[str, str], pytest_args: list[str]) -> dict[str, dict]:
    """Node id -> {repro, repro_runs, counterfactual, counterfactual_runs, verified, minimal} for
    the tests whose winner has a repro that fits the budget (a test left out has no entry);
    ``minimal`` is the repro as a :class:`audit.flaky.repro.Repro`, to run again (``--fix``)."""
    plans = {}
    for nodeid, source in winners.items():
        fails, passing, before = settings_for(cases[nodeid], source, lab.default_threads)
        if fails:
            plans[nodeid] = [repro_mod.minimal(nodeid, f, passing, pytest_args, before) for f in fails[:CANDIDATES]]
    found: dict[str, dict] = {}
    for attempt in range(CANDIDATES):
        todo = {n: pairs[attempt] for n, pairs in plans.items()
                if attempt < len(pairs) and not found.get(n, {}).get("verified")}
        if not todo or not lab.room(MIN_SECONDS):
            break
        jobs, keys = [], []
        for nodeid, pair in todo.items():
            for which, command in zip(("repro", "counterfactual"), pair):
                for _ in range(RUNS):
                    jobs.append(_runner(lab, command))
                    keys.append((nodeid, which))
        tally: dict[tuple, list] = {}
        for key, outcome in zip(keys, lab.run(jobs)):
            if outcome is not None:
                t = tally.setdefault(key, [0, 0])
                t[0] += int(outcome)
                t[1] += 1
        for nodeid, (repro, counter) in todo.items():
            r, c = tally.get((nodeid, "repro"), [0, 0]), tally.get((nodeid, "counterfactual"), [0, 0])
            verified = r == [RUNS, RUNS] and c == [0, RUNS]
            if verified or nodeid not in found:
                found[nodeid] = {"repro": repro.command(), "repro_runs": r, "counterfactual": counter.command(),
                                 "counterfactual_runs": c, "verified": verified, "minimal": repro}
    return found


def _runner(lab: Lab, command: repro_mod.Repro):
    def run():
        if lab.left() <= 0:
            return None
        lab.interpreters += 1
        return repro_mod.failed(lab.cfg, command, lab.workdir, timeout=max(5.0, min(lab.timeout * 2, lab.left())),
                                forks=lab.forks)
    return run
