"""RNG call-site tracing (audit.flaky.trace) on a small synthetic project: every draw pattern the
issue names is caught and mapped to the right project line, seeding is told apart from drawing,
and the plugin costs nothing unless asked for."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from audit.flaky.tracing import hygiene_list, read_trace

PKG = textwrap.dedent('''\
    import random

    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset, random_split


    def noise(x):
        return x + torch.randn_like(x)                                   # line 10


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)                                     # line 16
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.fc(x))                                  # line 20


    def shuffle_order(n):
        return torch.randperm(n)                                          # line 24


    def split(ds):
        return random_split(ds, [6, 2])                                   # line 28


    def beta_lambda():
        return torch.distributions.Beta(0.4, 0.4).sample().item()        # line 32


    def make_loader(ds):
        return DataLoader(ds, batch_size=2, shuffle=True)                 # line 36


    def np_global():
        return np.random.normal(size=5)                                   # line 40


    def np_fresh_rng():
        return np.random.default_rng().normal()                           # line 44


    def np_seeded():
        a = np.random.default_rng(3).normal()                             # line 48
        b = np.random.RandomState(3).normal()                             # line 49
        return a + b


    def py_random(frames):
        kept = [f for f in frames if random.random() > 0.1]              # line 54
        return kept, random.choice(frames)                                # line 55


    def seeded_model():
        with torch.random.fork_rng():
            torch.manual_seed(0)                                          # line 60
            return Block()                                                # line 61


    def pad(n):
        out = torch.empty(n, 3)                                           # line 65
        scratch = np.empty(3)                                             # line 66
        return out, scratch
''')

TESTS = textwrap.dedent('''\
    import random

    import numpy as np
    import pytest
    import torch
    from torch.utils.data import TensorDataset

    import rngpkg as p


    @pytest.fixture(scope="module")
    def shared_split():
        return p.split(TensorDataset(torch.arange(8.0)))


    def test_noise():
        assert p.noise(torch.zeros(3)).shape == (3,)


    def test_dropout_and_init():
        block = p.Block()
        block(torch.ones(2, 4))


    def test_randperm():
        assert sorted(p.shuffle_order(5).tolist()) == [0, 1, 2, 3, 4]


    def test_split_first(shared_split):
        assert len(shared_split[1]) == 2


    def test_split_second(shared_split):
        assert len(shared_split[0]) == 6


    def test_beta():
        assert 0 <= p.beta_lambda() <= 1


    def test_loader():
        loader = p.make_loader(TensorDataset(torch.arange(6.0)))
        assert len(next(iter(loader))[0]) == 2                            # line 43


    def test_np_global():
        assert len(p.np_global()) == 5


    def test_np_fresh_rng():
        p.np_fresh_rng()


    def test_np_seeded():
        p.np_seeded()


    def test_py_random():
        p.py_random(list(range(10)))


    def test_seeded_everything():
        torch.manual_seed(1)
        np.random.seed(2)
        random.seed(3)
        p.noise(torch.zeros(3))
        p.np_global()
        p.py_random(list(range(10)))


    def test_fork_rng_then_dropout():
        block = p.seeded_model()
        block(torch.ones(2, 4))


    def test_no_randomness():
        assert p.pad(2)[0].shape == (2, 3)
''')


def run_traced(root: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-p", "audit.flaky.trace", f"--audit-trace={out}", *args],
        cwd=root, capture_output=True, text=True, env=env, timeout=300)


def _tree(root: Path) -> list[str]:
    # .benchmarks is pytest-benchmark's (when installed it makes one in every rootdir), not ours
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.parts[len(root.parts)] != ".benchmarks")


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    root = tmp_path_factory.mktemp("rngproj")
    (root / "rngpkg.py").write_text(PKG)
    (root / "test_rng.py").write_text(TESTS)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    before = _tree(root)
    out = tmp_path_factory.mktemp("trace") / "trace.jsonl"
    proc = run_traced(root, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"records": read_trace(out), "root": root, "before": before}


def _sites(rec, family, kind="draw"):
    return {(s["path"], s["line"], s["function"]) for s in rec["draws"][family]["sites"] if s["kind"] == kind}


def _rec(traced, name):
    return traced["records"][f"test_rng.py::{name}"]


def test_every_test_gets_one_record(traced):
    assert len(traced["records"]) == 14
    assert all(r["outcome"] == "passed" for r in traced["records"].values())


def test_the_users_tree_is_left_alone(traced):
    assert _tree(traced["root"]) == traced["before"]


def test_torch_function_draw_maps_to_the_project_line(traced):
    rec = _rec(traced, "test_noise")
    assert _sites(rec, "torch") == {("rngpkg.py", 10, "noise")}
    site = rec["draws"]["torch"]["sites"][0]
    assert site["call_paths"] == [["test_rng.py::test_noise", "rngpkg.py::noise"]]
    assert "randn_like" in site["names"]
    assert rec["rng_hygiene"] is True and rec["unseeded_families"] == ["torch"]


def test_dropout_and_nn_init_draws_inside_cpp_are_caught(traced):
    rec = _rec(traced, "test_dropout_and_init")
    assert _sites(rec, "torch") == {("rngpkg.py", 16, "Block.__init__"), ("rngpkg.py", 20, "Block.forward")}
    forward = next(s for s in rec["draws"]["torch"]["sites"] if s["line"] == 20)
    assert forward["call_paths"] == [["test_rng.py::test_dropout_and_init", "rngpkg.py::Block.forward"]]


def test_randperm_and_beta_sampling_are_caught(traced):
    assert _sites(_rec(traced, "test_randperm"), "torch") == {("rngpkg.py", 24, "shuffle_order")}
    assert _sites(_rec(traced, "test_beta"), "torch") == {("rngpkg.py", 32, "beta_lambda")}


def test_random_split_in_a_module_fixture_names_the_fixture_for_every_user(traced):
    for name in ("test_split_first", "test_split_second"):
        rec = _rec(traced, name)
        assert _sites(rec, "torch") == {("rngpkg.py", 28, "split")}, name
        site = rec["draws"]["torch"]["sites"][0]
        assert site["call_paths"] == [[f"test_rng.py::{name}", "fixture:shared_split", "rngpkg.py::split"]]
        assert rec["rng_hygiene"] is True
    second = _rec(traced, "test_split_second")
    assert second["fixtures"] == [{"name": "shared_split", "scope": "module",
                                   "set_up_in": "test_rng.py::test_split_first"}]


def test_dataloader_iterator_seed_draw_names_where_the_loader_was_built(traced):
    rec = _rec(traced, "test_loader")
    assert _sites(rec, "torch") == {("test_rng.py", 43, "test_loader")}
    site = rec["draws"]["torch"]["sites"][0]
    assert site["loader_built_at"] == {"path": "rngpkg.py", "line": 36, "function": "make_loader"}
    assert any("DataLoader.__iter__" in v for v in site["via"])


def test_numpy_global_state_and_unseeded_default_rng(traced):
    assert _sites(_rec(traced, "test_np_global"), "numpy") == {("rngpkg.py", 40, "np_global")}
    fresh = _rec(traced, "test_np_fresh_rng")
    assert _sites(fresh, "numpy", kind="entropy") == {("rngpkg.py", 44, "np_fresh_rng")}
    assert fresh["rng_hygiene"] is True
    seeded = _rec(traced, "test_np_seeded")   # default_rng(3) and RandomState(3) are no global draws
    assert seeded["draws"]["numpy"]["sites"] == [] and seeded["rng_hygiene"] is False


def test_python_random_module_functions(traced):
    rec = _rec(traced, "test_py_random")
    assert _sites(rec, "random") == {("rngpkg.py", 54, "py_random"), ("rngpkg.py", 55, "py_random")}
    assert rec["draws"]["random"]["unseeded"] == rec["draws"]["random"]["count"] >= 11


def test_seeding_in_the_test_makes_its_draws_seeded(traced):
    rec = _rec(traced, "test_seeded_everything")
    assert rec["seeded_by_test"] == {"torch": True, "numpy": True, "random": True, "entropy": False}
    assert rec["rng_hygiene"] is False and rec["unseeded_families"] == []
    assert {f: rec["draws"][f]["count"] > 0 for f in ("torch", "numpy", "random")} == \
        {"torch": True, "numpy": True, "random": True}
    assert [(s["family"], s["path"], s["line"], s["deterministic"]) for s in rec["seedings"]] == \
        [("torch", "test_rng.py", 63, True), ("numpy", "test_rng.py", 64, True), ("random", "test_rng.py", 65, True)]


def test_seed_inside_fork_rng_does_not_seed_what_follows(traced):
    rec = _rec(traced, "test_fork_rng_then_dropout")
    sites = {s["line"]: s for s in rec["draws"]["torch"]["sites"]}
    assert sites[16]["unseeded"] == 0            # Linear init under manual_seed(0) in fork_rng
    assert sites[20]["unseeded"] == sites[20]["count"] == 1   # dropout after the stream was restored
    assert rec["rng_hygiene"] is True
    assert [(s["path"], s["line"]) for s in rec["seedings"]] == [("rngpkg.py", 60)]


def test_torch_empty_sites_are_recorded_and_numpy_empty_is_not(traced):
    rec = _rec(traced, "test_no_randomness")
    assert [(e["path"], e["line"], e["function"], e["call"]) for e in rec["empty_sites"]] == \
        [("rngpkg.py", 65, "pad", "torch.empty")]
    assert rec["empty_sites"][0]["call_path"] == ["test_rng.py::test_no_randomness", "rngpkg.py::pad"]
    assert rec["rng_hygiene"] is False
    assert all(rec["draws"][f]["count"] == 0 for f in ("torch", "numpy", "random"))


def test_sites_survive_the_audit_plugin_seeding_every_test(tmp_path):
    """The flaky plugin's own seeding is not the test's: a pinned run still flags the test."""
    (tmp_path / "rngpkg.py").write_text(PKG)
    (tmp_path / "test_rng.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    out = tmp_path / "t.jsonl"
    proc = run_traced(tmp_path, out, "--audit-enable", "--audit-seed-torch=7", "--audit-seed-numpy=7",
                      "--audit-seed-random=fresh", "-k", "noise or split or np_global or py_random")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = read_trace(out)
    assert _sites(recs["test_rng.py::test_noise"], "torch") == {("rngpkg.py", 10, "noise")}
    assert _sites(recs["test_rng.py::test_split_second"], "torch") == {("rngpkg.py", 28, "split")}
    assert _sites(recs["test_rng.py::test_np_global"], "numpy") == {("rngpkg.py", 40, "np_global")}
    assert all(r["rng_hygiene"] and not any(r["seeded_by_test"].values()) for r in recs.values())


def test_tracing_is_opt_in():
    assert not [ep for ep in entry_points(group="pytest11") if ep.value.startswith("audit.flaky.trace")]
    probe = ("import sys, audit.flaky.plugin; "
             "print([m for m in ('audit.flaky.trace', 'audit.flaky.tracer') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_audit_trace_option_needs_the_plugin(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--audit-trace={tmp_path / 't.jsonl'}"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 4 and "--audit-trace" in proc.stderr
    assert not (tmp_path / "t.jsonl").exists()


def test_a_tracer_fault_stops_tracing_but_never_fails_the_test(tmp_path):
    from audit.flaky.tracer import RngTracer

    (tmp_path / "victim.py").write_text("def work(n):\n    total = 0\n    for i in range(n):\n"
                                        "        total += i\n    return total\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import victim
    finally:
        sys.path.remove(str(tmp_path))

    class Broken:
        def read(self):
            raise RuntimeError("state unreadable")

    tracer = RngTracer(tmp_path.resolve())
    previous = sys.gettrace()
    tracer.start()
    tracer.states["random"] = Broken()
    try:
        result = victim.work(5)
    finally:
        tracer.stop()
    assert result == 10
    assert tracer.error == "RuntimeError: state unreadable"
    assert sys.gettrace() is previous


def test_hygiene_list_names_the_unseeded_consumers(traced):
    listed = {e["nodeid"].split("::")[1]: e for e in hygiene_list(traced["records"].values())}
    assert set(listed) == {"test_noise", "test_dropout_and_init", "test_randperm", "test_split_first",
                           "test_split_second", "test_beta", "test_loader", "test_np_global", "test_np_fresh_rng",
                           "test_py_random", "test_fork_rng_then_dropout"}
    assert listed["test_np_global"] == {"nodeid": "test_rng.py::test_np_global", "families": ["numpy"],
                                        "sites": {"numpy": ["rngpkg.py:40 (np_global)"]}}
    assert listed["test_fork_rng_then_dropout"]["sites"] == {"torch": ["rngpkg.py:20 (Block.forward)"]}
