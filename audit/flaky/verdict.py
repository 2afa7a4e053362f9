"""From rows to one verdict per test: flaky, pass, fail, skip or error, with rate and interval.

``flaky`` means both outcomes were seen under settings that should not matter (every setting an
audit varies is one a test should not depend on). A test that fails every time is ``fail``
(broken, not flaky), or ``error`` when it never got as far as its body (setup error, hang,
crash). Failures that pytest-rerunfailures retried are counted, and said so, because a rerun
that passes hides them from the user's own runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from audit.stats import clopper_pearson, rate

SETTING_KEYS = ("seeds", "threads", "hashseed", "deterministic", "order", "round", "attempt")


@dataclass
class TestVerdict:
    nodeid: str
    verdict: str
    executions: int
    failures: int
    skips: int
    rate: float
    interval: tuple[float, float]
    failing_settings: list[dict] = field(default_factory=list)
    failure_digests: list[str] = field(default_factory=list)
    outcomes: dict = field(default_factory=dict)
    masked: int = 0                     # failures pytest-rerunfailures retried
    draws: list[str] = field(default_factory=list)   # RNG families the test consumed
    interpreters: int = 0
    confidence: str = ""
    repro: str | None = None
    repro_verified: bool | None = None
    evidence: str = ""
    total_duration: float = 0.0
    causes: list[dict] = field(default_factory=list)   # filled by attribute.attribute (issue 4 format)

    def to_json(self) -> dict:
        return {
            "nodeid": self.nodeid, "verdict": self.verdict, "executions": self.executions,
            "failures": self.failures, "rate": round(self.rate, 6),
            "interval": [round(self.interval[0], 6), round(self.interval[1], 6)],
            "failing_settings": self.failing_settings, "repro": self.repro,
            "causes": self.causes,
            "repro_verified": self.repro_verified, "skips": self.skips,
            "outcomes": self.outcomes, "masked_by_reruns": self.masked,
            "draws": self.draws, "interpreters": self.interpreters,
            "confidence": self.confidence, "evidence": self.evidence,
            "failure_digests": self.failure_digests,
            "total_duration": round(self.total_duration, 4),
            "mean_duration": round(self.total_duration / max(1, self.executions + self.skips), 6),
        }


def failing_setting(row: dict) -> dict:
    out = {k: row.get(k) for k in SETTING_KEYS}
    out["outcome"] = row.get("outcome")
    out["digest"] = row.get("digest", "")
    return out


def decide(rows: list[dict]) -> str:
    klasses = Counter(r["klass"] for r in rows)
    if not rows:
        return "error"
    if klasses["fail"] and klasses["pass"]:
        return "flaky"
    if klasses["pass"]:
        return "pass"
    if klasses["fail"]:
        kinds = {r["outcome"] for r in rows if r["klass"] == "fail"}
        return "fail" if "failed" in kinds else "error"
    return "skip"


def summarise(nodeid: str, rows: list[dict], keep_settings: int = 10) -> TestVerdict:
    ran = [r for r in rows if r["klass"] != "skip"]
    fails = [r for r in ran if r["klass"] == "fail"]
    verdict = decide(rows)
    n, k = len(ran), len(fails)
    masked = sum(1 for r in fails if r.get("masked"))
    draws = sorted({f for r in rows for f, used in (r.get("draws") or {}).items() if used}
                   | {f for r in rows for fx in r.get("fixture_draws", []) for f in fx["families"]})
    digests = [d for d, _ in Counter(r.get("digest", "") for r in fails).most_common(3) if d]
    evidence = ""
    if verdict == "flaky":
        evidence = f"failed {k} of {n} executions and passed the others"
        if masked:
            evidence += (f"; pytest-rerunfailures retried {masked} of these failures, so the "
                         "project's own runs report them as passes")
    elif not rows:
        evidence = "never ran: not collected in the audit's interpreters"
    return TestVerdict(
        nodeid=nodeid, verdict=verdict, executions=n, failures=k, skips=len(rows) - n,
        rate=rate(k, n), interval=clopper_pearson(k, n) if n else (0.0, 1.0),
        failing_settings=[failing_setting(r) for r in fails[:keep_settings]],
        failure_digests=digests, outcomes=dict(Counter(r["outcome"] for r in rows)),
        masked=masked, draws=draws, interpreters=len({r["unit"] for r in rows}), evidence=evidence,
        total_duration=sum(r.get("duration") or 0.0 for r in rows),
    )
