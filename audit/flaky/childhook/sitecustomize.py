"""Run at the start of every Python process a test spawns while ml-audit audits it.

The plugin puts this folder first on ``PYTHONPATH`` and names a settings file in
``ML_AUDIT_CHILD``: the running test's seeds, torch thread count and determinism mode. They are
applied here (``random`` at once, numpy and torch right after the child imports them, so a child
that never imports torch never pays for it), the child is logged, and then the ``sitecustomize``
this one shadows runs as it would have. Self-contained: the child may be another interpreter
without ml-audit installed.
"""

import os
import sys


def _settings():
    path = os.environ.get("ML_AUDIT_CHILD")
    if not path:
        return None
    try:
        import json

        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _seed_torch(spec):
    def apply(torch):
        seed = spec["seeds"].get("torch")
        if seed is not None:
            torch.manual_seed(seed)
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        if spec.get("deterministic") in ("on", "off"):
            setter = getattr(torch._C, "_set_deterministic_algorithms", None)
            (setter or torch.use_deterministic_algorithms)(spec["deterministic"] == "on")
    return apply


def _seed_numpy(spec):
    def apply(numpy):
        seed = spec["seeds"].get("numpy")
        if seed is not None:
            numpy.random.seed(seed % 2 ** 32)
    return apply


class _AfterImport:
    """A meta-path finder that runs an action once a module has been imported (and then leaves)."""

    def __init__(self, actions):
        self.actions = actions

    def find_spec(self, name, path=None, target=None):
        if name not in self.actions:
            return None
        import importlib.util

        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        action, run = self.actions.pop(name), spec.loader.exec_module
        if not self.actions:
            sys.meta_path.remove(self)

        def exec_module(module):
            run(module)
            try:
                action(module)
            except Exception:   # the child's own work goes on even if a setting cannot be applied
                pass

        spec.loader.exec_module = exec_module
        return spec


def _apply(spec):
    seed = spec["seeds"].get("random")
    if seed is not None:
        import random

        random.seed(seed)
    actions = {"torch": _seed_torch(spec), "numpy": _seed_numpy(spec)}
    for name in list(actions):
        if name in sys.modules:
            actions.pop(name)(sys.modules[name])
    if actions:
        sys.meta_path.insert(0, _AfterImport(actions))
    try:
        import json

        with open(spec["log"], "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "test": spec.get("test", "")}) + "\n")
    except OSError:
        pass


def _chain():
    """Run the sitecustomize this module shadows, if there is one."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_spec = _settings()
if _spec is not None:
    _apply(_spec)
_chain()
