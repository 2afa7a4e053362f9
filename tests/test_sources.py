"""The registry of flaky sources: built-ins, a third-party entry point, and name clashes."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from audit.flaky import sources
from audit.flaky.hints import make_cause
from audit.flaky.sources import BUILTIN, FAMILIES, IN_PROCESS, PER_INTERPRETER, Source

PLUGIN_SOURCE = Source("clock", "wall clock", PER_INTERPRETER, "time frozen", "real time", arm="",
                       hint=lambda **kw: f"freeze time in {kw.get('nodeid')}")
CLASH = [Source("torch", "my torch", IN_PROCESS, "x", "y")]
TWO = [Source("tz", "time zone", PER_INTERPRETER, "TZ=UTC", "TZ varied"),
       Source("locale", "locale", PER_INTERPRETER, "LC_ALL=C", "LC_ALL varied")]


def _ep(name, value):
    return EntryPoint(name=name, value=value, group=sources.GROUP)


def test_builtins_in_order_with_scope_and_unit():
    got = sources.load([])
    assert list(got) == ["torch", "numpy", "random", "entropy", "threads", "determinism", "hashseed", "order"]
    assert FAMILIES == ("torch", "numpy", "random", "entropy")
    assert got["hashseed"].unit == "interpreters" and got["torch"].unit == "executions"
    assert [s.name for s in BUILTIN if s.scope == IN_PROCESS] == ["torch", "numpy", "random", "entropy", "threads",
                                                                   "determinism"]


def test_the_builtin_entry_point_registers_the_builtins_once():
    got = sources.load([_ep("builtin", "audit.flaky.sources:BUILTIN")])
    assert list(got) == [s.name for s in BUILTIN]


def test_a_third_party_source_registers_one_or_many():
    got = sources.load([_ep("clock", f"{__name__}:PLUGIN_SOURCE"), _ep("env", f"{__name__}:TWO")])
    assert list(got)[-3:] == ["clock", "tz", "locale"] and got["clock"].label == "wall clock"


def test_a_clash_and_a_wrong_object_are_refused():
    with pytest.raises(ValueError, match="registered twice"):
        sources.load([_ep("mine", f"{__name__}:CLASH")])
    with pytest.raises(TypeError, match="Source objects"):
        sources.load([_ep("bad", f"{__name__}:_ep")])


def test_make_cause_knows_a_registered_source_and_uses_its_hint(monkeypatch):
    monkeypatch.setattr(sources, "_loaded", {**sources.load([]), "clock": PLUGIN_SOURCE})
    cause = make_cause("clock", 0.0001, "e", nodeid="t.py::t")
    assert cause.source == "clock" and cause.hint == "freeze time in t.py::t" and cause.status == "suspected"
    with pytest.raises(ValueError, match="unknown source 'cosmic'"):
        make_cause("cosmic", 1.0, "")


def test_the_pytest_plugin_reads_no_entry_points():
    probe = ("import importlib.metadata as m; calls = []; real = m.entry_points; "
             "m.entry_points = lambda **kw: calls.append(kw) or real(**kw); "
             "import audit.flaky.plugin; print([c for c in calls if c.get('group') == 'ml_audit.sources'])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
