"""``audit flaky``'s engine: plan, run, decide, and prove each flaky test with a repro command.

Collects the tests, then keeps every worker busy with units from the planner until each test
is proven flaky or has reached its target, or the budget is spent. As soon as a test turns out
flaky its repro commands are run (shortest first) until one fails again. Every result is
appended to a state folder outside the project, so Ctrl-C keeps what was measured and
``resume=True`` carries on from it. Engines never format output: the result goes to reporters.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

from audit import executor as executors
from audit import forkserver
from audit.errors import AuditError
from audit.job import ExecutorLost, Job
from audit.flaky import repro as repro_mod
from audit.flaky.plan import Axes, Planner
from audit.flaky.runner import Unit, run_unit
from audit.flaky.state import RunState, exclusive
from audit.flaky.verdict import summarise
from audit.model.flaky import FlakyResult
from audit.project import cache_dir, collect, unused_plugins
from audit.scratch import sync_copy
from audit.stats import runs_to_bound

REPRO_TIMEOUT = 120.0
# pytest's own exit codes for "could not run them" (interrupted by errors, internal error, usage
# error, nothing collected): the project is broken, so the audit stops. A unit we killed (stalled
# under load) or that crashed is recorded and the audit goes on.
PYTEST_FAILED_TO_RUN = (2, 3, 4, 5)
# the least share of the budget attribution keeps when detection holds the handover back for
# fast tests that draw randomness and are still short of the planner's floor of executions
ATTRIBUTION_FLOOR = 0.25


class _Audit:
    """One run of the engine: the scheduler between the planner, the pool and the repros."""

    def __init__(self, cfg, progress=None, resume: bool = False, durations: dict | None = None, on_plan=None,
                 handover: float | None = None, t0: float | None = None, forks=None):
        self.t0 = time.monotonic() if t0 is None else t0   # the budget counts collection too
        # seconds after which detection stops once it has found a flaky test (attribution's share
        # of the budget follows); None: detection may spend the whole budget
        self.handover = handover
        self.survey_end: float | None = None   # seconds of the budget spent when the survey ended
        self.cfg = cfg
        self.flaky_cfg = cfg.flaky
        self.progress = progress or (lambda **kw: None)
        self.on_plan = on_plan or (lambda plan: None)
        self.plan: dict = {}
        self.running: dict[int, object] = {}
        self.axes = Axes.from_config(cfg.flaky)
        base = state_dir(cfg.root)
        self.rows: list[dict] = []
        self.units: dict[int, dict] = {}
        self.rows_by_unit: dict[int, list[dict]] = {}
        self.repros: dict[str, repro_mod.Repro] = {}
        self.repro_queue: list[tuple[str, list]] = []
        self.repro_running: set[str] = set()
        self.spent_before = 0.0
        if resume:
            self.state = RunState.latest(base)
            old_rows, old_units = self.state.load()
            meta = self.state.meta
            if meta.get("root") != str(cfg.root):
                raise AuditError("the saved audit belongs to another project")
            self.tests = meta["tests"]
            seed = meta["master_seed"]
            self.spent_before = meta.get("seconds", 0.0)
            imports, collect_seconds = meta.get("imports", []), meta.get("collect_seconds", 0.0)
        else:
            imports, started = [], time.monotonic()
            self.tests = collect(cfg, imports=imports)
            collect_seconds = time.monotonic() - started
            seed = cfg.flaky.seed or secrets.randbelow(2 ** 31 - 1) + 1
            self.state = RunState.new(base, {"root": str(cfg.root), "tests": self.tests, "master_seed": seed,
                                             "seconds": 0.0, "next_unit": 0, "repros": {}, "imports": imports,
                                             "collect_seconds": round(collect_seconds, 2)})
            old_rows, old_units = [], {}
        self.master_seed = seed
        self.forks = forks
        if forks is not None:
            forks.start(imports, collect_seconds, seed=f"{seed}:{self.state.meta.get('next_unit', 0)}")
        known = {n: d for n, d in (durations or {}).items() if n in set(self.tests)}
        self.planner = Planner(self.tests, self.axes, seed, runs=cfg.flaky.runs, budget=float(cfg.flaky.budget),
                               durations=known)
        self.planner.next_id = self.state.meta.get("next_unit", 0)
        self.planner.per_kind = dict(self.state.meta.get("units_per_kind", {}))
        # a resumed plan draws its next units from a stream that differs from the first run's
        self.planner.rand.seed(f"{seed}:{self.planner.next_id}")
        for unit in old_units.values():
            self.units[unit["id"]] = unit
        for row in old_rows:
            self._add_row(row)
        self.planner.record(old_rows)
        self.rows_before = len(old_rows)
        self.watched = {r["nodeid"] for r in old_rows if "wrote" in r}
        for nodeid, rec in self.state.meta.get("repros", {}).items():
            self.repros[nodeid] = repro_mod.Repro(nodeid, rec["env"], rec["args"], rec["preceding"],
                                                  rec["verified"])
        self.plugins_off = unused_plugins(cfg.root, self.tests)
        self.workdir = self.state.path / "work"
        self.workdir.mkdir(parents=True, exist_ok=True)

    def _add_row(self, row: dict) -> None:
        self.rows.append(row)
        self.rows_by_unit.setdefault(row["unit"], []).append(row)

    # ---- scheduling ---------------------------------------------------------------------
    def run(self) -> FlakyResult:
        budget = float(self.flaky_cfg.budget)
        timeout = float(self.flaky_cfg.timeout)
        self.deadline = self.t0 + max(0.0, budget - self.spent_before)
        self.executor = executors.make(self.cfg, self.workdir, self.flaky_cfg.workers or os.cpu_count() or 1)
        workers = self.workers = self.executor.slots
        if self.executor.name != "local":
            self.forks = None
        if self.forks is not None:
            self.planner.hashseeds = self.forks.hashseed
        for nodeid in self._flaky_without_repro():
            self._queue_repro(nodeid)
        interrupted = False
        stopped = "targets reached"
        self.lost = ""

        def next_job():
            nonlocal stopped
            if self._handing_over():
                stopped = "budget spent"
                return None
            if time.monotonic() < self.deadline - self.planner.startup:
                # one candidate per test at a time: a longer one only runs if the shorter passed
                for i, (nodeid, cands) in enumerate(self.repro_queue):
                    if nodeid not in self.repro_running:
                        cand = cands.pop(0)
                        if not cands:
                            self.repro_queue.pop(i)
                        self.repro_running.add(nodeid)
                        return Job("repro", nodeid, cand, verify_repro,
                                   (self.cfg, cand, self._repro_timeout(), self.forks))
            reserve = self.planner.startup + 1.0
            unit = self.planner.next_unit(self._detection_end() - time.monotonic() - reserve, workers,
                                          running=list(self.running.values()))
            if unit is None:
                if self.planner.pending() and not self.running:
                    stopped = "budget spent"
                return None
            unit.plugins_off = self.plugins_off
            unit.watch = [t for t in unit.tests if t not in self.watched]
            self.watched.update(unit.watch)
            self.units[unit.id] = json.loads(unit.to_json())
            self.running[unit.id] = unit
            cpus, gpus = unit_resources(unit)
            return Job("unit", unit.id, unit, unit_job,
                       (self.cfg, unit, self.planner.timeout_for(unit, timeout), self.forks), cpus=cpus, gpus=gpus)

        def on_result(job, value):
            if job.kind == "unit":
                self.running.pop(job.key, None)
                self._unit_done(value)
            else:
                self._repro_done(job.key, job.payload, value)

        try:
            self.executor.run(next_job, on_result)
        except KeyboardInterrupt:
            interrupted = True
            stopped = "interrupted"
        except ExecutorLost as exc:   # the partial result, and the reason, instead of a hang
            interrupted = True
            stopped = "interrupted"
            self.lost = str(exc)
        finally:
            self.executor.close()
        self.state.meta["seconds"] = self.spent_before + (time.monotonic() - self.t0)
        self.state.meta["next_unit"] = self.planner.next_id
        self.state.meta["units_per_kind"] = dict(self.planner.per_kind)
        self.state.meta["rescheduled"] = self.state.meta.get("rescheduled", 0) + self.executor.rescheduled
        self.state.save()
        return self._result(stopped, interrupted)

    def _repro_timeout(self) -> float:
        return min(REPRO_TIMEOUT, float(self.flaky_cfg.timeout) * 2 + 30)

    def _handover_at(self) -> float | None:
        """Seconds of the budget after which detection hands over, once the survey is done: its
        share of what the survey left (a slow machine's survey does not eat detection's share)."""
        if self.handover is None:
            return None
        if self.survey_end is None:   # no plan yet (a test never timed): the share of the whole budget
            return self.handover
        budget = float(self.flaky_cfg.budget)
        return self.survey_end + self.handover / budget * (budget - self.survey_end)

    def _may_hand_over(self) -> bool:
        """A test is flaky for attribution to explain, every test has run (or been skipped) at
        least once (a test that never ran is worse news than a cause found a little later), and
        every fast test that draws randomness has the planner's floor of executions, unless
        waiting for that would leave attribution less than ATTRIBUTION_FLOOR of the budget."""
        missing = set(self.state.meta.get("missing", []))
        tally = self.planner.tally
        if not (any(t.flaky for t in tally.values()) and all(t.ran or n in missing for n, t in tally.items())):
            return False
        spent = self.spent_before + time.monotonic() - self.t0
        return not self.planner.starved() or spent >= (1 - ATTRIBUTION_FLOOR) * float(self.flaky_cfg.budget)

    def _detection_end(self) -> float:
        """The monotonic time detection should be done by: the handover once it may hand over."""
        at = self._handover_at()
        if at is not None and self._may_hand_over():
            return min(self.deadline, self.t0 - self.spent_before + at)
        return self.deadline

    def _handing_over(self) -> bool:
        """Detection's share is spent and it may hand over (:meth:`_may_hand_over`)."""
        at = self._handover_at()
        if at is None:
            return False
        spent = self.spent_before + time.monotonic() - self.t0
        return spent >= at - self.planner.startup and self._may_hand_over()

    def _unit_done(self, res) -> None:
        unit = res.unit
        if res.returncode in PYTEST_FAILED_TO_RUN and not res.rows and not res.interrupted:
            raise AuditError(f"pytest could not run the tests (exit {res.returncode}):\n"
                             f"{res.log_tail[-1500:]}")
        for row in res.rows:
            self._add_row(row)
        missing = {e["nodeid"] for e in res.events if e.get("event") == "missing"}
        if missing - set(self.state.meta.get("missing", [])):
            self.state.meta["missing"] = sorted(missing | set(self.state.meta.get("missing", [])))
        self.planner.record(res.rows, res.seconds, res.startup, unit=unit, missing=missing)
        if not self.plan and not self.planner.surveying and all(n in self.planner.test_seconds for n in self.tests):
            self.plan = self.planner.describe(self.deadline - time.monotonic(), self.workers)
            self.survey_end = self.spent_before + time.monotonic() - self.t0
            self.on_plan(self.plan)
        self.state.append(unit.to_json(), res.rows)
        self.state.meta["next_unit"] = self.planner.next_id
        self.state.meta["units_per_kind"] = dict(self.planner.per_kind)
        self.state.meta["seconds"] = self.spent_before + (time.monotonic() - self.t0)
        self.state.save()
        for nodeid in self._flaky_without_repro():
            self._queue_repro(nodeid)
        found = sorted(n for n, t in self.planner.tally.items() if t.flaky)
        self.progress(executions=len(self.rows), interpreters=len(self.units), flaky=len(found), found=found,
                      elapsed=self.spent_before + time.monotonic() - self.t0,
                      budget=float(self.flaky_cfg.budget), pending=len(self.planner.pending()))

    # ---- repro commands -----------------------------------------------------------------
    def _flaky_without_repro(self) -> list[str]:
        queued = {n for n, _ in self.repro_queue}
        return [n for n, t in self.planner.tally.items()
                if t.flaky and n not in self.repros and n not in queued]

    def _queue_repro(self, nodeid: str) -> None:
        fails = [r for r in self.rows if r["nodeid"] == nodeid and r["klass"] == "fail"
                 and r["outcome"] not in ("timeout", "crashed")]
        cands = repro_mod.candidates(fails, self.rows_by_unit, self.units, self.cfg.pytest_args)
        if cands:
            self.repro_queue.append((nodeid, cands))

    def _repro_done(self, nodeid: str, cand: repro_mod.Repro, failed: bool) -> None:
        self.repro_running.discard(nodeid)
        known = self.repros.get(nodeid)
        if known is not None and known.verified:
            return
        cand.verified = failed
        if failed or known is None:
            self.repros[nodeid] = cand
        if failed:  # no need to try the longer candidates
            self.repro_queue = [(n, c) for n, c in self.repro_queue if n != nodeid]
        self.state.meta.setdefault("repros", {})[nodeid] = {
            "env": cand.env, "args": cand.args, "preceding": cand.preceding, "verified": cand.verified}

    # ---- the result ---------------------------------------------------------------------
    def _result(self, stopped: str, interrupted: bool) -> FlakyResult:
        by_test: dict[str, list[dict]] = {n: [] for n in self.tests}
        for row in self.rows:
            by_test.setdefault(row["nodeid"], []).append(row)
        verdicts = []
        missing = set(self.state.meta.get("missing", []))
        unscheduled = {"budget spent": "the budget ended before it got a turn",
                       "interrupted": "the audit was interrupted before it got a turn"}.get(stopped, "never scheduled")
        rate = float(self.flaky_cfg.evidence_rate)
        for nodeid in self.tests:
            reason = ("pytest did not collect it when asked for it by node id" if nodeid in missing
                      else unscheduled)
            v = summarise(nodeid, by_test[nodeid], evidence_rate=rate, not_run_reason=reason)
            v.confidence = self.planner.confidence(nodeid) if nodeid in self.planner.tally else ""
            rep = self.repros.get(nodeid)
            if v.verdict in ("flaky", "fail", "error") and v.failures:
                if rep is None:
                    fails = [r for r in by_test[nodeid] if r["klass"] == "fail"]
                    cands = repro_mod.candidates(fails, self.rows_by_unit, self.units,
                                                 self.cfg.pytest_args, limit=1)
                    rep = cands[0] if cands else None
                if rep is not None:
                    v.repro, v.repro_verified = rep.command(), rep.verified
            verdicts.append(v)
        settings = dict(self.axes.describe())
        settings.update({"master_seed": self.master_seed, "budget": float(self.flaky_cfg.budget),
                         "runs": self.flaky_cfg.runs, "timeout": float(self.flaky_cfg.timeout),
                         "workers": self.workers, "executor": self.executor.name,
                         "rescheduled": self.state.meta.get("rescheduled", 0),
                         "gpu_models": list(self.executor.gpu_models),
                         "fork_server": (self.forks.describe() if self.forks is not None
                                         else {"used": False, "fallback": fork_server_off(self.cfg)}),
                         **({"executor_error": self.lost} if self.lost else {}),
                         "pytest_args": list(self.cfg.pytest_args),
                         "test_paths": list(self.cfg.test_paths)})
        return FlakyResult(project=str(self.cfg.root), tests=verdicts, settings=settings,
                           evidence=_evidence(verdicts, rate, settings["workers"]), plan=self.plan,
                           seconds=self.state.meta.get("seconds", 0.0), executions=len(self.rows),
                           interpreters=len({r["unit"] for r in self.rows}), stopped=stopped,
                           state_dir=str(self.state.path), interrupted=interrupted, rows=self.rows,
                           new_executions=len(self.rows) - self.rows_before,
                           recorded_as=self.state.meta.get("recorded_as"), error=self.lost)


def _evidence(verdicts, rate: float, workers: int) -> dict:
    """How many passes are weak evidence, and the executions (and seconds, at the durations
    measured, on this many workers) that would make every one of them strong."""
    needed = runs_to_bound(rate)
    weak = [v for v in verdicts if v.verdict == "pass" and v.evidence_strength == "weak"]
    more = {v.nodeid: needed - v.executions for v in weak}
    seconds = sum(more[v.nodeid] * v.total_duration / max(1, v.executions) for v in weak)
    return {"rate": rate, "confidence": 0.95, "weak": len(weak), "more_executions": sum(more.values()),
            "more_seconds": round(seconds / max(1, workers), 1)}


def unit_resources(unit: Unit) -> tuple[int, int]:
    """(CPUs, GPUs) a unit keeps busy: its largest torch thread count (all of a node when it must
    run alone), and one GPU when it varies the CUDA axes."""
    cpus = max([1, unit.env_threads or 1, *unit.threads])
    return (1 << 16 if unit.exclusive else cpus), (1 if unit.cuda else 0)


def unit_job(cfg, unit: Unit, timeout: float, forks=None, *, where: Path, workdir: Path, stop=None, procs=None):
    """A unit as an executor's job: run it in the project copy *where* (forked from *forks*'
    zygotes where one has its hash seed)."""
    return run_unit(cfg.rooted(where), unit, timeout, workdir, stop, procs, cwd=where, forks=forks)


def verify_repro(cfg, cand: repro_mod.Repro, timeout: float, forks=None, *, where: Path, workdir: Path, stop=None,
                 procs=None) -> bool:
    """Run the repro command as a user would (in the project copy *where*, forked from *forks*'
    zygote with its hash seed where one is alive); True when the test failed again."""
    workdir.mkdir(parents=True, exist_ok=True)
    return bool(repro_mod.failed(cfg.rooted(where), cand, workdir, cwd=where, timeout=timeout, forks=forks))


def state_dir(root: Path) -> Path:
    """Where the runs of *root* keep their resumable state: ``$ML_AUDIT_STATE`` or the user cache."""
    return cache_dir(root, "flaky", "ML_AUDIT_STATE")


@contextmanager
def session(cfg):
    """One audit of *cfg*'s project at a time, run in mirrors of the project (``cfg.run_dirs``,
    one per worker): a test that writes files leaves the user's tree as it was, and two units
    running side by side never see each other's files."""
    base = state_dir(cfg.root)
    with exclusive(base, "audit flaky"):
        exclude = {Path(cfg.reports_dir).parts[0]} if cfg.reports_dir else set()
        workers = cfg.flaky.workers or os.cpu_count() or 1
        cfg.run_dirs = [sync_copy(cfg.root, base / f"project-{i}", exclude=exclude) for i in range(workers)]
        cfg.run_dir = cfg.run_dirs[0]
        try:
            yield cfg
        finally:
            cfg.run_dir, cfg.run_dirs = cfg.root, [cfg.root]


def fork_server_off(cfg) -> str | None:
    """Why *cfg*'s audit starts every unit fresh instead of forking it (None: it may fork)."""
    if not cfg.flaky.fork_server:
        return "turned off ([tool.audit.flaky] fork_server = false or --no-fork-server)"
    if cfg.executor != "local":
        return f"units run on the {cfg.executor} executor"
    if not forkserver.supported():
        return "this platform cannot fork an interpreter safely"
    return None


@contextmanager
def fork_server(cfg):
    """The :class:`audit.forkserver.ForkServer` of an audit of *cfg* (None where it may not fork);
    its zygotes start once the suite has been collected, and are gone after the block."""
    if fork_server_off(cfg) is not None:
        yield None
        return
    server = forkserver.ForkServer(state_dir(cfg.root) / "zygotes", vary_hashseed=cfg.flaky.hashseed)
    try:
        yield server
    finally:
        server.close()


def run_flaky(cfg, progress=None, resume: bool = False, durations: dict | None = None, on_plan=None,
              handover: float | None = None, t0: float | None = None, forks=None) -> FlakyResult:
    """Audit *cfg*'s suite for flaky tests; see the module docstring. Call it inside :func:`session`.

    *durations* (node id -> seconds, e.g. from the history store) spare the survey; *on_plan*
    gets the plan (what the budget can and cannot prove) once every test's duration is known.
    With *handover* (seconds of the budget) detection stops there once a test is flaky, leaving
    the rest to attribution (with none flaky it may spend the whole budget); *t0* is when the
    budget started. *forks* (from :func:`fork_server`) forks units instead of starting them fresh.
    """
    return _Audit(cfg, progress=progress, resume=resume, durations=durations, on_plan=on_plan,
                  handover=handover, t0=t0, forks=forks).run()
