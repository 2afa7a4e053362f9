"""The fork server: forked units give a fresh interpreter's answers, and it falls back when forking is unsafe."""

import textwrap
from pathlib import Path

import pytest

from audit import forkserver
from audit.api import configure, flaky as api_flaky
from audit.flaky.engine import fork_server_off
from audit.flaky.runner import Unit, run_unit
from audit.flaky.sources import FAMILIES
from audit.project import collect

pytestmark = pytest.mark.skipif(not forkserver.supported(), reason="this platform does not fork")

PARALLEL_AT_IMPORT = '''
import torch

# ATen's parallel_for (OpenMP) and a BLAS matmul, both at import time
WEIGHTS = torch.randn(4_000_000).exp().sum() + (torch.randn(256, 256) @ torch.randn(256, 256)).sum()


def scale(x):
    return x * 2
'''

TESTS = '''
import torch
from {module} import WEIGHTS, scale


def test_import_ran():
    assert torch.isfinite(WEIGHTS)


def test_parallel_op_in_the_test():
    x = torch.ones(3_000_000)
    assert scale(x).sum().item() == 6_000_000


def test_threads_follow_the_unit():
    assert torch.get_num_threads() >= 1
'''


def _project(root: Path, module: str = "heavy", lib: Path | None = None) -> Path:
    (root / "tests").mkdir(parents=True)
    (lib or root).joinpath(f"{module}.py").write_text(PARALLEL_AT_IMPORT)
    (root / "tests" / "test_heavy.py").write_text(TESTS.format(module=module))
    (root / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.pytest.ini_options]
        pythonpath = ["."]
        testpaths = ["tests"]
    """))
    return root


def _unit(tests, hashseed: str) -> Unit:
    return Unit(id=7, tests=tests, order="reversed", hashseed=hashseed, deterministic="on",
                seeds={f: "fresh" for f in FAMILIES}, seed_base=20261202, rounds=2, threads=[1, 2],
                env_threads=1, runs_without_draws=2, max_runs_per_test=2, stop_when_flaky=False, max_seconds=120)


def _answers(res) -> dict:
    return {(r["nodeid"], r["round"], r["attempt"]): (r["klass"], r["outcome"], r["threads"], r["seeds"])
            for r in res.rows}


def test_a_forked_unit_gives_the_rows_of_a_fresh_interpreter(sample_copy, tmp_path):
    cfg = configure(sample_copy, "flaky")
    imports: list[str] = []
    tests = collect(cfg, imports=imports)
    assert "torch" in imports and not any(m.startswith("tinyclf") for m in imports)   # never the project's own
    server = forkserver.ForkServer(tmp_path / "zygotes", seed=5)
    try:
        server.start(imports, seed=5)
        unit = _unit(tests, server.hashseed())
        forked = run_unit(cfg, unit, 60.0, tmp_path / "forked", forks=server)   # waits for the zygote
        fresh = run_unit(cfg, unit, 60.0, tmp_path / "fresh")
        again = run_unit(cfg, unit, 60.0, tmp_path / "again", forks=server)
        described = server.describe()
    finally:
        server.close()
    assert described["forked_units"] == 2 and described["fallback"] is None, described
    assert len(forked.rows) == len(fresh.rows) >= 2 * len(tests)
    assert _answers(forked) == _answers(fresh) == _answers(again)   # outcome per execution, seed for seed
    # once the zygote is ready, a forked child starts in a fraction of a fresh interpreter's time
    assert again.startup < fresh.startup / 2, (again.startup, fresh.startup)


def test_a_module_whose_import_runs_a_parallel_op_still_audits(tmp_path):
    project = _project(tmp_path / "proj")
    result = api_flaky(project, runs=4, budget=90, workers=2, attribute=False, record=False)
    fs = result.settings["fork_server"]
    assert fs["used"] and fs["forked_units"] > 0 and fs["fallback"] is None, fs
    assert {t.nodeid: t.verdict for t in result.tests} == {
        f"tests/test_heavy.py::{name}": "pass"
        for name in ("test_import_ran", "test_parallel_op_in_the_test", "test_threads_follow_the_unit")}
    assert all(t.executions >= 4 for t in result.tests)


def test_a_third_party_import_that_starts_threads_is_not_preloaded(tmp_path, monkeypatch):
    lib = tmp_path / "site"
    lib.mkdir()
    project = _project(tmp_path / "proj", module="threadylib", lib=lib)
    monkeypatch.setenv("PYTHONPATH", str(lib))
    result = api_flaky(project, runs=3, budget=90, workers=2, attribute=False, record=False)
    fs = result.settings["fork_server"]
    assert any("thread" in note for note in fs["notes"]), fs
    assert fs["forked_units"] > 0 and fs["fallback"] is None, fs
    assert {t.verdict for t in result.tests} == {"pass"}


def test_a_child_that_dies_before_its_first_test_turns_forking_off(tmp_path):
    project = _project(tmp_path / "proj")
    (project / "tests" / "conftest.py").write_text(textwrap.dedent("""
        import os, signal, sys

        main = getattr(sys.modules["__main__"], "__spec__", None)
        if main is not None and main.name == "audit.zygote":   # only in a forked child
            os.kill(os.getpid(), signal.SIGKILL)
    """))
    result = api_flaky(project, runs=3, budget=90, workers=2, attribute=False, record=False)
    fs = result.settings["fork_server"]
    assert fs["fallback"] and "before its first test" in fs["fallback"], fs
    assert fs["forked_units"] >= 1
    assert {t.verdict for t in result.tests} == {"pass"}
    assert all(t.executions >= 3 for t in result.tests)


def test_it_can_be_turned_off(sample_copy):
    cfg = configure(sample_copy, "flaky", fork_server=False)
    assert "turned off" in fork_server_off(cfg)
    assert fork_server_off(configure(sample_copy, "flaky")) is None
    assert "fork_server = false" in fork_server_off(cfg)
