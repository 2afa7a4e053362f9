"""``audit flaky`` end to end on small synthetic projects: verdicts, repros, faults, errors, resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audit.api import flaky as api_flaky
from audit.cli import main
from audit.report.flaky_table import print_result
from rich.console import Console

FLAKY_TESTS = '''
import random

SEEN = set()

def test_coin():
    assert random.random() < 0.5

def test_hash_order():
    assert next(iter({"alpha", "beta", "gamma", "delta"})) != "alpha"

def test_broken():
    assert 1 == 2

def test_fine():
    assert sum(range(10)) == 45

def test_polluter():
    SEEN.add("polluted")

def test_victim():
    assert "polluted" not in SEEN
'''

FAULT_TESTS = '''
import ctypes, os, time

def test_hangs():
    time.sleep(600)

def test_segfaults():
    ctypes.string_at(0)

def test_exits():
    os._exit(3)

def test_fine():
    pass
'''


def make_project(root: Path, tests: str, pyproject: str = "") -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_x.py").write_text(textwrap.dedent(tests))
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = ['tests']\n" + pyproject)
    return root


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_finds_flaky_tests_with_repros_that_fail_again(tmp_path):
    root = make_project(tmp_path / "proj", FLAKY_TESTS)
    before = snapshot(root)
    result = api_flaky(root, runs=14, budget=400.0, seed=4242, workers=2, attribute=False)
    verdicts = {t.nodeid.split("::")[1]: t for t in result.tests}
    assert verdicts["test_coin"].verdict == "flaky"
    assert verdicts["test_hash_order"].verdict == "flaky"
    assert verdicts["test_victim"].verdict == "flaky"      # fails once test_polluter ran first
    assert verdicts["test_broken"].verdict == "fail" and verdicts["test_broken"].rate == 1.0
    assert verdicts["test_fine"].verdict == "pass" and verdicts["test_polluter"].verdict == "pass"
    assert verdicts["test_fine"].executions >= 14
    for name in ("test_coin", "test_hash_order", "test_victim"):
        t = verdicts[name]
        assert t.repro_verified is True, (name, t.repro)
        assert 0 < t.failures < t.executions and t.interval[0] < t.rate < t.interval[1]
    assert "tests/test_x.py::test_polluter tests/test_x.py::test_victim" in verdicts["test_victim"].repro
    assert "PYTHONHASHSEED=" in verdicts["test_hash_order"].repro
    # the repro is a plain shell line that fails when run as printed
    proc = subprocess.run(verdicts["test_hash_order"].repro, shell=True, cwd=root, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), timeout=300)
    assert proc.returncode == 1 and "1 failed" in proc.stdout
    data = result.to_json()
    assert data["schema"] == "ml-audit.flaky/4" and data["project"] == str(root)
    assert all(t["causes"] == [] for t in data["tests"])
    # a script calling the API records the run like the command does, and writes nothing else
    assert result.recorded.run_id == 1 and result.recorded.path == root / "reports" / "audit.sqlite"
    after = snapshot(root)
    assert after.pop("reports/audit.sqlite").startswith(b"SQLite format 3")
    assert after == before


def test_hangs_segfaults_and_exits_are_recorded_and_the_audit_goes_on(tmp_path):
    root = make_project(tmp_path / "proj", FAULT_TESTS)
    result = api_flaky(root, runs=2, timeout=3.0, budget=400.0, seed=1, workers=2, attribute=False)
    verdicts = {t.nodeid.split("::")[1]: t for t in result.tests}
    assert set(verdicts["test_hangs"].outcomes) == {"timeout"}
    assert set(verdicts["test_segfaults"].outcomes) == {"crashed"}
    assert set(verdicts["test_exits"].outcomes) == {"crashed"}
    assert verdicts["test_hangs"].verdict == verdicts["test_exits"].verdict == "error"
    assert "signal" in verdicts["test_segfaults"].failing_settings[0].digest
    assert verdicts["test_fine"].verdict == "pass" and verdicts["test_fine"].executions >= 2
    # the table says what happened, not just "error ... varied"
    console = Console(record=True, width=250)
    print_result(result, console)
    text = console.export_text()
    assert "timeout: still running after 3s (" in text
    assert "crashed: killed by signal 11 (SIGSEGV) during the test (" in text
    assert "crashed: interpreter exited with 3 during the test (" in text


def test_json_naming_a_folder_is_refused_before_the_run(tmp_path, capsys):
    root = make_project(tmp_path / "proj", "def test_a():\n    pass\n")
    assert main(["flaky", str(root), "--json", str(tmp_path)]) == 2
    assert "it is a folder" in capsys.readouterr().err
    assert not list((tmp_path / "state").rglob("rows.jsonl")) and not (root / "reports").exists()


@pytest.mark.parametrize("files, args, message", [
    (None, [], "does not exist"),
    ({"tests/test_none.py": "x = 1\n"}, [], "no tests"),
    ({"tests/test_bad.py": "import no_such_module_here\n\ndef test_a():\n    pass\n"}, [], "import"),
    ({"tests/test_a.py": "def test_a():\n    pass\n"}, ["--rng", "jax"], "unknown RNG family"),
    ({"tests/test_a.py": "def test_a():\n    pass\n"}, ["--budget", "0"], "--budget"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, files, args, message):
    root = tmp_path / "proj"
    if files is not None:
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
    assert main(["flaky", str(root), *args]) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")


# fails on every second execution, counted in a file outside the project: flaky for certain
ALTERNATING = '''
import os

def test_alternates():
    path = os.environ["ALTERNATING_COUNTER"]
    n = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(n + 1))
    assert n % 2 == 0

def test_broken():
    assert 1 == 2

def test_fine():
    assert sum(range(10)) == 45
'''


def test_cli_exit_code_is_0_without_a_flaky_test_and_1_with_one(tmp_path, monkeypatch):
    quiet = ["--no-attribute", "--runs", "2", "--seed", "7", "--budget", "300", "--rng", "random", "--threads", "1",
             "--no-determinism", "--orders", "file", "--no-hashseed", "--no-record"]
    steady = make_project(tmp_path / "steady", "def test_fine():\n    pass\n\ndef test_broken():\n    assert 0\n")
    assert main(["flaky", str(steady), *quiet]) == 0      # a test failing every time is broken, not flaky
    monkeypatch.setenv("ALTERNATING_COUNTER", str(tmp_path / "counter"))
    flaky = make_project(tmp_path / "flaky", ALTERNATING)
    out = tmp_path / "flaky.json"
    assert main(["flaky", str(flaky), *quiet, "--json", str(out)]) == 1
    verdicts = {t["nodeid"].split("::")[1]: t["verdict"] for t in json.loads(out.read_text())["tests"]}
    assert verdicts == {"test_alternates": "flaky", "test_broken": "fail", "test_fine": "pass"}


def test_cli_json_and_resume_after_a_finished_run(tmp_path, capsys):
    root = make_project(tmp_path / "proj", FLAKY_TESTS)
    out = tmp_path / "report.json"
    main(["flaky", str(root), "--no-attribute", "--runs", "2", "--seed", "7", "--json", str(out), "--budget", "300",
          "--rng", "random", "--threads", "1", "--no-determinism", "--orders", "file"])
    data = json.loads(out.read_text())
    verdicts = {t["nodeid"].split("::")[1]: t["verdict"] for t in data["tests"]}
    assert verdicts["test_broken"] == "fail"
    assert data["settings"]["rng_pinned"] == ["torch", "numpy", "entropy"] and data["settings"]["threads"] == [1]
    assert data["settings"]["determinism"] == "not varied" and data["settings"]["master_seed"] == 7
    first = {t["nodeid"]: t["executions"] for t in data["tests"]}
    # resume carries on from the saved rows with a larger run target
    code = main(["flaky", str(root), "--resume", "--no-attribute", "--runs", "4", "--json", str(out), "--budget", "300"])
    again = {t["nodeid"]: t for t in json.loads(out.read_text())["tests"]}
    fine = "tests/test_x.py::test_fine"
    assert again[fine]["executions"] >= 4 > first[fine]
    assert "audit flaky" in capsys.readouterr().out


def test_resume_without_a_saved_audit_is_an_error(tmp_path, capsys):
    root = make_project(tmp_path / "proj", "def test_a():\n    pass\n")
    assert main(["flaky", str(root), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_keeps_partial_results_and_resume_continues(tmp_path, stop_signal):
    root = make_project(tmp_path / "proj", FLAKY_TESTS.replace("def test_fine():",
                                                                "def test_fine():\n    import time; time.sleep(0.05)"))
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen([sys.executable, "-m", "audit", "flaky", str(root), "--budget", "300",
                             "--runs", "400", "--seed", "3", "--no-record"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = list((tmp_path / "state").rglob("rows.jsonl"))
        if found and found[0].stat().st_size > 0:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no unit finished in time")
    proc.send_signal(stop_signal)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out and "--resume" in out and "test_broken" in out
    state = json.loads(found[0].with_name("state.json").read_text())
    saved = len(found[0].read_text().splitlines())
    assert saved > 0 and state["seconds"] > 0
    # --resume continues from the saved rows (the budget counts the time already spent)
    report = tmp_path / "resumed.json"
    code = main(["flaky", str(root), "--resume", "--no-attribute", "--no-record", "--json", str(report),
                 "--budget", str(state["seconds"] + 20)])
    data = json.loads(report.read_text())
    assert code == 1 and data["stopped"] != "interrupted"
    assert data["executions"] > saved and data["settings"]["master_seed"] == 3
    assert len(found[0].read_text().splitlines()) > saved


def test_passes_with_few_executions_are_weak_evidence_and_say_what_would_bound_them(tmp_path, capsys):
    root = make_project(tmp_path / "proj", "def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    out = tmp_path / "r.json"
    assert main(["flaky", str(root), "--runs", "3", "--seed", "2", "--no-record", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert {t["evidence_strength"] for t in data["tests"]} == {"weak"}
    assert data["evidence"]["weak"] == 2 and data["evidence"]["rate"] == 0.05
    assert data["evidence"]["more_executions"] == sum(59 - t["executions"] for t in data["tests"])
    assert "2 tests: 2 pass (2 with weak evidence)" in printed
    assert "weak evidence: 2 passing tests ran too few times to bound their failure rate below 5%" in printed


def test_tests_the_budget_never_reached_are_not_run_not_error(tmp_path):
    root = make_project(tmp_path / "proj", "def test_a():\n    pass\n")
    result = api_flaky(root, budget=0.5, seed=2, record=False)
    [t] = result.tests
    assert (t.verdict, t.executions, t.not_run_reason) == ("not run", 0, "the budget ended before it got a turn")
    assert result.stopped == "budget spent"


WRITERS = '''
from pathlib import Path

def test_appends_a_row():
    with open("data.csv", "a") as f:
        f.write("1,2\\n")

def test_writes_beside_itself():
    (Path(__file__).parent / "out.txt").write_text("done")

def test_reads_only():
    assert Path("pyproject.toml").is_file()
'''


def test_tests_that_write_leave_the_tree_unchanged_and_are_listed(tmp_path, capsys):
    root = make_project(tmp_path / "proj", WRITERS)
    before = snapshot(root)
    out = tmp_path / "r.json"
    assert main(["flaky", str(root), "--runs", "20", "--seed", "3", "--no-record", "--json", str(out)]) == 0
    assert snapshot(root) == before
    writes = {t["nodeid"].split("::")[1]: t["writes"] for t in json.loads(out.read_text())["tests"]}
    assert writes == {"test_appends_a_row": ["data.csv"], "test_writes_beside_itself": ["tests/out.txt"],
                      "test_reads_only": []}
    printed = capsys.readouterr().out
    assert "tests that write into the project" in printed and "test_appends_a_row: data.csv" in printed


def test_a_second_run_takes_the_durations_from_the_history_and_skips_the_survey(tmp_path):
    root = make_project(tmp_path / "proj", "import time\n\ndef test_a():\n    time.sleep(0.01)\n\n"
                                           "def test_b():\n    pass\n")
    first = api_flaky(root, runs=2, seed=2)
    assert [json.loads(u)["kind"] for u in _units(first)][:1] == ["survey"] and first.plan["pass_seconds"] > 0
    second = api_flaky(root, runs=2, seed=2)
    assert "survey" not in [json.loads(u)["kind"] for u in _units(second)]
    assert second.plan["fast"]["tests"] == 2


def _units(result) -> list[str]:
    return (Path(result.state_dir) / "units.jsonl").read_text().splitlines()
