"""The ml_audit pytest plugin is registered, and inert unless --audit-enable is given."""

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

PROBE = textwrap.dedent("""
    import json, os, random

    import numpy as np
    import torch

    def test_probe():
        with open(os.environ["PROBE_OUT"], "w") as f:
            json.dump({
                "random": random.random(),
                "numpy": float(np.random.rand()),
                "torch_seed": torch.initial_seed(),
                "threads": torch.get_num_threads(),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
            }, f)
""")


def test_plugin_is_registered_as_pytest11_entry_point():
    eps = [ep for ep in entry_points(group="pytest11") if ep.name == "ml_audit"]
    assert len(eps) == 1
    assert eps[0].value == "audit.flaky.plugin"
    assert eps[0].load().__name__ == "audit.flaky.plugin"


def _probe(tmp_path, *args, name="out.json"):
    (tmp_path / "test_probe.py").write_text(PROBE)
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**__import__("os").environ, "PROBE_OUT": str(out), "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_plugin_loads_but_changes_nothing_by_default(tmp_path):
    default, out_default = _probe(tmp_path, name="a.json")
    again, _ = _probe(tmp_path, name="b.json")
    without, _ = _probe(tmp_path, "-p", "no:ml_audit", name="c.json")
    # nothing is seeded: fresh interpreters draw different values (equal by chance with p < 1e-9)
    assert default["random"] != again["random"]
    assert default["numpy"] != again["numpy"]
    assert default["torch_seed"] != again["torch_seed"]
    # nothing else is changed either
    for probe in (default, again):
        assert probe["threads"] == without["threads"]
        assert probe["deterministic"] is False
    assert "audit" not in out_default.lower()


def test_plugin_options_are_listed_in_pytest_help():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True)
    assert "--audit-enable" in proc.stdout
