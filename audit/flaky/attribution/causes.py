"""A flaky test's causes from its experiment counts: status, evidence (as fields and as text),
and the hint for the place the trace names.

Only a confirmed winner counts as the cause: significant on its own, and pinning it alone (the
rest released) made the failures vanish; the other sources that moved the rate are then noise
around it. A winner without that confirmation is reported ``suspected``, beside the other
significant sources. No significant source but one that made the test fail more often than pinned: an
``undetermined`` cause naming that leading suspect, its counts, p-value and about how many more
runs would decide (the budget ended first). No source that moved the rate at all: one
``unknown`` cause saying what was tried, with no p-value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from audit.flaky import sources
from audit.flaky.attribution.case import SIGNIFICANT, Case
from audit.flaky.attribution.experiments import IN_PROCESS, TRIED
from audit.flaky.hints import make_cause
from audit.model.flaky import Cause, Counts
from audit.stats import runs_to_decide

_NUMBER = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
_RELEASED = {"threads": "thread counts varied", "determinism": "deterministic algorithms on",
             "order": "order released (reversed/shuffled)", "hashseed": "hash seed released"}


@dataclass
class Trace:
    """The trace records of the audited tests by node id, or why there are none."""

    records: dict = field(default_factory=dict)
    error: str | None = None

    def of(self, nodeid: str) -> tuple[dict | None, str | None]:
        """A test's record and, when tracing could not name its sites, why."""
        record = self.records.get(nodeid)
        if record is None:
            return None, self.error or "the trace run wrote no record for this test"
        return record, record.get("trace_error")


def deviation(digests: list[str]) -> float | None:
    """The abs difference of the two numbers a failed ``assert a == b`` compared, if it says them."""
    best = None
    for text in digests:
        m = re.search(rf"({_NUMBER})\s*==\s*({_NUMBER})", text) or re.search(rf"({_NUMBER})\s*!=\s*({_NUMBER})", text)
        if m:
            d = abs(float(m.group(1)) - float(m.group(2)))
            if d > 0 and (best is None or d > best):
                best = d
    return best


def counts_of(case: Case, source: str) -> Counts:
    f, n = case.released[source]
    return Counts(pinned=tuple(case.base), released=(f, n), unit=sources.get(source).unit,
                  confirmation=case.confirmation_of(source))


def _evidence(case: Case, source: str, counts: Counts) -> str:
    (bf, bn), (f, n) = counts.pinned, counts.released
    what = _RELEASED.get(source, f"{sources.label(source)} released")
    text = f"pinned {bf}/{bn} failed, {what} {f}/{n} {counts.unit} failed"
    if source != case.winner():
        return text
    if counts.confirmation is None:
        return text + "; not confirmed: no run with only it pinned fitted in the budget"
    cf, cn = counts.confirmation
    others = ", ".join(sources.label(s) for s in (*IN_PROCESS, "hashseed") if s != source)
    verdict = "failures vanish" if cn and cf == 0 else "failures remain"
    return text + f"; only {sources.label(source)} pinned ({others} released): {cf}/{cn} failed, {verdict}"


def causes_of(case: Case, trace: Trace) -> list[Cause]:
    """The causes of one flaky test, the winner first."""
    significant = case.significant()
    if not significant:
        suspect = leading_suspect(case)
        return [_undetermined(case, suspect, trace) if suspect else _unknown(case)]
    confirmed = case.confirmed()
    reported = significant[:1] if confirmed else significant
    record, trace_error = trace.of(case.nodeid)
    causes = []
    for source in reported:
        counts = counts_of(case, source)
        evidence = _evidence(case, source, counts)
        extra = [s for s in significant if s not in reported]
        if extra:
            evidence += "; also moved the rate alone, but not needed once this is pinned: " + ", ".join(
                f"{sources.label(s)} {case.released[s][0]}/{case.released[s][1]} (p={case.p(s):.2g})" for s in extra)
        kwargs = {}
        if source in (*sources.FAMILIES, "determinism"):
            kwargs.update(trace=record, trace_error=trace_error)
        elif source == "threads":
            kwargs["deviation"] = deviation(case.digests)
            if kwargs["deviation"] is None:
                evidence += " (bitwise difference; the failure did not show both values)"
        elif source == "order":
            kwargs.update(polluter=case.polluter, state=case.state)
        causes.append(make_cause(source, case.p(source), evidence, nodeid=case.nodeid, counts=counts,
                                 status="confirmed" if confirmed else "suspected", **kwargs))
    return causes


SUSPECT = 0.05   # p below this (not yet SIGNIFICANT): the source leads, and the cause is undetermined


def moved(case: Case) -> list[str]:
    """Sources whose release made the test fail more often than pinned, however weakly."""
    base = case.base[0] / case.base[1] if case.base[1] else 0.0
    return [s for s, (f, n) in case.released.items() if f and n and f / n > base]


def leading_suspect(case: Case) -> str | None:
    """The source whose release made the test fail most clearly more often than pinned (p below
    SUSPECT), short of significance; None when none did."""
    leads = [s for s in moved(case) if case.p(s) < SUSPECT]
    return min(leads, key=lambda s: (case.p(s), s)) if leads else None


def _undetermined(case: Case, source: str, trace: Trace) -> Cause:
    counts = counts_of(case, source)
    more = runs_to_decide(tuple(counts.released), tuple(counts.pinned), SIGNIFICANT)
    decide = (f"about {more} more {counts.unit} (pinned and released) would decide it at p < {SIGNIFICANT:g}"
              if more else "at the rates seen, no affordable number of runs would decide it")
    evidence = f"{_evidence(case, source, counts)} (p={case.p(source):.2g}); the budget ended before it was decided: {decide}"
    record, trace_error = trace.of(case.nodeid)
    kwargs = {}
    if source in (*sources.FAMILIES, "determinism"):
        kwargs.update(trace=record, trace_error=trace_error)
    elif source == "threads":
        kwargs["deviation"] = deviation(case.digests)
    elif source == "order":
        kwargs.update(polluter=case.polluter, state=case.state)
    return make_cause(source, case.p(source), evidence, nodeid=case.nodeid, counts=counts, status="undetermined",
                      more_runs=more, **kwargs)


def _unknown(case: Case) -> Cause:
    tried = [s for s in TRIED if s in case.released]
    if case.pin is None:
        evidence = "fails under every pinned setting tried: " + "; ".join(
            f"seeds {seed}, hash seed {hashseed}: {f}/{n} failed" for seed, hashseed, f, n in case.pinned_tries)
    else:
        evidence = f"pinned {case.base[0]}/{case.base[1]} failed; released: " + ", ".join(
            f"{sources.label(s)} {case.released[s][0]}/{case.released[s][1]}" for s in tried)
    untried = [s for s in TRIED if s not in case.released and s not in case.not_drawn]
    if untried and case.pin is not None:
        evidence += f" (not tried in the budget: {', '.join(sources.label(s) for s in untried)})"
    if case.not_drawn and case.pin is not None:
        evidence += f" (never drawn by the test, so not released: {', '.join(sources.label(s) for s in case.not_drawn)})"
    cause = make_cause(sources.UNKNOWN, None, evidence, nodeid=case.nodeid, tried=[sources.label(s) for s in tried])
    weak = moved(case)
    if weak:   # some failures released, too few to single out a source: no hint away from them
        cause.hint = ("too few failures to single out a source (" + ", ".join(
            f"{sources.label(s)} {case.released[s][0]}/{case.released[s][1]}" for s in weak)
            + "): audit again with a larger --budget; the experiments continue where the evidence is")
    return cause
