"""The ``audit flaky`` result: one verdict per test, its failing settings and its causes.

Schema ``ml-audit.flaky/4`` (``audit/schemas/flaky.schema.json``). Version 4 added each test's
``fix`` (the verified patch ``audit flaky --fix`` wrote; a version 3 document is a valid version 4
one). Version 3 added the cause status
``undetermined`` (a leading suspect the budget ended before deciding, with ``more_runs``), so a
version 2 reader could not read every status; it also added the optional ``attribution.budget``,
``attribution.per_test`` and ``settings.attribute``. Version 2 added to each cause
``status`` (confirmed / suspected / unknown), ``confirmed``, ``counts`` (the experiment's numbers as
fields, the confirmation run's among them), ``state`` (what a polluter leaves, as data) and ``trace_error``, and made an unknown cause's
``p_value`` null. ``from_json`` reads version 1 results too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "ml-audit.flaky/4"
READABLE = ("ml-audit.flaky/1", "ml-audit.flaky/2", "ml-audit.flaky/3", SCHEMA)

VERDICTS = ("flaky", "pass", "fail", "skip", "error", "not run")
EVIDENCE = ("strong", "weak")        # of a pass: whether its executions bound the failure rate
CAUSE_STATUSES = ("confirmed", "suspected", "undetermined", "unknown")


@dataclass
class Site:
    """A project line where randomness was drawn or uninitialised memory was made."""

    path: str
    line: int
    function: str = ""

    def to_json(self) -> dict:
        return {"path": self.path, "line": self.line, "function": self.function}

    @classmethod
    def from_json(cls, data: dict) -> "Site":
        return cls(path=data["path"], line=int(data["line"]), function=data.get("function") or "")

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Counts:
    """An experiment's numbers as (failures, executions): everything pinned, the source released,
    and the confirmation (only the source pinned, every other one released; None: not run)."""

    pinned: tuple[int, int] = (0, 0)
    released: tuple[int, int] = (0, 0)
    unit: str = "executions"          # executions | interpreters (of ``released``)
    confirmation: tuple[int, int] | None = None

    def to_json(self) -> dict:
        return {"pinned": list(self.pinned), "released": list(self.released), "unit": self.unit,
                "confirmation": list(self.confirmation) if self.confirmation is not None else None}

    @classmethod
    def from_json(cls, data: dict | None) -> "Counts | None":
        if not data:
            return None
        confirmation = data.get("confirmation")
        return cls(pinned=tuple(data["pinned"]), released=tuple(data["released"]), unit=data.get("unit", "executions"),
                   confirmation=tuple(confirmation) if confirmation is not None else None)


@dataclass
class StateChange:
    """One piece of global state a test left behind (found by the statediff probe)."""

    kind: str                         # env | dtype | cwd | global | rng | ...
    name: str
    before: Any = None
    after: Any = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "StateChange":
        return cls(kind=data["kind"], name=data.get("name", ""), before=data.get("before"), after=data.get("after"))


@dataclass
class Cause:
    """Why a flaky test fails: the source whose variation alone reproduces it, and where.

    ``status`` is ``confirmed`` only when the source was significant and pinning it alone made the
    failures vanish; ``suspected`` when it was significant without that confirmation;
    ``undetermined`` when it led (failed more often released than pinned) but the budget ended
    before the test decided (``more_runs``: about how many more runs would); ``unknown`` when no
    source moved the failure rate (then ``p_value`` is None: no rejected source lends its own).
    """

    source: str
    status: str
    p_value: float | None
    evidence: str
    hint: str = ""
    counts: Counts | None = None
    sites: list[Site] = field(default_factory=list)
    call_path: list[str] = field(default_factory=list)
    polluter: str | None = None
    state: list[StateChange] = field(default_factory=list)
    trace_error: str | None = None    # why no draw site could be traced, when tracing failed
    more_runs: int | None = None      # undetermined only: about how many more runs would decide it

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    def to_json(self) -> dict:
        return {"source": self.source, "status": self.status, "confirmed": self.confirmed,
                "p_value": self.p_value, "evidence": self.evidence, "hint": self.hint,
                "counts": self.counts.to_json() if self.counts else None,
                "sites": [s.to_json() for s in self.sites], "call_path": list(self.call_path),
                "polluter": self.polluter, "state": [c.to_json() for c in self.state],
                "trace_error": self.trace_error, "more_runs": self.more_runs}

    @classmethod
    def from_json(cls, data: dict) -> "Cause":
        status = data.get("status")
        if status is None:   # version 1 recorded no confirmation
            status = "unknown" if data["source"] == "unknown" else "suspected"
        p = data.get("p_value")
        return cls(source=data["source"], status=status,
                   p_value=None if status == "unknown" or p is None else float(p),
                   evidence=data.get("evidence", ""), hint=data.get("hint", ""),
                   counts=Counts.from_json(data.get("counts")),
                   sites=[Site.from_json(s) for s in data.get("sites") or ()],
                   call_path=list(data.get("call_path") or ()), polluter=data.get("polluter"),
                   state=[StateChange.from_json(c) for c in data.get("state") or () if isinstance(c, dict)],
                   trace_error=data.get("trace_error"), more_runs=data.get("more_runs"))


@dataclass
class Fix:
    """The patch ``audit flaky --fix`` wrote for a test's cause, and whether it helped: the cause's
    minimal repro run in a mirror of the project before and after the patch."""

    path: str                          # the .diff file
    kind: str                          # generator | zeros | tolerance | setenv
    files: list[str] = field(default_factory=list)   # project files it changes
    note: str = ""                     # what it does, e.g. the tolerance and why
    before: tuple[int, int] = (0, 0)   # (failures, runs) of the repro without the patch
    after: tuple[int, int] = (0, 0)    # and with it
    repro: str = ""                    # the command run before and after

    @property
    def verified(self) -> bool:
        """The repro failed without the patch and never with it."""
        return self.before[0] > 0 and self.after[1] > 0 and self.after[0] == 0

    def words(self) -> str:
        """"verified: 0/6 failures after the patch (6/6 before)" or "did not help: ..."."""
        (bf, bn), (af, an) = self.before, self.after
        head = "verified" if self.verified else "did not help" if bf else "not verified: the repro passed before too"
        return f"{head}: {af}/{an} failures after the patch ({bf}/{bn} before)"

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "files": list(self.files), "note": self.note,
                "before": list(self.before), "after": list(self.after), "verified": self.verified,
                "repro": self.repro}

    @classmethod
    def from_json(cls, data: dict | None) -> "Fix | None":
        if not data:
            return None
        return cls(path=data["path"], kind=data["kind"], files=list(data.get("files") or ()), note=data.get("note", ""),
                   before=tuple(data.get("before") or (0, 0)), after=tuple(data.get("after") or (0, 0)),
                   repro=data.get("repro") or "")


SETTING_KEYS = ("seeds", "threads", "hashseed", "deterministic", "order", "round", "attempt")


@dataclass
class Setting:
    """The settings of one failing execution, and how it failed."""

    seeds: dict = field(default_factory=dict)
    threads: int | None = None
    hashseed: str | None = None
    deterministic: str | None = None
    order: str | None = None
    round: int | None = None
    attempt: int | None = None
    outcome: str | None = None
    digest: str = ""

    @classmethod
    def from_row(cls, row: dict) -> "Setting":
        return cls(**{k: row.get(k) for k in SETTING_KEYS}, outcome=row.get("outcome"), digest=row.get("digest") or "")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Setting":
        known = {k: data.get(k) for k in (*SETTING_KEYS, "outcome")}
        return cls(**{**known, "seeds": data.get("seeds") or {}}, digest=data.get("digest") or "")


@dataclass
class TestVerdict:
    """One test's verdict over every execution the audit gave it."""

    __test__ = False   # not a pytest test class

    nodeid: str
    verdict: str
    executions: int
    failures: int
    skips: int
    rate: float
    interval: tuple[float, float]
    failing_settings: list[Setting] = field(default_factory=list)
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
    causes: list[Cause] = field(default_factory=list)
    evidence_strength: str | None = None   # pass and fail: "strong" or "weak" (too few executions)
    not_run_reason: str | None = None
    writes: list[str] = field(default_factory=list)   # project files the test creates or changes
    timing: str | None = None   # flaky only: every failure was about time (audit.flaky.timing), and how
    children: dict | None = None   # Python processes it spawned: {"controlled": n, "uncontrolled": m}
    repro_runs: tuple | None = None         # (failures, runs) of the repro when attribution verified it
    counterfactual: str | None = None       # the repro with its cause pinned at a value that passed
    counterfactual_runs: tuple | None = None   # its (failures, runs)
    fix: Fix | None = None                  # the verified patch ``--fix`` wrote for its cause

    @property
    def mean_duration(self) -> float:
        return self.total_duration / max(1, self.executions + self.skips)

    def to_json(self) -> dict:
        return {
            "nodeid": self.nodeid, "verdict": self.verdict, "executions": self.executions,
            "failures": self.failures, "rate": round(self.rate, 6),
            "interval": [round(self.interval[0], 6), round(self.interval[1], 6)],
            "failing_settings": [s.to_json() for s in self.failing_settings], "repro": self.repro,
            "causes": [c.to_json() for c in self.causes],
            "repro_verified": self.repro_verified, "skips": self.skips,
            "outcomes": self.outcomes, "masked_by_reruns": self.masked,
            "draws": self.draws, "interpreters": self.interpreters,
            "confidence": self.confidence, "evidence": self.evidence,
            "failure_digests": self.failure_digests,
            "total_duration": round(self.total_duration, 4),
            "mean_duration": round(self.mean_duration, 6),
            "evidence_strength": self.evidence_strength, "not_run_reason": self.not_run_reason,
            "writes": list(self.writes), "timing": self.timing, "children": self.children,
            "repro_runs": list(self.repro_runs) if self.repro_runs else None,
            "counterfactual": self.counterfactual,
            "counterfactual_runs": list(self.counterfactual_runs) if self.counterfactual_runs else None,
            "fix": self.fix.to_json() if self.fix else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> "TestVerdict":
        return cls(nodeid=data["nodeid"], verdict=data["verdict"], executions=int(data["executions"]),
                   failures=int(data["failures"]), skips=int(data.get("skips", 0)), rate=float(data["rate"]),
                   interval=tuple(data["interval"]),
                   failing_settings=[Setting.from_json(s) for s in data.get("failing_settings") or ()],
                   failure_digests=list(data.get("failure_digests") or ()), outcomes=dict(data.get("outcomes") or {}),
                   masked=int(data.get("masked_by_reruns", 0)), draws=list(data.get("draws") or ()),
                   interpreters=int(data.get("interpreters", 0)), confidence=data.get("confidence", ""),
                   repro=data.get("repro"), repro_verified=data.get("repro_verified"),
                   evidence=data.get("evidence", ""), total_duration=float(data.get("total_duration", 0.0)),
                   causes=[Cause.from_json(c) for c in data.get("causes") or ()],
                   evidence_strength=data.get("evidence_strength"), not_run_reason=data.get("not_run_reason"),
                   writes=list(data.get("writes") or ()), timing=data.get("timing"), children=data.get("children"),
                   repro_runs=tuple(data["repro_runs"]) if data.get("repro_runs") else None,
                   counterfactual=data.get("counterfactual"),
                   counterfactual_runs=tuple(data["counterfactual_runs"]) if data.get("counterfactual_runs") else None,
                   fix=Fix.from_json(data.get("fix")))


@dataclass
class FlakyResult:
    """A whole ``audit flaky`` run: the verdicts and what was spent to reach them."""

    project: str
    tests: list[TestVerdict]
    settings: dict
    seconds: float
    executions: int
    interpreters: int
    stopped: str                     # "targets reached" | "budget spent" | "interrupted"
    state_dir: str = ""
    interrupted: bool = False
    rows: list[dict] = field(default_factory=list)     # raw rows (not in the JSON)
    rng_graph: dict = field(default_factory=dict)      # node-link RNG call graph of the flaky tests
    rng_hygiene: list = field(default_factory=list)    # tests consuming a global RNG they never seed
    attribution: dict = field(default_factory=dict)    # what attribution spent: seconds, executions, ...
    evidence: dict = field(default_factory=dict)       # the pass evidence level, weak count, what would bound them
    plan: dict = field(default_factory=dict)           # what the budget could reach, as planned (audit.flaky.plan)
    recorded: Any = None                               # where the history store put it (audit.recording)
    new_executions: int = 0                            # executions this invocation added (a resume adds to old ones)
    recorded_as: int | None = None                     # history run id an earlier invocation recorded it as
    error: str = ""                                    # why the executor stopped early (a lost cluster)
    wall_seconds: float = 0.0                          # detection and attribution together, this invocation
    deprecations: list[str] = field(default_factory=list)   # settings read but no longer meaningful
    fixes: dict = field(default_factory=dict)          # --fix: dir, seconds, and why tests got no patch

    @property
    def flaky(self) -> list[TestVerdict]:
        return [t for t in self.tests if t.verdict == "flaky"]

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "project": self.project, "settings": self.settings,
                "seconds": round(self.seconds, 2), "executions": self.executions,
                "interpreters": self.interpreters, "stopped": self.stopped,
                "attribution": self.attribution, "wall_seconds": round(self.wall_seconds, 2), "evidence": self.evidence, "plan": self.plan, "rng_graph": self.rng_graph, "rng_hygiene": self.rng_hygiene,
                **({"fixes": self.fixes} if self.fixes else {}), "tests": [t.to_json() for t in self.tests]}

    @classmethod
    def from_json(cls, data: dict) -> "FlakyResult":
        if data.get("schema") not in READABLE:
            raise ValueError(f"not an ml-audit flaky result: schema {data.get('schema')!r}")
        return cls(project=data.get("project", ""), tests=[TestVerdict.from_json(t) for t in data.get("tests") or ()],
                   settings=dict(data.get("settings") or {}), seconds=float(data.get("seconds", 0.0)),
                   executions=int(data.get("executions", 0)), interpreters=int(data.get("interpreters", 0)),
                   stopped=data.get("stopped", ""), interrupted=data.get("stopped") == "interrupted",
                   rng_graph=dict(data.get("rng_graph") or {}), rng_hygiene=list(data.get("rng_hygiene") or ()),
                   attribution=dict(data.get("attribution") or {}), evidence=dict(data.get("evidence") or {}),
                   plan=dict(data.get("plan") or {}), fixes=dict(data.get("fixes") or {}))
