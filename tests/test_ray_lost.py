"""A Ray cluster that dies mid-run: the driver ends with a clear error and the partial result, never a hang.

The cluster is a real one, started here with ``ray start --head`` in a temp dir of its own (so the
other Ray tests' instance is never touched) and killed with SIGKILL, head and raylet together,
once the audit's units have run some tests. ``audit flaky`` runs as a user runs it, in its own
process, connected with ``--address``.
"""

from __future__ import annotations

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


@pytest.mark.skipif(not RAY.exists(), reason="the ray command is not installed beside this Python")
def test_a_lost_cluster_ends_the_run_with_an_error_and_the_partial_result(tmp_path):
    marks = tmp_path / "ran"
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_slow.py").write_text(textwrap.dedent(f"""
        import time

        def _ran():
            with open({str(marks)!r}, "a") as f:
                f.write("x\\n")

        def test_a():
            _ran()
            time.sleep(1.0)

        def test_b():
            _ran()
            time.sleep(1.0)
    """))
    temp_dir = tempfile.mkdtemp(prefix="rl", dir="/tmp")   # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    # a cluster started by `ray start` wants a token, given to the head and every client alike
    env = {**os.environ, "ML_AUDIT_STATE": str(tmp_path / "state"), "RAY_ADDRESS": "",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen([str(RAY), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                             f"--temp-dir={temp_dir}", "--disable-usage-stats", "--block"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = tmp_path / "flaky.json"
    audit = None
    try:
        deadline = time.monotonic() + 120
        audit = subprocess.Popen(
            [sys.executable, "-m", "audit", "flaky", str(root), "--executor", "ray", "--address", f"127.0.0.1:{port}",
             "--runs", "500", "--budget", "600", "--rng", "", "--threads", "1", "--orders", "file", "--no-hashseed",
             "--no-determinism", "--no-attribute", "--no-record", "--json", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        while not (marks.exists() and len(marks.read_text().split()) >= 4):
            assert audit.poll() is None, audit.stdout.read()
            assert time.monotonic() < deadline, "no test ran on the Ray cluster in 120 s"
            time.sleep(0.2)
        _kill_cluster(head, temp_dir)
        killed_at = time.monotonic()
        try:
            output, _ = audit.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            pytest.fail("the driver still runs 150 s after its cluster died")
        waited = time.monotonic() - killed_at
    finally:
        if audit is not None and audit.poll() is None:
            os.killpg(audit.pid, signal.SIGKILL)
        _kill_cluster(head, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert audit.returncode == 2, output
    assert "lost the Ray cluster" in output or "was lost twice" in output, output
    assert "partial results" in output, output
    data = json.loads(out.read_text())
    assert data["stopped"] == "interrupted" and "Ray" in data["settings"]["executor_error"]
    assert sum(t["executions"] for t in data["tests"]) >= 1, "the rows returned before the loss were dropped"
    print(f"driver ended {waited:.1f} s after the cluster was killed")
