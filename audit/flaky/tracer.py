"""The RNG tracer: follows project frames during one test and turns generator changes into draws.

``sys.settrace`` follows the project's own frames line by line (other frames get no line events).
At every project line, call and return it compares the generators' fingerprints
(audit.flaky.fingerprints); a change between two checkpoints happened while the project line
seen last was running, so the draw is mapped to that line's frame: the innermost frame in
project code. Seeding is told apart from drawing: torch by the generator's initial seed (or a
state equal to a freshly seeded one), numpy by the MT19937 integer-seeding recurrence,
``random`` by the call to ``Random.seed``; a state seen earlier in the test is a restore
(``fork_rng``, ``set_rng_state``). Each draw is "seeded" when the stream it came from was
seeded by project code in this test.

Also recorded: ``np.random.default_rng()`` (or ``SeedSequence()``) without a seed, seen as the
128-bit OS entropy read it makes through ``SystemRandom.getrandbits``; other OS entropy reads
(``uuid.uuid4``/``uuid1``, ``secrets``, ``random.SystemRandom``) as draws of the ``entropy`` family
(a direct ``os.urandom`` call is a C call, not seen); where each DataLoader was
built, to name it when its iterator draws; and the project lines that call ``torch.empty``,
``empty_like``, ``empty_strided`` or ``Tensor.new_empty`` (memory that deterministic mode NaN-fills).

Known blind spots: a draw served wholly from a Gaussian cache (numpy legacy ``gauss``, python
``random.gauss``) leaves the MT state alone and is not seen on its own; ``np.random.RandomState()``
without a seed is not told from ``RandomState(seed)`` (both read entropy first); CUDA generators,
other threads and DataLoader worker processes are not traced; a project that installs its own
``sys.settrace`` (coverage, debuggers) loses it for the traced tests.
"""

from __future__ import annotations

import dis
import os
import random
import sys
import uuid
import weakref
from pathlib import Path

from audit.flaky.fingerprints import NumpyState, RandomState, TorchState

EMPTY_APIS = ("empty", "empty_like", "empty_strided", "new_empty")
_AUDIT_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
_FOREIGN_PARTS = ("site-packages", "dist-packages", ".tox", ".nox")
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
            self.states["torch"] = TorchState()
        except ImportError:
            pass
        try:
            self.states["numpy"] = NumpyState()
        except ImportError:
            pass
        self.states["random"] = RandomState()
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
               random.Random.getstate: ("random", None), random.SystemRandom.getrandbits: ("numpy", "entropy"),
               random.SystemRandom.random: ("entropy", "os"), random.SystemRandom.randbytes: ("entropy", "os"),
               uuid.uuid4: ("entropy", "os"), uuid.uuid1: ("entropy", "os")}
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
        if family == "entropy":   # OS entropy has no state to compare: the call is the draw
            self._record("entropy", "draw", seeded=False)
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
                self._record("entropy", "draw", seeded=False)
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

