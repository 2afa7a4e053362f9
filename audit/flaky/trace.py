"""Where a test draws randomness: the pytest plugin that writes one trace record per test.

Loaded only on request (``-p audit.flaky.trace --audit-trace=FILE``), so ordinary runs pay
nothing. Around each test's setup and call it runs the RNG tracer (audit.flaky.tracer), merges
the draws of higher-scoped fixtures the test uses but that were set up before it, and writes a
JSON line: the draw sites per family with their call paths, the seedings, the ``torch.empty``
sites, and the ``rng_hygiene`` flag of a test that consumes a global stream it never seeded.
audit.flaky.tracing runs tests under it and reads the records back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.flaky.sources import FAMILIES
from audit.flaky.tracer import RngTracer


def pytest_addoption(parser):
    group = parser.getgroup("ml-audit")
    group.addoption("--audit-trace", default=None, metavar="FILE",
                    help="ml-audit: write one JSON line per test with its RNG draw sites (needs "
                         "-p audit.flaky.trace)")


def pytest_configure(config):
    path = config.getoption("audit_trace", None)
    if path:
        config.pluginmanager.register(TracePlugin(config, path), "ml-audit-trace")


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
