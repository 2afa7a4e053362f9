"""Opt-in pytest plugin: the global state a test leaves behind, for the polluter report.

Loaded with ``-p audit.flaky.statediff --audit-statediff=FILE``; inert otherwise. Around each
test it snapshots what a later test can trip over (environment variables, the cwd, torch's
default dtype and grad mode, the global RNG states, simple module globals of the project's own
modules) and appends one JSON line per test with what changed. :func:`describe` turns a change
into the words of a cause's ``state``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from pathlib import Path

import pytest

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


def diff(before: dict, after: dict) -> list[dict]:
    """What changed between two snapshots, most telling first: env, dtype, grad, cwd, globals, RNG."""
    out = []
    env_b, env_a = before["environ"], after["environ"]
    for key in sorted(set(env_b) | set(env_a)):
        if env_b.get(key) != env_a.get(key) and not key.startswith(_LIBRARY_ENV):
            out.append({"kind": "env", "name": key, "before": env_b.get(key), "after": env_a.get(key)})
    for kind in ("dtype", "grad", "cwd"):
        if before[kind] != after[kind]:
            out.append({"kind": kind, "name": kind, "before": before[kind], "after": after[kind]})
    for key in sorted(set(before["globals"]) | set(after["globals"])):
        if before["globals"].get(key) != after["globals"].get(key):
            out.append({"kind": "global", "name": key, "before": before["globals"].get(key),
                        "after": after["globals"].get(key)})
    for family in sorted(after["rng"]):
        if before["rng"].get(family) != after["rng"][family]:
            out.append({"kind": "rng", "name": family, "before": before["rng"].get(family),
                        "after": after["rng"][family]})
    return out


def describe(changes: list[dict]) -> str | None:
    """Changes in the words of a cause's ``state`` (what hints.make_cause understands), e.g.
    "os.environ['X'] = '2' left behind"; RNG stream positions only when nothing else changed."""
    telling = [c for c in changes if c["kind"] != "rng"] or changes
    if not telling:
        return None
    return "; ".join(_words(c) for c in telling[:3]) + " left behind"


def _words(change: dict) -> str:
    kind, name, after = change["kind"], change["name"], change["after"]
    if kind == "env":
        return f"os.environ[{name!r}] removed" if after is None else f"os.environ[{name!r}] = {after!r}"
    if kind == "dtype":
        return f"torch.get_default_dtype() = {after}"
    if kind == "grad":
        return f"torch.is_grad_enabled() = {after}"
    if kind == "cwd":
        return f"the working directory {after}"
    if kind == "global":
        return f"module global {name} = {after}"
    return f"the global {name} RNG stream position"


class StateDiffPlugin:
    def __init__(self, config, path):
        self.root = str(Path(str(config.rootpath)).resolve()) + os.sep
        self.out = open(path, "a", buffering=1)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        before = snapshot(self.root)
        yield
        after = snapshot(self.root)
        self.out.write(json.dumps({"nodeid": item.nodeid, "changes": diff(before, after)}, default=str) + "\n")

    def pytest_unconfigure(self, config):
        self.out.close()
