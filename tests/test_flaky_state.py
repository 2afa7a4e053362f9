"""Each audit flaky run keeps its own state: a second run of the project is refused while one runs,
the first is never harmed by it, and a resume that adds nothing is not recorded twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest

from audit.cli import main


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_x.py").write_text(textwrap.dedent("""\
        import time

        def test_slow():
            time.sleep(0.5)

        def test_fine():
            pass
        """))
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = ['tests']\n")
    return root


def _runs(root: Path) -> int:
    with sqlite3.connect(root / "reports" / "audit.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def test_a_second_run_is_refused_while_the_first_goes_on(project, tmp_path, capsys):
    out = tmp_path / "first.json"
    first = subprocess.Popen([sys.executable, "-m", "audit", "flaky", str(project), "--runs", "8", "--budget", "120",
                              "--seed", "2", "--json", str(out), "--no-record"],
                             env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lock = tmp_path / "state"
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in lock.rglob("lock")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert main(["flaky", str(project), "--runs", "2", "--no-record"]) == 2
    assert f"another audit flaky of this project is running (pid {first.pid}" in capsys.readouterr().err
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    data = json.loads(out.read_text())
    assert {t["verdict"] for t in data["tests"]} == {"pass"} and data["stopped"] != "interrupted"


def test_each_run_has_its_own_state_and_resume_continues_the_latest(project, tmp_path):
    assert main(["flaky", str(project), "--runs", "2", "--seed", "4", "--no-record"]) == 0
    assert main(["flaky", str(project), "--runs", "2", "--seed", "9", "--no-record"]) == 0
    runs = sorted((tmp_path / "state").rglob("state.json"))
    assert len(runs) == 2
    assert {json.loads(p.read_text())["master_seed"] for p in runs} == {4, 9}
    report = tmp_path / "resumed.json"
    main(["flaky", str(project), "--resume", "--runs", "4", "--no-record", "--json", str(report)])
    assert json.loads(report.read_text())["settings"]["master_seed"] == 9


def test_a_resume_that_adds_nothing_is_not_recorded_twice(project, capsys):
    assert main(["flaky", str(project), "--runs", "2", "--seed", "4"]) == 0
    assert "recorded as run 1" in capsys.readouterr().out
    assert main(["flaky", str(project), "--resume", "--runs", "2"]) == 0
    assert "nothing new since it was recorded as run 1" in capsys.readouterr().out
    assert _runs(project) == 1
    assert main(["flaky", str(project), "--resume", "--runs", "5", "--budget", "300"]) == 0
    assert "recorded as run 2" in capsys.readouterr().out
    assert _runs(project) == 2
