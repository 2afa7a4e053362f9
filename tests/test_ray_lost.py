"""Faults a user meets on an existing Ray cluster: the cluster dies mid-run (the driver ends with a
clear error and the partial result, never a hang), and Ctrl-C (tasks cancelled, state saved, and
``--resume`` finishes the audit on the local executor).

Each cluster is a real one, started here with ``ray start --head`` in a temp dir of its own (so the
other Ray tests' instance is never touched), with token authentication as Ray starts clusters by
default. ``audit flaky`` runs as a user runs it, in its own process, connected with ``--address``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _kill_cluster(head: subprocess.Popen, temp_dir: str) -> None:
    for pid in _pids_mentioning(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait(timeout=30)


SLOW_TESTS = """
import time

def _ran():
    with open({marks!r}, "a") as f:
        f.write("x\\n")

def test_a():
    _ran()
    time.sleep(1.0)

def test_b():
    _ran()
    time.sleep(1.0)
"""

needs_ray_command = pytest.mark.skipif(not RAY.exists(), reason="the ray command is not installed beside this Python")


class Cluster:
    """A `ray start --head` cluster of 2 CPUs, its token in ``env`` for every client."""

    def __init__(self, tmp_path: Path):
        self.temp_dir = tempfile.mkdtemp(prefix="rl", dir="/tmp")   # short: Ray's socket paths must fit 107 bytes
        self.address = f"127.0.0.1:{_free_port()}"
        self.env = {**os.environ, "ML_AUDIT_STATE": str(tmp_path / "state"), "RAY_ADDRESS": "",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.head = subprocess.Popen(
            [str(RAY), "start", "--head", f"--port={self.address.rsplit(':', 1)[1]}", "--num-cpus=2",
             "--include-dashboard=false", f"--temp-dir={self.temp_dir}", "--disable-usage-stats", "--block"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def kill(self) -> None:
        _kill_cluster(self.head, self.temp_dir)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _project(tmp_path: Path) -> tuple[Path, Path]:
    marks = tmp_path / "ran"
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_slow.py").write_text(SLOW_TESTS.format(marks=str(marks)))
    return root, marks


def _audit(cluster: Cluster, root: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "audit", "flaky", str(root), "--runs", "500", "--budget", "600", "--rng", "",
         "--threads", "1", "--orders", "file", "--no-hashseed", "--no-determinism", "--no-attribute", "--no-record",
         "--json", str(out), *extra],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_tests(audit: subprocess.Popen, marks: Path, count: int = 4, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while not (marks.exists() and len(marks.read_text().split()) >= count):
        assert audit.poll() is None, audit.stdout.read()
        assert time.monotonic() < deadline, f"no test ran on the Ray cluster in {within:.0f} s"
        time.sleep(0.2)


@contextlib.contextmanager
def _audit_on_a_cluster(tmp_path: Path):
    """`audit flaky --executor ray` on a fresh cluster, yielded once its units have run some tests;
    whatever is still running afterwards is killed."""
    root, marks = _project(tmp_path)
    cluster = Cluster(tmp_path)
    out = tmp_path / "flaky.json"
    audit = None
    try:
        audit = _audit(cluster, root, out, "--executor", "ray", "--address", cluster.address)
        _wait_for_tests(audit, marks)
        yield cluster, audit, root, out
    finally:
        if audit is not None and audit.poll() is None:
            os.killpg(audit.pid, signal.SIGKILL)
        cluster.close()


def _output(audit: subprocess.Popen, within: float, what: str) -> str:
    try:
        return audit.communicate(timeout=within)[0]
    except subprocess.TimeoutExpired:
        pytest.fail(f"the driver still runs {within:.0f} s after {what}")


@needs_ray_command
def test_a_lost_cluster_ends_the_run_with_an_error_and_the_partial_result(tmp_path):
    with _audit_on_a_cluster(tmp_path) as (cluster, audit, _, out):
        cluster.kill()
        killed_at = time.monotonic()
        output = _output(audit, 150, "its cluster died")
        waited = time.monotonic() - killed_at
    assert audit.returncode == 2, output
    assert "lost the Ray cluster" in output or "was lost twice" in output, output
    assert "partial results" in output, output
    data = json.loads(out.read_text())
    assert data["stopped"] == "interrupted" and "Ray" in data["settings"]["executor_error"]
    assert sum(t["executions"] for t in data["tests"]) >= 1, "the rows returned before the loss were dropped"
    print(f"driver ended {waited:.1f} s after the cluster was killed")


@needs_ray_command
def test_ctrl_c_on_ray_saves_the_state_and_resume_finishes_it_locally(tmp_path):
    with _audit_on_a_cluster(tmp_path) as (cluster, audit, root, out):
        os.killpg(audit.pid, signal.SIGINT)   # what Ctrl-C in a terminal sends the foreground group
        output = _output(audit, 120, "Ctrl-C")
    assert audit.returncode == 130, output
    assert "--resume" in output, output
    first = json.loads(out.read_text())
    assert first["stopped"] == "interrupted" and first["settings"]["executor"] == "ray"
    before = {t["nodeid"]: t["executions"] for t in first["tests"]}
    assert sum(before.values()) >= 1
    resumed = subprocess.run(
        [sys.executable, "-m", "audit", "flaky", str(root), "--resume", "--runs", "6", "--budget", "600",
         "--executor", "local", "--no-record", "--json", str(out)],
        env=cluster.env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    data = json.loads(out.read_text())
    assert data["stopped"] != "interrupted" and data["settings"]["executor"] == "local"
    for test in data["tests"]:
        assert test["verdict"].startswith("pass") and test["executions"] >= max(6, before[test["nodeid"]]), test
