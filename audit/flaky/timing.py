"""Failures that say they are about time: a deadline, a timeout, an assertion on a measured duration.

Wall-clock time is the one source of variation the audit cannot pin, so no experiment can confirm
it; but such a failure names it in its own words. A flaky test whose every failure is of this kind
gets the cause ``timing`` (``suspected``: the words, not an experiment, are the evidence) instead of
an ``unknown`` that sends the user looking at RNGs.
"""

from __future__ import annotations

import re

from audit.model.flaky import Cause

HYPOTHESIS, PYTEST_TIMEOUT, RAISED, ASSERTION = ("Hypothesis deadline exceeded", "pytest-timeout",
                                               "a timeout raised by the test", "an assertion on a measured duration")
# (what the exception line says, the kind reported)
_RAISED = [
    (re.compile(r"\bDeadlineExceeded\b"), HYPOTHESIS),
    (re.compile(r"Unreliable test timings|exceeded the deadline"), HYPOTHESIS),
    (re.compile(r"\bTimeout \(>[\d.]+s\) from pytest-timeout"), PYTEST_TIMEOUT),
    (re.compile(r"^(?:[\w.]+\.)?(?:TimeoutError|TimeoutExpired)\b"), RAISED),
]
HINTS = {
    HYPOTHESIS: "drop the deadline for this test (@settings(deadline=None)) or make each example cheaper",
    PYTEST_TIMEOUT: "raise the test's timeout mark, or make it faster: it is close to its limit on this machine",
    RAISED: "wait for the event the test needs (a result, a ready signal) rather than a fixed time",
    ASSERTION: "assert on the work done rather than the time taken, or give the bound room for a loaded machine",
}
# a name a measured duration goes by, in the assertion that failed
_DURATION = re.compile(r"\b(?:time\.(?:time|perf_counter|monotonic|process_time)(?:_ns)?|perf_counter|monotonic|"
                       r"timeit|elapsed\w*|duration\w*|latency\w*|took|seconds|secs|runtime|wall_?time|"
                       r"time_taken|t_?(?:start|end|0|1))\b")


def kind_of(message: str, failing_line: str = "") -> str | None:
    """The kind of timing failure an exception line (and the source line that failed) shows, if any."""
    for pattern, kind in _RAISED:
        if pattern.search(message or ""):
            return kind
    line = (failing_line or "").strip().lstrip(">").strip()
    if line.startswith("assert") and _DURATION.search(line):
        return ASSERTION
    return None


def failing_line(longrepr_text: str) -> str:
    """The last source line pytest marked with ``>`` in a failure's report: the line that failed."""
    marked = [line for line in (longrepr_text or "").splitlines() if line.startswith(">")]
    return marked[-1][:300] if marked else ""


def timing_of(rows: list[dict]) -> str | None:
    """The timing kind when every failing execution among *rows* was a timing failure."""
    kinds = [r.get("timing") for r in rows if r.get("klass") == "fail"]
    if not kinds or not all(kinds):
        return None
    return max(set(kinds), key=kinds.count)


def timing_cause(kind: str, failures: int, executions: int) -> Cause:
    """The cause of a test whose failures were all about time."""
    return Cause(source="timing", status="suspected", p_value=None,
                 evidence=(f"every one of its {failures} failures (of {executions} executions) was {kind}; "
                           "time cannot be pinned, so no experiment confirms it"),
                 hint=HINTS.get(kind, "the test depends on how fast the machine runs it"))
