"""Why a flaky test is flaky: the attribution engine, run after detection on its result.

:func:`attribute` takes a :class:`audit.model.flaky.FlakyResult`, runs one-factor experiments on
its flaky tests (audit.flaky.attribution.experiments) in the lab's budget
(audit.flaky.attribution.lab), searches the polluter of order-dependent ones
(audit.flaky.attribution.polluter), traces where the randomness is drawn (audit.flaky.tracing)
and returns their causes (audit.flaky.attribution.causes) as :class:`audit.model.flaky.Cause`
objects per node id, with a minimal verified repro and counterfactual for each confirmed one
(audit.flaky.attribution.repros).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from audit.errors import AuditError
from audit.flaky import callgraph
from audit.flaky.attribution import experiments, repros
from audit.flaky.attribution.case import Case
from audit.flaky.attribution.causes import Trace, causes_of
from audit.flaky.attribution.lab import Lab
from audit.flaky.sources import FAMILIES, UNKNOWN
from audit.flaky.tracing import hygiene_list, trace_tests
from audit.model.flaky import Cause, FlakyResult
from audit.project import unused_plugins

__all__ = ["Attribution", "attribute", "out_of_budget"]


class Attribution(dict):
    """Node id -> list of :class:`Cause`, plus the RNG call graph, the hygiene list and the spend."""

    def __init__(self, causes: dict[str, list[Cause]] | None = None, *, rng_graph=None, rng_hygiene=None,
                 seconds=0.0, executions=0, interpreters=0, per_test=None, repros=None):
        super().__init__(causes or {})
        self.per_test = per_test or {}   # executions of each flaky test attribution ran
        self.repros = repros or {}       # node id -> minimal repro, counterfactual and their runs
        self.rng_graph = rng_graph or {}
        self.rng_hygiene = rng_hygiene or []
        self.seconds = seconds
        self.executions = executions
        self.interpreters = interpreters


def attribute(cfg, result: FlakyResult, *, budget_seconds: float, progress=None, workers: int | None = None,
              seed: int | None = None, forks=None) -> Attribution:
    """Causes per flaky test of a finished ``audit flaky`` run (its units forked from *forks*'
    zygotes, an :class:`audit.forkserver.ForkServer`, where one has the hash seed).

    Spends at most about *budget_seconds*; a test the budget leaves unexplained gets an
    ``unknown`` cause saying what was tried, and a winner it could not confirm a ``suspected``
    one. The result also carries ``rng_graph`` (the unseeded RNG call graph of the flaky tests,
    node-link JSON) and ``rng_hygiene`` (every test that consumes a global RNG it never seeds).
    """
    if budget_seconds <= 0:
        raise AuditError("the attribution budget must be positive")
    if not isinstance(result, FlakyResult):
        raise TypeError(f"attribute() takes a FlakyResult, not {type(result).__name__}")
    started = time.monotonic()
    everything = [t.nodeid for t in result.tests]
    flaky = [t.nodeid for t in result.flaky if not t.timing]   # time cannot be pinned (audit.flaky.timing)
    if not flaky:
        return Attribution(rng_graph=callgraph.to_json(callgraph.build_graph([])), seconds=time.monotonic() - started)
    seed = int(result.settings.get("master_seed") or 0) if seed is None else seed
    lab = Lab(cfg, workers or cfg.flaky.workers or os.cpu_count() or 1, started + budget_seconds, seed, progress,
              plugins_off=unused_plugins(cfg.root, everything), forks=forks)
    try:
        return _attribute(cfg, result, lab, everything, flaky, started)
    finally:
        lab.close()


def _attribute(cfg, result: FlakyResult, lab: Lab, everything: list[str], flaky: list[str], started: float) -> Attribution:
    cases = {n: _case(t) for t in result.flaky for n in [t.nodeid]}

    # the hygiene list needs only the tests that draw (or were never measured) besides the flaky ones
    to_trace = [t.nodeid for t in result.tests if t.nodeid in cases or t.draws or not t.executions]

    def trace_job() -> Trace:
        try:
            return Trace(trace_tests(cfg, to_trace, timeout=max(5.0, lab.left())))
        except AuditError as exc:
            return Trace(error=str(exc).splitlines()[0])   # the experiments still stand

    # the trace runs beside the experiments, never holding a wave of them back
    tracing = ThreadPoolExecutor(1, thread_name_prefix="ml-audit-trace")
    traced = tracing.submit(trace_job)
    experiments.find_pins(lab, cases, everything)
    arms = experiments.InterpreterArms(lab, cases, everything)
    experiments.in_process(lab, cases, everything, arms)
    experiments.interpreter_sources(lab, cases, everything, arms)
    experiments.polluters(lab, cases)
    experiments.confirm(lab, cases, everything)
    try:
        trace = traced.result(timeout=max(1.0, lab.left()))
    except FutureTimeout:
        trace = Trace(error="not traced: the budget ended first")
    tracing.shutdown(wait=False)
    causes = {n: causes_of(case, trace) for n, case in cases.items()}
    for nodeid, case in cases.items():   # without detection's record of draws, the trace's sites tell
        record = trace.records.get(nodeid)
        if record is not None and not case.not_drawn:
            case.not_drawn = tuple(f for f in FAMILIES if not (record.get("draws", {}).get(f) or {}).get("sites"))
    winners = {n: found[0].source for n, found in causes.items() if found[0].status == "confirmed"}
    verified = repros.verify(lab, cases, winners, list(cfg.pytest_args))
    flaky_records = [trace.records[n] for n in flaky if n in trace.records]
    return Attribution(causes, rng_graph=callgraph.to_json(callgraph.build_graph(flaky_records, unseeded_only=True)),
                       rng_hygiene=hygiene_list(trace.records.values()), seconds=time.monotonic() - started,
                       executions=lab.executions, interpreters=lab.interpreters,
                       per_test={n: lab.per_test.get(n, 0) for n in flaky}, repros=verified)


def _case(test) -> Case:
    """A flaky test's case; the RNG families its executions never consumed (the plugin measures
    each one's state before and after, fixtures included) need no arm: releasing them cannot
    change it."""
    case = Case(test.nodeid)
    if test.executions:
        case.not_drawn = tuple(f for f in FAMILIES if f not in test.draws)
        case.done.update(case.not_drawn)
    return case


def out_of_budget(result: FlakyResult, seconds: float) -> Attribution:
    """The causes when detection left attribution too little of the budget to release anything."""
    from audit.flaky.hints import make_cause

    left = f"{max(0.0, seconds):.0f}s" if seconds > 0 else "nothing"
    causes = {t.nodeid: [make_cause(UNKNOWN, None, f"not attributed: detection left {left} of the budget",
                                    nodeid=t.nodeid)] for t in result.flaky}
    return Attribution(causes, rng_graph=callgraph.to_json(callgraph.build_graph([])),
                       per_test={n: 0 for n in causes})
