"""The ray executor on a real local Ray instance: same verdicts and score as local, faults survived.

The instance is started here (``ray.init``, two CPUs, no dashboard) and ml-audit connects to it
as it would to any cluster: the project is shipped as a ``working_dir`` package, every unit and
shard is a Ray task. Skipped where Ray is not installed (``pip install 'ml-audit[ray]'``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from audit import api
from audit.cli import main

ray = pytest.importorskip("ray")

TWO_TESTS = ["tests/test_model.py::test_predictions_repeatable", "tests/test_model.py::test_logits_shape"]
QUIET = {"threads": [1], "orders": ["file"], "hashseed": False, "determinism": False, "budget": 300.0,
         "record": False, "workers": 2}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def state(tmp_path, monkeypatch):
    def fresh(name: str) -> None:
        monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / f"state-{name}"))
        monkeypatch.setenv("AUDIT_MUTATE_CACHE", str(tmp_path / f"mutate-{name}"))
    return fresh


def test_flaky_on_ray_gives_the_local_verdicts(cluster, state, sample_copy):
    (sample_copy / "pyproject.toml").write_text((sample_copy / "pyproject.toml").read_text().replace(
        'test_paths = ["tests"]', f'test_paths = {TWO_TESTS!r}'.replace("'", '"')))
    verdicts, settings = {}, {}
    for executor in ("local", "ray"):
        state(executor)
        result = api.flaky(sample_copy, executor=executor, runs=6, seed=7, **QUIET)
        assert result.stopped == "targets reached" and not result.error
        verdicts[executor] = {t.nodeid: t.verdict for t in result.tests}
        settings[executor] = result.settings
    assert verdicts["ray"] == verdicts["local"]
    assert verdicts["ray"]["tests/test_model.py::test_predictions_repeatable"] == "flaky"
    assert verdicts["ray"]["tests/test_model.py::test_logits_shape"].startswith("pass")
    assert settings["ray"]["executor"] == "ray" and settings["local"]["executor"] == "local"
    assert settings["ray"]["gpu_models"] == [] and settings["ray"]["rescheduled"] == 0


SLOW_TESTS = '''
import time


def test_ok():
    time.sleep(0.4)


def test_broken():
    time.sleep(0.4)
    assert False
'''


def _ray_worker_running_a_unit() -> int | None:
    """The pid of a Ray worker process whose child is a unit's pytest."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if not any(a.startswith(b"--audit-unit=") for a in cmd):
                continue
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if Path(f"/proc/{parent}/cmdline").read_bytes().startswith(b"ray::"):
                return parent
        except (OSError, ValueError, IndexError):
            continue
    return None


def test_a_worker_killed_mid_unit_loses_only_that_unit(cluster, state, tmp_path):
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_slow.py").write_text(SLOW_TESTS)
    state("fault")
    killed: list[int] = []
    done = threading.Event()

    def killer():
        while not done.is_set() and not killed:
            pid = _ray_worker_running_a_unit()
            if pid is not None:
                time.sleep(1.0)   # well inside the unit
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.1)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = api.flaky(root, executor="ray", runs=8, seed=3, rng=[], **QUIET)
    finally:
        done.set()
        thread.join()
    assert killed, "no Ray worker was seen running a unit"
    assert result.settings["rescheduled"] >= 1
    assert not result.error and result.stopped == "targets reached"
    verdicts = {t.nodeid.split("::")[1]: t for t in result.tests}
    assert verdicts["test_ok"].verdict.startswith("pass") and verdicts["test_ok"].executions >= 8
    assert verdicts["test_broken"].verdict == "fail"


def test_mutate_on_ray_gives_the_local_statuses_and_score(cluster, state, tmp_path):
    from test_mutate_engine import TOY_OPERATORS, make_toy

    project = make_toy(tmp_path / "proj")
    results = {}
    for executor in ("local", "ray"):
        state(executor)
        results[executor] = api.mutate(project, executor=executor, operators=TOY_OPERATORS, record=False,
                                       max_children=2)
    local, on_ray = results["local"], results["ray"]
    statuses = {m.id: m.status for m in local.mutants}
    assert len(statuses) >= 3 and {"killed", "survived"} <= set(statuses.values())
    assert {m.id: m.status for m in on_ray.mutants} == statuses
    assert on_ray.score == local.score and not on_ray.interrupted
    assert {m.id: m.killed_by for m in on_ray.mutants} == {m.id: m.killed_by for m in local.mutants}


def test_ray_missing_is_a_clear_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    import sys

    (tmp_path / "test_a.py").write_text("def test_a():\n    pass\n")
    monkeypatch.setitem(sys.modules, "ray", None)   # what an install without the extra looks like
    for command in ("flaky", "mutate"):
        assert main([command, str(tmp_path), "--executor", "ray", "--no-record"]) == 2
        err = capsys.readouterr().err
        assert "pip install 'ml-audit[ray]'" in err, err


def test_executor_key_is_checked_once_in_the_config(tmp_path):
    from audit.config import load_config
    from audit.errors import ConfigError

    (tmp_path / "pyproject.toml").write_text('[tool.audit]\nexecutor = "ray"\naddress = "ray://head:10001"\n')
    cfg = load_config(tmp_path)
    assert (cfg.executor, cfg.address) == ("ray", "ray://head:10001")
    (tmp_path / "pyproject.toml").write_text('[tool.audit]\nexecutor = "dask"\n')
    with pytest.raises(ConfigError, match="executor.*one of 'local', 'ray'"):
        load_config(tmp_path)


def test_the_shipped_project_leaves_out_history_caches_and_mutants(tmp_path):
    from audit.config import load_config
    from audit.ray_cluster import excludes

    cfg = load_config(tmp_path)
    out = excludes(cfg)
    for name in (".git", ".venv", "mutants", "__pycache__", "/.audit", "/reports/audit.sqlite", "/reports"):
        assert name in out, name
