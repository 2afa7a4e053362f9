"""audit.pytest_run, the one module that starts pytest: command parts, timeouts, stalls, crashes, kills."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from audit.config import load_config
from audit.flaky import runner
from audit.flaky.runner import Unit, run_unit
from audit.pytest_run import QUIET_ARGS, PytestRun


def project(root: Path, tests: str, conftest: str = "", audit: str = "") -> object:
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_x.py").write_text(textwrap.dedent(tests))
    if conftest:
        (root / "tests" / "conftest.py").write_text(textwrap.dedent(conftest))
    (root / "pyproject.toml").write_text(f"[tool.pytest.ini_options]\ntestpaths = ['tests']\n[tool.audit]\n{audit}")
    return load_config(root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie left for init to reap is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_command_is_built_from_named_parts(tmp_path):
    cfg = project(tmp_path, "def test_a():\n    pass\n", audit="pytest_args = ['-rA']\ntest_paths = ['tests']\n")
    run = PytestRun(cfg, options=["-q"], plugins=["audit.flaky.trace"], plugins_off=["randomly", "randomly"],
                    targets=["tests/test_x.py::test_a"])
    cmd = run.command()
    assert cmd[1:3] == ["-m", "pytest"] and cmd[3:3 + len(QUIET_ARGS)] == QUIET_ARGS
    assert cmd[3 + len(QUIET_ARGS):] == ["-rA", "-p", "no:randomly", "-p", "audit.flaky.trace", "-q",
                                         "tests/test_x.py::test_a"]
    assert PytestRun(cfg).command()[-1] == "tests"          # the project's test paths by default
    assert PytestRun(cfg, verbatim=["-x", "t.py"]).command()[1:] == ["-m", "pytest", "-x", "t.py"]


def test_a_run_returns_its_exit_code_and_output(tmp_path):
    cfg = project(tmp_path, "def test_a():\n    assert 1 == 2\n")
    out = PytestRun(cfg, options=["-q"]).run(120, keep_output=True)
    assert out.returncode == 1 and "1 failed" in out.output and not out.timed_out
    assert not list(tmp_path.rglob("__pycache__")) and not (tmp_path / ".pytest_cache").exists()


def test_a_whole_run_timeout_kills_it(tmp_path):
    cfg = project(tmp_path, "import time\n\ndef test_a():\n    time.sleep(300)\n")
    started = time.monotonic()
    out = PytestRun(cfg).run(3)
    assert out.timed_out and out.returncode is not None and out.returncode < 0
    assert time.monotonic() - started < 60


def test_a_hung_test_is_reported_unfinished_and_its_children_die_with_it(tmp_path):
    pidfile = tmp_path / "child.pid"
    cfg = project(tmp_path / "p", f"""
        import subprocess, time

        def test_hangs():
            child = subprocess.Popen(["sleep", "300"])
            open({str(pidfile)!r}, "w").write(str(child.pid))
            time.sleep(300)
        """)
    unit = Unit(id=1, tests=["tests/test_x.py::test_hangs"])
    res = run_unit(cfg, unit, timeout=3.0, workdir=tmp_path / "work")
    [row] = res.rows
    assert (row["nodeid"], row["outcome"], row["klass"], row["unit"]) == ("tests/test_x.py::test_hangs", "timeout",
                                                                          "fail", 1)
    assert "still running after 3s" in row["digest"]
    deadline = time.monotonic() + 10
    while _alive(int(pidfile.read_text())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(pidfile.read_text()))


def test_a_crash_becomes_a_row_for_the_running_test(tmp_path):
    cfg = project(tmp_path, "import os\n\ndef test_ok():\n    pass\n\ndef test_exits():\n    os._exit(3)\n")
    res = run_unit(cfg, Unit(id=2, tests=["tests/test_x.py::test_ok", "tests/test_x.py::test_exits"]),
                   timeout=60.0, workdir=tmp_path / "work")
    by = {r["nodeid"].split("::")[1]: r for r in res.rows}
    assert by["test_ok"]["outcome"] == "passed"
    assert by["test_exits"]["outcome"] == "crashed" and "exited with 3" in by["test_exits"]["digest"]


def test_a_run_stuck_outside_any_test_is_ended_as_stalled(tmp_path, monkeypatch):
    cfg = project(tmp_path, "def test_a():\n    pass\n", conftest="import time\ntime.sleep(300)\n")
    monkeypatch.setattr(runner, "STALL_GRACE", 1.0)
    started = time.monotonic()
    res = run_unit(cfg, Unit(id=3, tests=["tests/test_x.py::test_a"]), timeout=1.0, workdir=tmp_path / "work")
    assert time.monotonic() - started < 60
    assert res.rows == [] and [e["event"] for e in res.events] == ["stalled"]
    assert res.returncode is not None and res.returncode < 0


@pytest.mark.parametrize("stop_after", [1.0])
def test_a_stop_request_interrupts_the_run(tmp_path, stop_after):
    import threading

    cfg = project(tmp_path, "import time\n\ndef test_a():\n    time.sleep(300)\n")
    stop = threading.Event()
    threading.Timer(stop_after, stop.set).start()
    procs: dict = {}
    out = PytestRun(cfg).run(120, stop=stop, procs=procs, key="k")
    assert out.interrupted and not out.timed_out and procs == {}


def test_a_child_dies_with_ml_audit_even_when_ml_audit_is_killed(tmp_path):
    import signal
    import subprocess
    import sys

    pidfile = tmp_path / "pytest.pid"
    project(tmp_path / "p", f"""
        import os, time

        def test_waits():
            open({str(pidfile)!r}, "w").write(str(os.getpid()))
            time.sleep(300)
        """)
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from audit.config import load_config
        from audit.pytest_run import PytestRun
        PytestRun(load_config({str(tmp_path / "p")!r})).run(600)
        """)])
    deadline = time.monotonic() + 120
    while not (pidfile.is_file() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pidfile.read_text())
    assert _alive(child)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
