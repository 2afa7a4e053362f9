"""Where a test draws randomness: RNG call sites and the call path to them (issue 4, "where").

A pytest plugin loaded only on request (``-p audit.flaky.trace --audit-trace=FILE``), so ordinary
runs pay nothing. While a test's setup and call run, ``sys.settrace`` follows the project's own
frames line by line (other frames get no line events). At every project line, call and return
it compares cheap fingerprints of the three global generators:

* torch's default CPU generator (its serialized state, about 8 us to read), which catches draws
  made inside C++ too (dropout, ``nn.init``, ``randperm``/``random_split``, Beta/Dirichlet,
  the seed a DataLoader iterator draws) because any draw advances that state;
* numpy's legacy global ``RandomState`` (MT19937 key and position read in place via ctypes);
* python's ``random`` module instance (its MT state read in place).

A change between two checkpoints happened while the project line seen last was running, so the
draw is mapped to that line's frame: the innermost frame in project code. Seeding is told apart
from drawing: torch by the generator's initial seed (or a state equal to a freshly seeded one),
numpy by the MT19937 integer-seeding recurrence, ``random`` by the call to ``Random.seed``;
a state seen earlier in the test is a restore (``fork_rng``, ``set_rng_state``). Each draw is
"seeded" when the stream it came from was seeded by project code in this test, so a test that
consumes a global stream it never seeded gets the ``rng_hygiene`` flag.

Also recorded: ``np.random.default_rng()`` (or ``SeedSequence()``) without a seed, seen as the
128-bit OS entropy read it makes through ``SystemRandom.getrandbits``; where each DataLoader was
built, to name it when its iterator draws; and the project lines that call ``torch.empty``,
``empty_like``, ``empty_strided`` or ``Tensor.new_empty`` (memory that deterministic mode NaN-fills).

Known blind spots: a draw served wholly from a Gaussian cache (numpy legacy ``gauss``, python
``random.gauss``) leaves the MT state alone and is not seen on its own; ``np.random.RandomState()``
without a seed is not told from ``RandomState(seed)`` (both read entropy first); CUDA generators,
other threads and DataLoader worker processes are not traced; a project that installs its own
``sys.settrace`` (coverage, debuggers) loses it for the traced tests.
"""

from __future__ import annotations

import ctypes
import dis
import json
import os
import random
import sys
import weakref
from pathlib import Path

import pytest

FAMILIES = ("torch", "numpy", "random")
EMPTY_APIS = ("empty", "empty_like", "empty_strided", "new_empty")
_AUDIT_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
_FOREIGN_PARTS = ("site-packages", "dist-packages", ".tox", ".nox")
_MT_LEN = 624


def pytest_addoption(parser):
    group = parser.getgroup("ml-audit")
    group.addoption("--audit-trace", default=None, metavar="FILE",
                    help="ml-audit: write one JSON line per test with its RNG draw sites (needs "
                         "-p audit.flaky.trace)")


def pytest_configure(config):
    path = config.getoption("audit_trace", None)
    if path:
        config.pluginmanager.register(TracePlugin(config, path), "ml-audit-trace")


def read_trace(path) -> dict[str, dict]:
    """The records of a trace file by node id (the last execution of each test wins)."""
    records = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                records[rec["nodeid"]] = rec
    return records


def hygiene_list(records) -> list[dict]:
    """The RNG hygiene list: tests that consume a global RNG they never seed (latent flakiness,
    failing or not), with the unseeded sites per family, in node id order."""
    listed = []
    for rec in sorted(records, key=lambda r: r["nodeid"]):
        if not rec.get("rng_hygiene"):
            continue
        sites = {f: [f"{s['path']}:{s['line']} ({s['function']})" for s in rec["draws"][f]["sites"] if s["unseeded"]]
                 for f in rec["unseeded_families"]}
        listed.append({"nodeid": rec["nodeid"], "families": list(rec["unseeded_families"]), "sites": sites})
    return listed


def trace_tests(cfg, nodeids, *, extra_args=(), env: dict | None = None, timeout: float = 600.0) -> dict[str, dict]:
    """Run *nodeids* once in a fresh interpreter under this plugin; their records by node id.

    For the attribution engine and ``audit flaky``: the trace of a test is a deterministic fact
    (which sites draw), so one execution is enough. Nothing is written into the project.
    """
    import subprocess
    import tempfile

    from audit.errors import AuditError
    from audit.project import QUIET_ARGS, pytest_env

    with tempfile.TemporaryDirectory(prefix="ml-audit-trace-") as tmp:
        out = Path(tmp) / "trace.jsonl"
        cmd = [sys.executable, "-m", "pytest", *QUIET_ARGS, *cfg.pytest_args, "-p", "audit.flaky.trace",
               f"--audit-trace={out}", *extra_args, *nodeids]
        try:
            proc = subprocess.run(cmd, cwd=cfg.root, env=pytest_env(env), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AuditError(f"tracing {len(nodeids)} test(s) in {cfg.root} took more than {timeout:.0f}s") from None
        if proc.returncode not in (0, 1) or not out.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise AuditError(f"tracing tests in {cfg.root} failed (pytest exit {proc.returncode}):\n{tail}")
        return read_trace(out)


# ---------------------------------------------------------------- generator fingerprints

class _TorchState:
    """The default CPU generator: full state bytes, and whether a change was a (re)seed."""

    def __init__(self):
        import torch

        self.gen = torch.default_generator
        self.torch = torch
        self._fresh: dict[int, bytes] = {}

    def read(self) -> bytes:
        return self.gen.get_state().numpy().tobytes()

    def seeded_state(self, before: bytes, after: bytes) -> bool:
        """True when *after* is the state manual_seed(initial_seed) gives: a seed, not a draw."""
        seed = self.gen.initial_seed()
        fresh = self._fresh.get(seed)
        if fresh is None:
            fresh = self.torch.Generator().manual_seed(seed).get_state().numpy().tobytes()
            self._fresh[seed] = fresh
        return after == fresh or after[:8] != before[:8]  # the first field is the initial seed


class _NumpyState:
    """numpy's legacy global RandomState, read in place (key[0], key[1], key[623], pos)."""

    def __init__(self):
        import numpy as np

        self.np = np
        self.views = None
        try:
            addr = np.random.mtrand._rand._bit_generator.ctypes.state_address
            u32 = ctypes.c_uint32
            views = (u32.from_address(addr), u32.from_address(addr + 4),
                     u32.from_address(addr + 4 * (_MT_LEN - 1)), ctypes.c_int.from_address(addr + 4 * _MT_LEN))
            _, key, pos, *_ = np.random.get_state(legacy=True)
            if (views[0].value, views[1].value, views[2].value, views[3].value) == \
                    (int(key[0]), int(key[1]), int(key[-1]), int(pos)):
                self.views = views
        except Exception:  # an unknown layout: fall back to the slow public API
            self.views = None

    def read(self) -> tuple:
        if self.views is not None:
            v = self.views
            return (v[0].value, v[1].value, v[2].value, v[3].value)
        _, key, pos, has_gauss, gauss = self.np.random.get_state(legacy=True)
        return (int(key[0]), int(key[1]), int(key[-1]), int(pos), has_gauss, gauss)

    @staticmethod
    def seeded_state(fp: tuple) -> bool:
        """MT19937 integer seeding (np.random.seed(N)) leaves pos at 624 and key[1] derived from key[0]."""
        k0, k1, _, pos = fp[:4]
        return pos == _MT_LEN and k1 == (1812433253 * (k0 ^ (k0 >> 30)) + 1) & 0xFFFFFFFF


class _RandomState:
    """python's random module instance: its MT index and two state words, read in place."""

    def __init__(self):
        self.inst = random._inst
        self.views = None
        try:
            base = id(self.inst) + object.__basicsize__
            views = (ctypes.c_int.from_address(base), ctypes.c_uint32.from_address(base + 4),
                     ctypes.c_uint32.from_address(base + 4 * _MT_LEN))
            state = self.inst.getstate()[1]
            if (views[0].value, views[1].value, views[2].value) == (state[-1], state[0], state[_MT_LEN - 1]):
                self.views = views
        except Exception:
            self.views = None

    def read(self) -> tuple:
        if self.views is not None:
            v = self.views
            return (v[0].value, v[1].value, v[2].value)
        state = self.inst.getstate()[1]
        return (state[-1], state[0], state[_MT_LEN - 1])


# ---------------------------------------------------------------- the tracer

_COMPREHENSIONS = (".<locals>.<listcomp>", ".<locals>.<dictcomp>", ".<locals>.<setcomp>", ".<locals>.<genexpr>")


class _CodeInfo:
    __slots__ = ("project", "path", "qualname", "empties", "inline", "code")

    def __init__(self, project, path=None, qualname=None, empties=None):
        self.project = project
        self.path = path
        self.empties = empties
        # python < 3.12 runs comprehensions in frames of their own: name the enclosing function
        self.inline = bool(qualname) and qualname.endswith(_COMPREHENSIONS)
        self.qualname = qualname.rsplit(".<locals>.", 1)[0] if self.inline else qualname


_LOADS = ("LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME")
_LEGACY_CONSTRUCTORS = frozenset({"RandomState", "MT19937"})
_BORING_NAMES = frozenset({"self", "len", "range", "int", "float", "list", "dict", "set", "tuple", "print",
                           "isinstance", "shape", "size", "item", "tolist"})
_NAMES_BY_LINE: dict = {}


def _lined_instructions(code):
    """(line, instruction, previous instruction) over *code*'s bytecode."""
    line, prev = code.co_firstlineno, None
    for ins in dis.get_instructions(code):
        lineno = getattr(getattr(ins, "positions", None), "lineno", None) or ins.starts_line
        if lineno and lineno is not True:
            line = lineno
        yield line, ins, prev
        prev = ins


def _empty_calls(code) -> dict[int, list[tuple[str, str | None]]]:
    """Lines of *code* that name a torch.empty-family API: {line: [(api, base name or None)]}."""
    found: dict[int, list] = {}
    for line, ins, prev in _lined_instructions(code):
        if ins.opname in _LOADS and ins.argval in EMPTY_APIS:
            base = prev.argval if prev is not None and ins.opname in ("LOAD_ATTR", "LOAD_METHOD") else None
            found.setdefault(line, []).append((ins.argval, base if isinstance(base, str) else None))
    return found


def _line_names(code, line) -> set[str]:
    """Global and attribute names loaded on one line of *code* (what that line calls, roughly).
    Asked once per new draw site or entropy read, so a dict keyed by the code itself is fine."""
    by_line = _NAMES_BY_LINE.get(code)
    if by_line is None:
        by_line = _NAMES_BY_LINE[code] = {}
        for at, ins, _ in _lined_instructions(code):
            if ins.opname in _LOADS and isinstance(ins.argval, str):
                by_line.setdefault(at, set()).add(ins.argval)
    return by_line.get(line, set())


class RngTracer:
    """Follows project frames during one test and turns generator changes into draw records."""

    def __init__(self, root: Path):
        self.root = str(root) + os.sep
        self.codes: dict = {}
        self.states = {}
        try:
            self.states["torch"] = _TorchState()
        except ImportError:
            pass
        try:
            self.states["numpy"] = _NumpyState()
        except ImportError:
            pass
        self.states["random"] = _RandomState()
        self.torch = self.states["torch"].torch if "torch" in self.states else None
        self._api = self._api_codes()
        self.fixture_codes: dict = {}    # id(code object) -> fixture name
        self.test_code = None
        self.active = False
        self.previous_trace = None
        self.via: dict = {}              # project frame -> non-project functions its current line called
        self.loader_at: dict = {}        # project frame -> where the DataLoader its line iterates was built
        self.loaders = weakref.WeakKeyDictionary()   # DataLoader -> where it was built
        self.reset()
        self._global = self._make_global()

    # -- per test ------------------------------------------------------------------------
    def reset(self):
        self.draws: dict = {}            # (family, path, line, function, kind) -> entry
        self.seedings: list = []
        self.empties: dict = {}
        self.seen = {f: {} for f in self.states}      # fingerprint -> seeded flag
        self.seeded = {f: False for f in self.states}
        self.last = {f: s.read() for f, s in self.states.items()}
        for f in self.states:
            self.seen[f][self.last[f]] = False
        self.pending: dict = {}
        self.via.clear()
        self.loader_at.clear()
        self.cur = None
        self.cur_line = None
        self.sink = None                 # extra list receiving draws (a scoped fixture's cache)
        self.error = None                # why tracing stopped early in this test, if it did

    def start(self):
        self.previous_trace = sys.gettrace()
        self.active = True
        self.last = {f: s.read() for f, s in self.states.items()}
        sys.settrace(self._global)

    def stop(self):
        sys.settrace(self.previous_trace)
        self.previous_trace = None
        self.checkpoint()
        self.active = False
        self.cur = None

    def checkpoint(self):
        """Attribute what changed since the last checkpoint (safe to call from hooks)."""
        if self.active:
            try:
                self._checkpoint()
            except Exception as exc:
                self._fail(exc)

    # -- code classification --------------------------------------------------------------
    def _info(self, code) -> _CodeInfo:
        # keyed by id: hashing a code object hashes its bytecode, far too slow for every call
        # (the info keeps the code alive, so its id cannot be reused)
        info = self.codes.get(id(code))
        if info is None:
            fn = code.co_filename
            project = (fn.startswith(self.root) and not fn.startswith(_AUDIT_DIR)
                       and not any(p in fn for p in _FOREIGN_PARTS))
            if project:
                info = _CodeInfo(True, fn[len(self.root):].replace(os.sep, "/"),
                                 getattr(code, "co_qualname", code.co_name), _empty_calls(code))
            else:
                info = _CodeInfo(False, qualname=getattr(code, "co_qualname", code.co_name))
            info.code = code
            self.codes[id(code)] = info
        return info

    def _api_codes(self) -> dict:
        """Code objects of the RNG APIs whose call is a checkpoint or announces a seed/restore."""
        api = {random.Random.seed: ("random", "seed"), random.Random.setstate: ("random", "set"),
               random.Random.getstate: ("random", None), random.SystemRandom.getrandbits: ("numpy", "entropy")}
        if self.torch is not None:
            tr = self.torch.random
            api.update({tr.manual_seed: ("torch", "seed"), tr.seed: ("torch", "fresh"),
                        tr.set_rng_state: ("torch", "set"), tr.get_rng_state: ("torch", None)})
            loader = getattr(getattr(getattr(self.torch, "utils", None), "data", None), "DataLoader", None)
            if loader is not None:
                api.update({loader.__init__: ("loader", "init"), loader.__iter__: ("loader", "iter")})
        return {id(fn.__code__): what for fn, what in api.items()}  # the functions live for good

    # -- trace functions ---------------------------------------------------------------------
    def _make_global(self):
        """The global trace function: called for every new Python frame, so kept lean (a closure
        over plain dicts; about 1.5 us a call against 0.1 us untraced)."""
        codes, api, via, info_of = self.codes, self._api, self.via, self._info

        def trace_call(frame, event, arg):
            code = frame.f_code
            info = codes.get(id(code)) or info_of(code)
            if info.project:
                if not self.active:
                    return None
                try:
                    self._checkpoint()
                except Exception as exc:  # never let the tracer fail the user's test
                    return self._fail(exc)
                self.cur, self.cur_line = frame, frame.f_lineno
                return self._local
            what = api.get(id(code))
            if what is not None:
                if self.active:
                    try:
                        self._api_call(frame, *what)
                    except Exception as exc:
                        self._fail(exc)
                return None
            caller = frame.f_back
            if caller is not None:
                caller_info = codes.get(id(caller.f_code))
                if caller_info is not None and caller_info.project:
                    called = via.setdefault(caller, [])
                    if len(called) < 8:
                        called.append(code)
            return None

        return trace_call

    def _fail(self, exc):
        """Stop tracing this test and say why in its record, rather than break the test."""
        self.error = f"{type(exc).__name__}: {exc}"
        self.active = False
        return None

    def _local(self, frame, event, arg):
        if not self.active:
            return None
        try:
            self._trace_line(frame, event)
        except Exception as exc:  # never let the tracer fail the user's test
            return self._fail(exc)
        return self._local

    def _trace_line(self, frame, event):
        if event == "line":
            self._checkpoint()
            self.cur, self.cur_line = frame, frame.f_lineno
            self.via.pop(frame, None)
            self.loader_at.pop(frame, None)
            info = self._info(frame.f_code)
            if info.empties and self.cur_line in info.empties:
                self._note_empty(frame, info)
        elif event == "return":
            self._checkpoint()
            self.via.pop(frame, None)
            self.loader_at.pop(frame, None)
            f = frame.f_back
            while f is not None and not self._info(f.f_code).project:
                f = f.f_back
            self.cur, self.cur_line = f, (f.f_lineno if f is not None else None)

    def _api_call(self, frame, family, kind):
        if family == "loader":
            self._loader_call(frame, kind)
            return
        if family not in self.states:
            return
        self._checkpoint()
        if family == "random" and frame.f_locals.get("self") is not random._inst:
            return
        if kind == "seed" and family == "random" and frame.f_locals.get("a") is None:
            kind = "fresh"
        if kind == "entropy":
            if frame.f_locals.get("k") != 128:  # numpy's SeedSequence pool; other callers are secrets users
                return
            caller = frame.f_back
            if caller is not None and self._info(caller.f_code).project and \
                    _LEGACY_CONSTRUCTORS & _line_names(caller.f_code, caller.f_lineno):
                return   # RandomState(seed) reads entropy first and then seeds itself: not telling
        if kind is not None:
            self.pending[family] = kind

    def _loader_call(self, frame, kind):
        """Remember where each DataLoader is built, to name it when its iterator draws a seed."""
        loader = frame.f_locals.get("self")
        caller = frame.f_back
        if loader is None or caller is None or not self._info(caller.f_code).project:
            return
        if kind == "init":
            site = self._site()
            if site is not None:
                try:
                    self.loaders[loader] = site
                except TypeError:
                    pass
        else:
            called = self.via.setdefault(caller, [])
            if len(called) < 8:
                called.append(frame.f_code)
            try:
                built = self.loaders.get(loader)
            except TypeError:
                built = None
            if built is not None:
                self.loader_at[caller] = built

    # -- turning changes into records ----------------------------------------------------------
    def _checkpoint(self):
        pending, self.pending = self.pending, {}
        for family, st in self.states.items():
            now = st.read()
            before = self.last[family]
            if now != before:
                self.last[family] = now
                self._change(family, before, now, pending.get(family))
            elif pending.get(family) == "entropy":   # default_rng()/RandomState() read OS entropy
                self._record("numpy", "entropy", seeded=False)

    def _change(self, family, before, now, pending):
        site = self._site()
        if pending == "set" or (now in self.seen[family] and pending not in ("seed", "fresh")):
            self.seeded[family] = self.seen[family].get(now, False)   # a restore (fork_rng, set_state)
            self.seen[family][now] = self.seeded[family]
            return
        if family == "torch":
            is_seed = pending in ("seed", "fresh") or self.states["torch"].seeded_state(before, now)
        elif family == "numpy":
            is_seed = pending == "entropy" or self.states["numpy"].seeded_state(now)
            if pending == "entropy":
                pending = "fresh"
        else:
            is_seed = pending in ("seed", "fresh")
        if is_seed:
            deterministic = pending != "fresh"
            self.seeded[family] = deterministic and site is not None
            if site is not None:
                self.seedings.append({"family": family, **site, "deterministic": deterministic})
        elif site is None:            # outside project code (a plugin reseeding, pytest itself)
            self.seeded[family] = False
        else:
            self._record(family, "draw", seeded=self.seeded[family], site=site)
        self.seen[family][now] = self.seeded[family]

    def _site(self):
        frame = self.cur
        if frame is None:
            return None
        info = self._info(frame.f_code)
        return {"path": info.path, "line": self.cur_line, "function": info.qualname}

    def _call_path(self) -> list[str]:
        """Project frames from the test (or fixture) down to the drawing frame, outermost first."""
        path = []
        f = self.cur
        while f is not None:
            code = f.f_code
            info = self._info(code)
            if info.project:
                if code is self.test_code:
                    break
                fixture = self.fixture_codes.get(id(code))
                if fixture is not None:
                    path.append(f"fixture:{fixture}")
                    break
                if not info.inline:
                    path.append(f"{info.path}::{info.qualname}")
            f = f.f_back
        path.reverse()
        return path

    def _record(self, family, kind, seeded, site=None):
        site = site or self._site()
        if site is None:
            return
        key = (family, site["path"], site["line"], site["function"], kind)
        entry = self.draws.get(key)
        if entry is None:
            code = self.cur.f_code
            names = sorted(n for n in _line_names(code, site["line"]) - _BORING_NAMES
                           if not n.startswith(("@", "_")) and not n.endswith("Error")) if self._info(code).project else []
            entry = self.draws[key] = {"family": family, "kind": kind, **site, "count": 0,
                                       "unseeded": 0, "call_paths": [], "via": [], "names": names[:16]}
        entry["count"] += 1
        entry["unseeded"] += 0 if seeded else 1
        path = self._call_path()
        if path not in entry["call_paths"] and len(entry["call_paths"]) < 8:
            entry["call_paths"].append(path)
        for code in self.via.get(self.cur, ()):
            name = f"{code.co_filename.rpartition(os.sep)[2]}::{self._info(code).qualname}"
            if name not in entry["via"] and len(entry["via"]) < 8:
                entry["via"].append(name)
        built = self.loader_at.get(self.cur)
        if built is not None:
            entry["loader_built_at"] = built
        if self.sink is not None:
            extras = {k: entry[k] for k in ("via", "names", "loader_built_at") if k in entry}
            self.sink.append((key, seeded, path, extras))

    def _note_empty(self, frame, info):
        torch = self.torch
        if torch is None:
            return
        for api, base in info.empties[self.cur_line]:
            if api == "new_empty":
                ok = True
            elif base is not None:
                ok = (frame.f_locals.get(base) or frame.f_globals.get(base)) is torch
            else:
                ok = frame.f_globals.get(api) is getattr(torch, api, None)
            if not ok:
                continue
            key = (info.path, self.cur_line, api)
            entry = self.empties.get(key)
            if entry is None:
                entry = self.empties[key] = {"path": info.path, "line": self.cur_line, "function": info.qualname,
                                             "call": "Tensor.new_empty" if api == "new_empty" else f"torch.{api}",
                                             "count": 0, "call_path": self._call_path()}
            entry["count"] += 1


# ---------------------------------------------------------------- the pytest plugin

def _fixture_code(fixturedef):
    func = getattr(fixturedef, "func", None)
    seen = 0
    while func is not None and seen < 10:
        code = getattr(func, "__code__", None)
        if code is not None:
            return code
        func = getattr(func, "__wrapped__", None) or getattr(func, "__func__", None) or getattr(func, "_fixture_function", None)
        seen += 1
    return None


class TracePlugin:
    """Per test: trace setup and call, merge draws of higher-scoped fixtures it uses, write a line."""

    def __init__(self, config, path):
        self.config = config
        self.tracer = RngTracer(Path(str(config.rootpath)).resolve())
        self.out = open(path, "w", buffering=1)
        self.scoped: dict[int, dict] = {}   # id(fixturedef) -> {"name", "nodeid", "draws": [...], "seedings"}
        self.item = None
        self.outcome = None
        self.executions: dict[str, int] = {}

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.item = item
        self.outcome = None
        self.tracer.reset()
        obj = getattr(item, "obj", None)
        self.tracer.test_code = getattr(getattr(obj, "__func__", obj), "__code__", None)
        self.fixtures_set_up: set[int] = set()
        try:
            return (yield)
        finally:
            self._write(item)
            self.item = None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item):
        self.tracer.start()
        try:
            return (yield)
        finally:
            self.tracer.stop()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item):
        self.tracer.start()
        try:
            return (yield)
        finally:
            self.tracer.stop()

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        code = _fixture_code(fixturedef)
        if code is not None:
            self.tracer.fixture_codes[id(code)] = fixturedef.argname
            self.tracer._info(code)   # keeps the code alive, so the id stays its own
        if fixturedef.scope == "function" or not self.tracer.active:
            return (yield)
        cache = {"name": fixturedef.argname, "scope": fixturedef.scope,
                 "nodeid": self.item.nodeid if self.item else None, "draws": [], "seedings": []}
        self.scoped[id(fixturedef)] = cache
        self.fixtures_set_up.add(id(fixturedef))
        outer_sink, seedings_before = self.tracer.sink, len(self.tracer.seedings)
        self.tracer.checkpoint()
        self.tracer.sink = cache["draws"]
        try:
            return (yield)
        finally:
            self.tracer.checkpoint()
            self.tracer.sink = outer_sink
            cache["seedings"] = self.tracer.seedings[seedings_before:]

    def pytest_runtest_logreport(self, report):
        if self.item is not None and report.nodeid == self.item.nodeid:
            if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
                self.outcome = "xfailed" if getattr(report, "wasxfail", None) is not None else report.outcome

    def _inherited(self, item) -> list[dict]:
        """Caches of higher-scoped fixtures this test uses but that were set up before it."""
        info = getattr(item, "_fixtureinfo", None)
        defs = getattr(info, "name2fixturedefs", {}) or {}
        used = []
        for name in getattr(item, "fixturenames", ()):
            for fdef in defs.get(name, ()):
                cache = self.scoped.get(id(fdef))
                if cache is not None and id(fdef) not in self.fixtures_set_up:
                    used.append(cache)
        return used

    def _write(self, item):
        tr = self.tracer
        draws = {key: dict(entry) for key, entry in tr.draws.items()}
        inherited = self._inherited(item)
        for cache in inherited:
            for key, seeded, path, extras in cache["draws"]:
                entry = draws.get(key)
                if entry is None:
                    family, p, line, function, kind = key
                    entry = draws[key] = {"family": family, "kind": kind, "path": p, "line": line,
                                          "function": function, "count": 0, "unseeded": 0, "call_paths": [],
                                          **extras}
                entry["count"] += 1
                entry["unseeded"] += 0 if seeded else 1
                if path not in entry["call_paths"]:
                    entry["call_paths"].append(path)
                entry.setdefault("set_up_in", cache["nodeid"])
        seedings = list(tr.seedings) + [s for c in inherited for s in c["seedings"]]
        families = {}
        for family in FAMILIES:
            sites = sorted(({k: v for k, v in e.items() if k != "family"}
                            for e in draws.values() if e["family"] == family),
                           key=lambda e: (e["path"], e["line"], e["kind"]))
            for e in sites:
                e["call_paths"] = [[item.nodeid, *p] for p in e["call_paths"]]
            families[family] = {"count": sum(e["count"] for e in sites),
                                "unseeded": sum(e["unseeded"] for e in sites), "sites": sites}
        seeded_by_test = {f: any(s["family"] == f and s["deterministic"] for s in seedings) for f in FAMILIES}
        unseeded = [f for f in FAMILIES if families[f]["unseeded"]]
        n = self.executions.get(item.nodeid, 0)
        self.executions[item.nodeid] = n + 1
        record = {
            "nodeid": item.nodeid, "execution": n, "outcome": self.outcome, "trace_error": tr.error,
            "draws": families, "seeded_by_test": seeded_by_test, "seedings": seedings,
            "rng_hygiene": bool(unseeded), "unseeded_families": unseeded,
            "fixtures": [{"name": c["name"], "scope": c["scope"], "set_up_in": c["nodeid"]}
                         for c in inherited if c["draws"] or c["seedings"]],
            "empty_sites": sorted(({**e, "call_path": [item.nodeid, *e["call_path"]]} for e in tr.empties.values()),
                                  key=lambda e: (e["path"], e["line"])),
        }
        self.out.write(json.dumps(record) + "\n")

    def pytest_unconfigure(self, config):
        if self.out is not None:
            self.out.close()
            self.out = None
