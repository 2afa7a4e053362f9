"""Opt-in pytest plugin: the global state a test leaves behind, for the polluter report.

Loaded with ``-p audit.flaky.statediff --audit-statediff=FILE``; inert otherwise. Around each
test it snapshots what a later test can trip over (environment variables, the cwd, torch's
default dtype and grad mode, the global RNG states, simple module globals of the project's own
modules) and appends one JSON line per test with what changed, as
:class:`audit.model.flaky.StateChange` records; :func:`read_changes` reads them back. The words
for them are audit.flaky.hints' business.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from pathlib import Path

import pytest

from audit.model.flaky import StateChange

# variables libraries set for themselves on first use (torch's inductor cache dir, OpenMP/MKL):
# not something a test left behind for the next one
_LIBRARY_ENV = ("PYTEST_", "TORCHINDUCTOR_", "TORCH_", "TRITON_", "KMP_", "OMP_", "MKL_", "CUDA_", "NCCL_")
_SIMPLE = (str, int, float, bool, bytes, type(None), tuple, list, dict, set, frozenset)


def pytest_addoption(parser):
    parser.getgroup("ml-audit").addoption("--audit-statediff", default=None,
                                          help="append the global state each test changes to this file")


def pytest_configure(config):
    path = config.getoption("audit_statediff", None)
    if path:
        config.pluginmanager.register(StateDiffPlugin(config, path), "ml-audit-statediff")


def _digest(value) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()[:12]


def _rng_states() -> dict:
    states = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        states["torch"] = hashlib.sha1(torch.random.get_rng_state().numpy().tobytes()).hexdigest()[:12]
    np = sys.modules.get("numpy")
    if np is not None:
        states["numpy"] = _digest(np.random.get_state()[1][:8].tolist() + [np.random.get_state()[2]])
    import random
    states["random"] = _digest(random.getstate()[1][-8:])
    return states


def _project_globals(root: str) -> dict[str, str]:
    """``module.name`` -> repr of every simple module global of the project's own modules."""
    found = {}
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None) or ""
        if not path.startswith(root) or "site-packages" in path or name.startswith("audit."):
            continue
        for key, value in list(vars(mod).items()):
            if key.startswith("__") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
                continue
            if isinstance(value, _SIMPLE):
                try:
                    text = repr(value)
                except Exception:  # noqa: BLE001 - a broken __repr__ is not our business
                    continue
                found[f"{name}.{key}"] = text[:200]
    return found


def snapshot(root: str) -> dict:
    torch = sys.modules.get("torch")
    return {
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "dtype": str(torch.get_default_dtype()) if torch is not None else None,
        "grad": torch.is_grad_enabled() if torch is not None else None,
        "rng": _rng_states(),
        "globals": _project_globals(root),
    }


def diff(before: dict, after: dict) -> list[StateChange]:
    """What changed between two snapshots, most telling first: env, dtype, grad, cwd, globals, RNG."""
    out = []
    env_b, env_a = before["environ"], after["environ"]
    for key in sorted(set(env_b) | set(env_a)):
        if env_b.get(key) != env_a.get(key) and not key.startswith(_LIBRARY_ENV):
            out.append(StateChange("env", key, env_b.get(key), env_a.get(key)))
    for kind in ("dtype", "grad", "cwd"):
        if before[kind] != after[kind]:
            out.append(StateChange(kind, kind, before[kind], after[kind]))
    for key in sorted(set(before["globals"]) | set(after["globals"])):
        if before["globals"].get(key) != after["globals"].get(key):
            out.append(StateChange("global", key, before["globals"].get(key), after["globals"].get(key)))
    for family in sorted(after["rng"]):
        if before["rng"].get(family) != after["rng"][family]:
            out.append(StateChange("rng", family, before["rng"].get(family), after["rng"][family]))
    return out


def read_changes(path) -> dict[str, list[StateChange]]:
    """The changes each test of a probe run left, by node id (the last run of a test wins)."""
    found = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            found[rec["nodeid"]] = [StateChange.from_json(c) for c in rec["changes"]]
    return found


class StateDiffPlugin:
    """Snapshots the global state around each test and writes one line with what changed."""

    def __init__(self, config, path):
        self.root = str(Path(str(config.rootpath)).resolve()) + os.sep
        self.out = open(path, "a", buffering=1)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        before = snapshot(self.root)
        yield
        after = snapshot(self.root)
        changes = [c.to_json() for c in diff(before, after)]
        self.out.write(json.dumps({"nodeid": item.nodeid, "changes": changes}, default=str) + "\n")

    def pytest_unconfigure(self, config):
        self.out.close()
