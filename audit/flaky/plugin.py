"""The pytest plugin ml-audit loads into a target's run (entry point ``ml_audit`` in pytest11).

Inert unless ``--audit-enable`` is given: a user's ordinary ``pytest`` run must not change, and
nothing (not even torch) is imported until then. When enabled it

* seeds each RNG family (torch, numpy's legacy global state and its entropy-seeded generators,
  python ``random``, OS entropy: audit.flaky.entropy) at every test's setup, before its
  fixtures, with a pinned value or a fresh one; fresh seeds are derived from
  ``--audit-seed-base`` and the node id when a base is given, so that a run can be repeated;
* seeds fixtures of class/module/package/session scope on their own key and restores the
  test's stream afterwards, so a fixture's draws do not depend on which test created it;
* sets the torch thread count per test and the deterministic-algorithms mode per session;
* with ``--audit-unit FILE`` (written by ``audit.flaky.runner``) runs the unit's tests in its
  order for several rounds in this one interpreter, tearing every fixture down between rounds;
* with ``--audit-rows FILE`` appends one JSON line per test execution: outcome, duration, every
  setting, the seeds drawn, which RNG families the test consumed, and a failure digest.

``--audit-quarantine FILE`` works without ``--audit-enable``, in a user's ordinary run: it marks
the tests listed in a quarantine file (``audit flaky --quarantine FILE``) ``xfail(strict=False)``
with the audit's reason, so known flakes stop failing CI until they are fixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time

import pytest

from audit.flaky.children import Children
from audit.flaky.sources import FAMILIES

_SCOPED = ("class", "module", "package", "session")
PROJECT_VAR = "ML_AUDIT_PROJECT"   # the user's tree, when a collection runs in a mirror of it


def pytest_addoption(parser):
    group = parser.getgroup("ml-audit")
    group.addoption("--audit-enable", action="store_true", default=False,
                    help="ml-audit: apply the --audit-* settings to this run (off by default)")
    for family in FAMILIES:
        group.addoption(f"--audit-seed-{family}", default=None, metavar="N|fresh",
                        help=f"ml-audit: seed the {family} RNG at each test's setup with N, or a fresh seed")
    group.addoption("--audit-seed-base", default=None, type=int, metavar="S",
                    help="ml-audit: derive 'fresh' seeds from S and the node id (repeatable runs)")
    group.addoption("--audit-threads", default=None, type=int, metavar="N",
                    help="ml-audit: torch.set_num_threads(N) for every test")
    group.addoption("--audit-deterministic", default=None, choices=("on", "off"),
                    help="ml-audit: torch.use_deterministic_algorithms for the session (and cuDNN flags)")
    group.addoption("--audit-unit", default=None, metavar="FILE",
                    help="ml-audit (internal): JSON unit of work written by audit flaky")
    group.addoption("--audit-rows", default=None, metavar="FILE",
                    help="ml-audit: append one JSON line per test execution to FILE")
    group.addoption("--audit-collect", default=None, metavar="FILE",
                    help="ml-audit (internal): write the collected node ids to FILE as JSON")
    group.addoption("--audit-quarantine", default=None, metavar="FILE",
                    help="ml-audit: mark the tests listed in FILE (audit flaky --quarantine FILE) "
                         "xfail(strict=False) with the audit's reason")


def pytest_configure(config):
    if os.environ.get("ML_AUDIT_PARENT"):
        from audit.pytest_run import die_with_parent

        die_with_parent()
    if config.getoption("audit_enable", False):
        config.pluginmanager.register(AuditPlugin(config), "ml-audit-flaky")
    if config.getoption("audit_collect", None):
        config.pluginmanager.register(CollectedIds(config.getoption("audit_collect")), "ml-audit-collect")
    if config.getoption("audit_quarantine", None):
        config.pluginmanager.register(Quarantine(config.getoption("audit_quarantine")), "ml-audit-quarantine")


class Quarantine:
    """Marks the quarantined tests xfail (not strict: a quarantined test that passes is fine)."""

    def __init__(self, path: str):
        from audit.report.quarantine import read

        try:
            self.reasons = read(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise pytest.UsageError(f"--audit-quarantine: cannot read {path}: {exc}") from None

    def pytest_collection_modifyitems(self, items):
        for item in items:
            reason = self.reasons.get(item.nodeid)
            if reason is not None:
                item.add_marker(pytest.mark.xfail(strict=False, reason=reason))

    def pytest_report_header(self):
        return f"ml-audit: {len(self.reasons)} quarantined tests marked xfail(strict=False)"


class CollectedIds:
    """Writes the node ids pytest collected, exactly (a ``-q`` listing cannot carry every id), and
    the modules collection imported from outside the project (what a fork server's zygote preloads)."""

    def __init__(self, path: str):
        self.path = path

    def pytest_collection_finish(self, session):
        from audit.zygote import imported_modules

        with open(self.path, "w", encoding="utf-8") as f:
            json.dump({"ids": [item.nodeid for item in session.items],
                       "imports": imported_modules([session.config.rootpath, os.getcwd(),
                                                    *os.environ.get(PROJECT_VAR, "").split(os.pathsep)])}, f)


def derive_seed(base: int, *key) -> int:
    """A 32-bit seed from *base* and a key: stable across interpreters and hash seeds."""
    digest = hashlib.blake2b(repr((base, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2 ** 32)


def randomness_signature(row: dict, fixture_states: dict) -> list:
    """Where the test's draws left each RNG (and its drawing fixtures): equal signatures under
    different seeds mean the test or fixture reseeds that RNG itself, so its draws are pinned."""
    sig = [[f, row["end_state"][f]] for f, used in sorted(row["draws"].items()) if used]
    for name in row["uses_drawing_fixtures"]:
        sig.extend([f"fixture:{name}:{f}", d] for f, d in sorted(fixture_states[name].items()))
    return sig


def _parse_seed(value, family: str):
    if value is None or value == "fresh":
        return value
    try:
        seed = int(value)
    except ValueError:
        raise pytest.UsageError(f"--audit-seed-{family} must be an integer or 'fresh', got {value!r}") from None
    if not 0 <= seed < 2 ** 32:
        raise pytest.UsageError(f"--audit-seed-{family} must be in [0, 2**32), got {seed}")
    return seed


class _Families:
    """Seeding and state digests for the RNG families the project has imported.

    numpy and torch are never imported here: a suite that does not use torch must not pay
    for its import, and an RNG nobody imported cannot be drawn from. With *entropy* the OS
    entropy entry points are routed through :class:`audit.flaky.entropy.Entropy` (the
    ``entropy`` family, and numpy's entropy-seeded generators under the ``numpy`` family).
    """

    def __init__(self, entropy: bool = False):
        import random

        self.mods = {"random": random}
        self.entropy = None
        if entropy:
            from audit.flaky.entropy import Entropy

            self.entropy = self.mods["entropy"] = Entropy()
        self.refresh()

    def refresh(self) -> bool:
        """Pick up numpy/torch once the project has imported them; True when one was new."""
        new = False
        for name in ("numpy", "torch"):
            mod = sys.modules.get(name)
            if name not in self.mods and mod is not None and hasattr(mod, "__version__"):
                self.mods[name] = mod
                new = True
        if new and self.entropy is not None:
            self.entropy.install_numpy()
            self.entropy.install_torch()
        return new

    def seed(self, family: str, seed: int) -> None:
        mod = self.mods[family]
        if family == "torch":
            mod.manual_seed(seed)
        elif family == "numpy":
            mod.random.seed(seed)
            if self.entropy is not None:
                self.entropy.seed_numpy(seed)
        else:
            mod.seed(seed)

    def release(self) -> None:
        """After a test: OS entropy is the operating system's again until the next one."""
        if self.entropy is not None:
            self.entropy.release()

    def get(self, family: str):
        mod = self.mods[family]
        if family == "torch":
            return mod.get_rng_state()
        if family == "numpy":
            return mod.random.get_state()
        return mod.getstate()

    def set(self, family: str, state) -> None:
        mod = self.mods[family]
        if family == "torch":
            mod.set_rng_state(state)
        elif family == "numpy":
            mod.random.set_state(state)
        else:
            mod.setstate(state)

    def digest(self, family: str) -> str:
        state = self.get(family)
        if family == "torch":
            raw = state.numpy().tobytes()
        elif family == "numpy":
            raw = repr((state[0], state[2], state[3], state[4])).encode() + state[1].tobytes()
            if self.entropy is not None:   # default_rng() and friends drew from numpy's stream
                raw += repr(self.entropy.numpy_draws).encode()
        else:
            raw = repr(state).encode()
        return hashlib.blake2b(raw, digest_size=6).hexdigest()


def _fewer_final_collections(config) -> None:
    """pytest runs gc.collect() five times at exit to surface unraisable exceptions; with torch's
    heap that is seconds per interpreter. Units keep one pass (the feature stays on)."""
    try:
        from _pytest.unraisableexception import gc_collect_iterations_key
    except ImportError:  # pragma: no cover - older or newer pytest
        return
    config.stash[gc_collect_iterations_key] = 1


def _reset_peak_rss() -> None:
    """Start a new peak-memory window for this process (Linux: /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory since the last reset, in MiB (None where unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except (ImportError, OSError):
        return None


def _failure_digest(report) -> str:
    """One line saying how a failing phase failed: the exception line and where it was raised."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        where = f"{os.path.basename(str(crash.path))}:{crash.lineno}"
        message = str(crash.message).strip().splitlines()
        return f"{message[0][:200] if message else ''} ({where})"
    text = str(report.longrepr or "").strip().splitlines()
    return text[-1][:200] if text else ""


def _timing_kind(report) -> str | None:
    """Whether a failure is about time (a deadline, a timeout, an assertion on a duration)."""
    from audit.flaky.timing import failing_line, kind_of

    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(report.longrepr or "")
    message = str(crash.message) if crash is not None else (text.strip().splitlines() or [""])[-1]
    return kind_of(message, failing_line(text))


class AuditPlugin:
    """Applies the settings and records executions; registered only with ``--audit-enable``."""

    def __init__(self, config):
        self.config = config
        self.modes = {f: _parse_seed(config.getoption(f"audit_seed_{f}"), f) for f in FAMILIES}
        self.base = config.getoption("audit_seed_base")
        self.threads = config.getoption("audit_threads")
        self.deterministic = config.getoption("audit_deterministic")
        self.unit = None
        if config.getoption("audit_unit"):
            with open(config.getoption("audit_unit")) as f:
                self.unit = json.load(f)
            self.base = self.unit["seed_base"]
            self.modes = {f: self.unit["seeds"].get(f) for f in FAMILIES}
            self.deterministic = self.unit.get("deterministic")
        self.fam = _Families(entropy=any(self.modes.get(f) is not None for f in ("entropy", "numpy")))
        if self.unit:
            _fewer_final_collections(config)
        rows = config.getoption("audit_rows")
        self.rows = open(rows, "a", buffering=1) if rows else None
        self.round = 0
        self.round_base = self.base
        self.attempts: dict[str, int] = {}
        self.fixture_draws: dict[str, dict] = {}   # argname -> {family: state digest after it}
        self.current = None
        self.last_rows: dict[str, dict] = {}
        self.items: dict[str, object] = {}
        self.started = time.monotonic()
        self.children = Children()   # before the snapshot: its variables are part of every round's start
        self.pristine = self._snapshot()
        self.watch = set(self.unit.get("watch") or ()) if self.unit else set()
        self.tree_before = None

    # ---- session-level settings -------------------------------------------------------
    def _apply_determinism(self):
        torch = self.fam.mods.get("torch")
        if torch is None or self.deterministic is None:
            return
        on = self.deterministic == "on"
        if torch.are_deterministic_algorithms_enabled() != on:
            # the public torch.use_deterministic_algorithms imports torch._inductor (seconds);
            # set the flag directly unless inductor is already loaded and wants it too
            setter = getattr(torch._C, "_set_deterministic_algorithms", None)
            if setter is None or "torch._inductor.config" in sys.modules:
                torch.use_deterministic_algorithms(on)
            else:
                setter(on)
        if torch.cuda.is_available():
            torch.backends.cudnn.deterministic = on
            torch.backends.cudnn.benchmark = not on

    def _snapshot(self):
        torch = self.fam.mods.get("torch")
        numpy = self.fam.mods.get("numpy")
        return {
            "environ": dict(os.environ),
            "cwd": os.getcwd(),
            "dtype": torch.get_default_dtype() if torch else None,
            "grad": torch.is_grad_enabled() if torch else None,
            "np_err": numpy.geterr() if numpy else None,
        }

    def _restore(self, snap):
        """Undo what the previous round left behind, as far as it is visible from here."""
        torch = self.fam.mods.get("torch")
        numpy = self.fam.mods.get("numpy")
        if os.environ != snap["environ"]:
            os.environ.clear()
            os.environ.update(snap["environ"])
        if os.getcwd() != snap["cwd"]:
            os.chdir(snap["cwd"])
        if torch and snap["dtype"] is not None:
            torch.set_default_dtype(snap["dtype"])
            torch.set_grad_enabled(snap["grad"])
        if numpy and snap["np_err"] is not None:
            numpy.seterr(**snap["np_err"])
        self._apply_determinism()

    # ---- seeds ----------------------------------------------------------------------------
    def _seed_for(self, family: str, key) -> int | None:
        mode = self.modes.get(family)
        if mode is None:
            return None
        if mode != "fresh":
            return mode
        if self.round_base is None:
            return secrets.randbits(32)
        return derive_seed(self.round_base, family, *key)

    # ---- the round loop (units only) ------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        if not self.unit:
            return
        wanted = self.unit["tests"]
        by_id = {item.nodeid: item for item in items}
        keep = [by_id[n] for n in wanted if n in by_id]
        wanted_set = set(wanted)
        dropped = [item for item in items if item.nodeid not in wanted_set]
        for missing in (n for n in wanted if n not in by_id):
            self._emit({"event": "missing", "nodeid": missing})
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        if not self.unit:
            return None
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
        if session.config.option.collectonly:
            return True
        self._emit({"event": "ready", "tests": len(session.items), "at": time.time()})
        unit = self.unit
        threads = unit.get("threads") or [None]
        caps = unit.get("caps") or {}
        max_runs = unit.get("max_runs_per_test", unit["rounds"])
        still_runs = unit.get("runs_without_draws", len(threads))
        runs = {item.nodeid: 0 for item in session.items}
        seen = {item.nodeid: set() for item in session.items}
        signatures = {item.nodeid: set() for item in session.items}
        drawing_runs = {item.nodeid: 0 for item in session.items}
        active = list(session.items)
        for rnd in range(unit["rounds"]):
            if not active or self._late():
                break
            self._begin_round(rnd)
            for i, item in enumerate(active):
                if self._late():
                    break
                self.threads = threads[(rnd + unit.get("thread_offset", 0)) % len(threads)]
                nextitem = active[i + 1] if i + 1 < len(active) else None
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                row = self.last_rows.get(item.nodeid)
                if row:
                    runs[item.nodeid] += 1
                    seen[item.nodeid].add(row["klass"])
                    if row["drew_any"]:
                        drawing_runs[item.nodeid] += 1
                        signatures[item.nodeid].add(tuple(map(tuple, row["signature"])))
                if session.shouldfail or session.shouldstop:
                    raise session.Interrupted(str(session.shouldstop or session.shouldfail))
            # a test whose draws end in the same state whatever the seed reseeds itself:
            # more rounds cannot vary it, only new interpreters and thread counts can
            active = [
                item for item in active
                if runs[item.nodeid] < caps.get(item.nodeid, max_runs)
                and not (unit.get("stop_when_flaky", True) and {"pass", "fail"} <= seen[item.nodeid])
                and (runs[item.nodeid] < still_runs or drawing_runs[item.nodeid] == 1
                     or len(signatures[item.nodeid]) > 1)
                and "skip" not in seen[item.nodeid]
            ]
        self._emit({"event": "end", "rounds": self.round + 1, "at": time.time()})
        return True

    def _late(self) -> bool:
        limit = self.unit.get("max_seconds")
        return bool(limit) and time.monotonic() - self.started > limit

    def _begin_round(self, rnd: int):
        self.round = rnd
        self.attempts.clear()
        self.round_base = derive_seed(self.base, "round", rnd) if rnd else self.base
        if rnd:
            self._restore(self.pristine)

    # ---- per-test hooks -------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        if self.fam.refresh():  # a test imported torch or numpy itself
            self._apply_determinism()
            self.pristine.update({k: v for k, v in self._snapshot().items() if self.pristine.get(k) is None})
        nodeid = item.nodeid
        attempt = self.attempts.get(nodeid, 0)
        self.attempts[nodeid] = attempt + 1
        seeds = {}
        for family in FAMILIES:
            if family in self.fam.mods:
                seed = self._seed_for(family, (nodeid, attempt) if attempt else (nodeid,))
                if seed is not None:
                    self.fam.seed(family, seed)
                seeds[family] = seed
        torch = self.fam.mods.get("torch")
        if torch is not None and self.threads:
            torch.set_num_threads(self.threads)
        key = (nodeid, attempt) if attempt else (nodeid,)
        self.children.begin(nodeid, {f: seeds[f] if f in seeds else self._seed_for(f, key) for f in FAMILIES},
                            self.threads, self.deterministic)
        self.current = {
            "event": "row", "nodeid": nodeid, "round": self.round, "attempt": attempt,
            "seeds": seeds, "seed_modes": {f: self.modes.get(f) for f in FAMILIES},
            "seed_base": self.round_base,
            "threads": torch.get_num_threads() if torch is not None else None,
            "deterministic": self.deterministic, "phases": {}, "digest": "",
            "start_state": {f: self.fam.digest(f) for f in self.fam.mods},
            "fixture_draws": [], "t0": time.perf_counter(),
        }
        if nodeid in self.watch:   # which files of the project this test writes, once per audit
            from audit.scratch import tree_stats

            self.watch.discard(nodeid)
            self.tree_before = tree_stats(self.config.rootpath)
        _reset_peak_rss()
        self._emit({"event": "start", "nodeid": nodeid, "round": self.round, "attempt": attempt})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        if fixturedef.scope not in _SCOPED or self.current is None:
            yield
            return
        saved = {f: self.fam.get(f) for f in self.fam.mods}
        key = ("fixture", request.node.nodeid, fixturedef.argname)
        seeded = {}
        for family in self.fam.mods:
            seed = self._seed_for(family, key)
            if seed is not None:
                self.fam.seed(family, seed)
            seeded[family] = self.fam.digest(family)
        try:
            yield
        finally:
            after = {f: self.fam.digest(f) for f in self.fam.mods}
            drew = [f for f in self.fam.mods if after[f] != seeded[f]]
            if drew:
                self.fixture_draws[fixturedef.argname] = {f: after[f] for f in drew}
                self.current["fixture_draws"].append({"fixture": fixturedef.argname,
                                                      "scope": fixturedef.scope, "families": drew})
            for family, state in saved.items():
                self.fam.set(family, state)

    def pytest_runtest_logreport(self, report):
        row = self.current
        if row is None or row["nodeid"] != report.nodeid:
            return
        outcome = report.outcome
        if getattr(report, "wasxfail", None) is not None:
            outcome = "xfailed" if report.skipped else "xpassed"
        row["phases"][report.when] = outcome
        if outcome in ("failed", "rerun") and not row["digest"]:
            row["digest"] = f"{report.when}: {_failure_digest(report)}"
            row["timing"] = _timing_kind(report)
        if report.when == "teardown":
            self._finish(row)

    def _finish(self, row):
        row["duration"] = round(time.perf_counter() - row.pop("t0"), 6)
        phases = row["phases"]
        masked = "rerun" in phases.values()
        bad = {w for w, o in phases.items() if o in ("failed", "rerun")}
        if "call" in bad:
            outcome = "failed"
        elif bad:
            outcome = "error"
        elif phases.get("setup") == "skipped" or phases.get("call") == "skipped":
            outcome = "skipped"
        else:
            outcome = phases.get("call", "passed")
        row["outcome"] = outcome
        row["masked"] = masked
        row["klass"] = {"failed": "fail", "error": "fail", "skipped": "skip"}.get(outcome, "pass")
        item_fixtures = set(getattr(self.items.get(row["nodeid"]), "fixturenames", ()) or ())
        row["draws"] = {f: self.fam.digest(f) != row["start_state"][f] for f in self.fam.mods}
        row["end_state"] = {f: self.fam.digest(f) for f in self.fam.mods}
        row["uses_drawing_fixtures"] = sorted(n for n in item_fixtures if n in self.fixture_draws)
        row["drew_any"] = any(row["draws"].values()) or bool(row["uses_drawing_fixtures"])
        row["signature"] = randomness_signature(row, self.fixture_draws)
        row["pid"] = os.getpid()
        row["peak_rss_mb"] = _peak_rss_mb()
        children = self.children.end(row["nodeid"])
        if children:
            row["children"] = children
        row["ended_at"] = time.time()
        if self.tree_before is not None:
            from audit.scratch import changed_files, tree_stats

            row["wrote"] = changed_files(self.tree_before, tree_stats(self.config.rootpath))
            self.tree_before = None
        self.last_rows[row["nodeid"]] = row
        self.current = None
        self.fam.release()
        self._emit(row)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session):
        self.items = {item.nodeid: item for item in session.items}
        self.fam.refresh()
        self._apply_determinism()
        self.pristine = self._snapshot()   # the state every round starts from

    def pytest_unconfigure(self, config):
        self.children.close()
        if self.fam.entropy is not None:
            self.fam.entropy.uninstall()
        if self.rows:
            self.rows.close()
            self.rows = None

    def _emit(self, record: dict):
        if self.rows is not None:
            self.rows.write(json.dumps(record, default=str) + "\n")

