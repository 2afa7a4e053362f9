"""From rows to one verdict per test: flaky, pass, fail, skip, error or not run, with rate and interval.

``flaky`` means both outcomes were seen under settings that should not matter (every setting an
audit varies is one a test should not depend on). A test that fails every time is ``fail``
(broken, not flaky), or ``error`` when it never got as far as its body (setup error, hang,
crash); one that never ran is ``not run``, with the reason. A pass is *weak evidence* until its
failure-free executions bound the failure rate below the configured level (95% confidence).
Failures that pytest-rerunfailures retried are counted, and said so, because a rerun that
passes hides them from the user's own runs.
"""

from __future__ import annotations

from collections import Counter

from audit.flaky import children
from audit.flaky.timing import timing_cause, timing_of
from audit.model.flaky import Setting, TestVerdict
from audit.stats import clopper_pearson, rate, upper_bound_no_failures


def decide(rows: list[dict]) -> str:
    klasses = Counter(r["klass"] for r in rows)
    if not rows:
        return "not run"
    if klasses["fail"] and klasses["pass"]:
        return "flaky"
    if klasses["pass"]:
        return "pass"
    if klasses["fail"]:
        kinds = {r["outcome"] for r in rows if r["klass"] == "fail"}
        return "fail" if "failed" in kinds else "error"
    return "skip"


FAULTS = ("timeout", "crashed")


def under_load(rows: list[dict]) -> tuple[list[dict], str]:
    """The executions that count, and a note on the hangs and crashes that do not.

    A hang or crash beside other units may be ours (two heavy tests at once, a timeout under
    load): it counts only once the test also hung or crashed running alone on the machine.
    """
    loaded = [r for r in rows if r.get("outcome") in FAULTS and not r.get("alone")]
    alone = [r for r in rows if r.get("alone")]
    if not loaded or any(r.get("outcome") in FAULTS for r in alone):
        return rows, ("; it hung or crashed running alone too" if loaded else "")
    if len(loaded) == len(rows):   # nothing else to go by: keep them, and say where they happened
        return rows, "every execution hung or crashed beside other tests; not yet rerun alone (budget)"
    kinds = sorted({r["outcome"] for r in loaded})
    note = (f"{len(loaded)} {'/'.join(kinds)} beside other tests not counted: "
            + (f"it ran clean alone {len(alone)} times" if alone else "not yet rerun alone (budget)"))
    return [r for r in rows if r not in loaded], note


def summarise(nodeid: str, rows: list[dict], keep_settings: int = 10, evidence_rate: float = 0.05,
              not_run_reason: str = "the budget ended before it got a turn") -> TestVerdict:
    all_rows = rows
    rows, load_note = under_load(rows)
    ran = [r for r in rows if r["klass"] != "skip"]
    fails = [r for r in ran if r["klass"] == "fail"]
    verdict = decide(rows)
    n, k = len(ran), len(fails)
    masked = sum(1 for r in fails if r.get("masked"))
    # a scoped fixture another test set up still feeds this one: its families come from the signature
    draws = sorted({f for r in rows for f, used in (r.get("draws") or {}).items() if used}
                   | {f for r in rows for fx in r.get("fixture_draws", []) for f in fx["families"]}
                   | {str(key).rsplit(":", 1)[1] for r in rows for key, _ in (r.get("signature") or ())
                      if str(key).startswith("fixture:")})
    digests = [d for d, _ in Counter(r.get("digest", "") for r in fails).most_common(3) if d]
    evidence = ""
    if verdict == "flaky":
        evidence = f"failed {k} of {n} executions and passed the others"
        if masked:
            evidence += (f"; pytest-rerunfailures retried {masked} of these failures, so the "
                         "project's own runs report them as passes")
    elif not all_rows:
        evidence = f"never ran: {not_run_reason}"
    if load_note:
        evidence = "; ".join(p for p in (evidence, load_note.lstrip("; ")) if p)
    spawned = children.summary(rows)
    if spawned:
        evidence = "; ".join(p for p in (evidence, children.evidence(spawned)) if p)
    timing = timing_of(rows) if verdict == "flaky" else None
    strength = None
    if verdict == "pass":
        strength = "strong" if upper_bound_no_failures(n) < evidence_rate else "weak"
    elif verdict == "fail":   # failed every time: strong once that rules out a coin flip (rate > 50%, 95%)
        strength = "strong" if clopper_pearson(k, n)[0] > 0.5 else "weak"
    return TestVerdict(
        nodeid=nodeid, verdict=verdict, executions=n, failures=k, skips=len(rows) - n,
        rate=rate(k, n), interval=clopper_pearson(k, n) if n else (0.0, 1.0),
        failing_settings=[Setting.from_row(r) for r in fails[:keep_settings]],
        failure_digests=digests, outcomes=dict(Counter(r["outcome"] for r in all_rows)),
        masked=masked, draws=draws, interpreters=len({r["unit"] for r in rows}), evidence=evidence,
        total_duration=sum(r.get("duration") or 0.0 for r in rows), evidence_strength=strength,
        writes=sorted({p for r in rows for p in r.get("wrote") or ()}),
        not_run_reason=not_run_reason if not all_rows else None, timing=timing, children=spawned,
        causes=[timing_cause(timing, k, n)] if timing else [],
    )
