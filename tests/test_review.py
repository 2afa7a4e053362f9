"""``audit review``: the pre-release gate on recorded runs, result files and git refs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta

import pytest

from audit.cli import main
from audit.explain import cause_text
from audit.model.flaky import FlakyResult
from audit.model.mutate import MutateResult
from audit.store import Store
from test_store_history import (HOSTILE, NOW, RESULTS, WEAKENED, build_history, flaky_ids, load, run_of,
                                survivors)

# mutate-A -> mutate-B loses about one point: the projects here allow half a point.
CONFIG = "[tool.audit.review]\nmax_score_drop = 0.5\n"


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(CONFIG)
    return root


@pytest.fixture
def history(project):
    store = build_history(project / "reports" / "audit.sqlite")
    yield store
    store.close()


def _review(project, *args):
    code = main(["review", str(project), *args])
    data = json.loads((project / "reports" / "review.json").read_text()) if code in (0, 1) else None
    return code, data


def _weakened_survivor(mutants) -> bool:
    return any(m.function == "consistency_loss" and m.operator == "drop_detach" and m.status == "survived"
               for m in mutants)


def test_a_regressed_week_is_blocked_with_evidence(project, history, capsys):
    baseline = run_of(history, "flaky-A")      # with mutate-A, recorded at the same commit
    current = [f"run:{run_of(history, 'flaky-C').id}", f"run:{run_of(history, 'mutate-B').id}"]
    code, data = _review(project, "--baseline", str(baseline.id), *sum((["--current", c] for c in current), []))
    assert code == 1 and data["decision"] == "fail"
    assert data["baseline"]["mutate"] == run_of(history, "mutate-A").label
    reasons = {r["check"]: r for r in data["reasons"]}
    assert set(reasons) == {"new_flaky", "score_drop", "new_survivors"}
    flagged = "\n".join(reasons["new_flaky"]["evidence"])
    assert HOSTILE in flagged and len(reasons["new_flaky"]["evidence"]) == len(flaky_ids("flaky-C") - flaky_ids("flaky-A"))
    for still in flaky_ids("flaky-C") & flaky_ids("flaky-A"):
        assert still not in flagged  # flaky in the baseline too: not new
    assert "repro:" in flagged and "95% interval" in flagged
    hostile = next(t for t in FlakyResult.from_json(load("flaky-C")).tests if t.nodeid == HOSTILE)
    assert all(cause_text(c) in flagged for c in hostile.causes)  # causes in words, from the model
    survivors_text = "\n".join(reasons["new_survivors"]["evidence"])
    assert "drop_detach at tinyclf/functional.py" in survivors_text and "consistency_loss" in survivors_text
    assert f"killed in the baseline by {WEAKENED}" in survivors_text
    a, b = load("mutate-A")["score"], load("mutate-B")["score"]
    assert reasons["score_drop"]["evidence"][0].startswith(f"score {a:.1f} → {b:.1f}")
    out = capsys.readouterr().out
    assert "FAIL new_flaky" in out and "release blocked" in out
    md = (project / "reports" / "review.md").read_text()
    assert "release blocked" in md and "```diff" in md and "new\\_flaky" in md


def test_the_same_state_is_clear(project, history, capsys):
    runs = [f"run:{run_of(history, 'flaky-C').id}", f"run:{run_of(history, 'mutate-B').id}"]
    code, data = _review(project, *sum((["--baseline", r, "--current", r] for r in runs), []))
    assert code == 0 and data["decision"] == "pass" and data["reasons"] == []
    assert len(data["passed"]) == 3
    assert any("not in a git work tree" in s for s in data["skipped"])
    assert "clear to release" in capsys.readouterr().out


def test_the_latest_runs_are_the_current_state_and_a_since_run_is_not_scored(project, history):
    code, data = _review(project, "--baseline", str(run_of(history, "mutate-B").id))
    assert data["current"]["mutate"] == run_of(history, "mutate-D-since").label and data["current"]["partial"]
    assert any(s.startswith("score_drop: a partial mutate run") for s in data["skipped"])


def test_thresholds_come_from_the_config_and_the_command_line(project, history):
    current = ["--current", f"run:{run_of(history, 'flaky-C').id}", "--current", f"run:{run_of(history, 'mutate-B').id}"]
    base = str(run_of(history, "mutate-A").id)
    code, data = _review(project, "--baseline", base, *current, "--max-score-drop", "20")
    assert "score_drop" not in {r["check"] for r in data["reasons"]}
    assert any(p.startswith("score_drop:") for p in data["passed"])
    (project / "pyproject.toml").write_text("[tool.audit.review]\nfail_on_new_flaky = false\n"
                                            "fail_on_new_survivors = false\nmax_score_drop = 50.0\n")
    code, data = _review(project, "--baseline", base, *current)
    assert code == 0, data


def test_result_files_on_both_sides_need_no_store(project):
    code, data = _review(project, "--baseline", str(RESULTS / "flaky-A.json"), "--current", str(RESULTS / "flaky-C.json"))
    assert code == 1 and [r["check"] for r in data["reasons"]] == ["new_flaky"]
    assert any(s.startswith("score_drop: no mutate results") for s in data["skipped"])
    assert not (project / "reports" / "audit.sqlite").exists()


def test_the_api_writes_the_review_as_the_command_does(project, tmp_path):
    from audit import api

    review = api.review(project, baseline=[str(RESULTS / "flaky-A.json")], current=[str(RESULTS / "flaky-C.json")],
                        out=tmp_path / "out")
    assert [p.name for p in review.written] == ["review.md", "review.json"]
    assert json.loads((tmp_path / "out" / "review.json").read_text()) == json.loads(json.dumps(review.as_dict()))
    assert review.exit_code == 1 and not (project / "reports").exists()


def test_scores_of_different_operator_sets_are_not_compared(project):
    assert MutateResult.from_json(load("mutate-D-few")).score > load("mutate-A")["score"] + 10
    code, data = _review(project, "--baseline", str(RESULTS / "mutate-D-few.json"),
                         "--current", str(RESULTS / "mutate-A.json"))
    assert any("different operators" in s for s in data["skipped"])
    assert "score_drop" not in {r["check"] for r in data["reasons"]}


def test_a_since_run_is_checked_for_survivors_but_its_score_is_not_compared(tmp_path, project):
    """mutate-D-since mutated the changed lines of predict_proba only: its score (0 of 1) is
    not a fall from mutate-A's, and its one survivor is checked against the baseline."""
    code, data = _review(project, "--baseline", str(RESULTS / "mutate-A.json"),
                         "--current", str(RESULTS / "mutate-D-since.json"))
    assert data["current"]["partial"] and data["current"]["score"] == 0.0
    assert any(s.startswith("score_drop: a partial mutate run") for s in data["skipped"])
    assert "score_drop" not in {r["check"] for r in data["reasons"]}
    assert any(p.startswith("new_survivors:") for p in data["passed"])  # it survived in A too


def test_a_partial_file_is_partial(tmp_path, project):
    interrupted = MutateResult.from_json(load("mutate-B"))
    interrupted.interrupted = True
    (tmp_path / "cut.json").write_text(json.dumps(interrupted.to_json()))
    code, data = _review(project, "--baseline", str(RESULTS / "mutate-A.json"), "--current", str(tmp_path / "cut.json"))
    assert data["current"]["partial"] and "score_drop" not in {r["check"] for r in data["reasons"]}
    assert [r["check"] for r in data["reasons"]] == ["new_survivors"]


def test_reading_the_history_loads_neither_mutmut_nor_libcst():
    code = ("import sys, audit.review, audit.report.weekly, audit.report.write, audit.store; "
            "loaded = sorted(m for m in ('mutmut', 'libcst') if m in sys.modules); "
            "assert not loaded, loaded")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("baseline, message", [
    ("999", "unknown baseline '999'"),
    ("no-such-ref", "unknown baseline 'no-such-ref'"),
])
def test_unknown_baselines_exit_2(project, history, capsys, baseline, message):
    assert main(["review", str(project), "--baseline", baseline]) == 2
    assert message in capsys.readouterr().err
    assert not (project / "reports" / "review.json").exists()


def test_an_empty_or_missing_store_exits_2(project, capsys):
    assert main(["review", str(project), "--baseline", "1"]) == 2
    assert "no history store" in capsys.readouterr().err
    assert not (project / "reports").exists()
    Store(project / "reports" / "audit.sqlite").close()
    assert main(["review", str(project), "--baseline", "1"]) == 2
    assert "is empty" in capsys.readouterr().err


def test_a_missing_baseline_option_is_a_usage_error(project):
    with pytest.raises(SystemExit) as info:
        main(["review", str(project)])
    assert info.value.code == 2


# -- with git: a baseline ref and the lines changed since it ------------------------------------

def _git(root, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True).stdout.strip()


SAMPLE = RESULTS.parent.parent.parent / "sample_project"


@pytest.fixture
def repo(project):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    shutil.copytree(SAMPLE / "tinyclf", project / "tinyclf", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".gitignore").write_text("reports/\n")
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "baseline")
    return project


def _record(store, commit, names, when):
    for i, name in enumerate(names):
        store.record(load(name), commit=commit, started_at=when + timedelta(minutes=5 * i))


def _edit_line(root, path, number, text):
    lines = (root / path).read_text().splitlines(keepends=True)
    lines[number - 1] = text + "\n"
    (root / path).write_text("".join(lines))


def test_a_git_ref_baseline_and_survivors_on_changed_lines(repo, capsys):
    (repo / "pyproject.toml").write_text("[tool.audit.review]\nfail_on_new_flaky = false\n"
                                         "fail_on_new_survivors = false\nmax_score_drop = 50.0\n")
    _git(repo, "commit", "-q", "-am", "review only the changed lines")
    (survivor,) = [m for m in survivors("mutate-B") if m.function == "consistency_loss" and m.operator == "drop_detach"]
    base = _git(repo, "rev-parse", "HEAD")
    with Store(repo / "reports" / "audit.sqlite") as store:
        _record(store, base, ["flaky-A", "mutate-A"], NOW - timedelta(days=3))
        line = (repo / survivor.path).read_text().splitlines()[survivor.line - 1]
        _edit_line(repo, survivor.path, survivor.line, line + "  # changed")
        _git(repo, "commit", "-q", "-am", "change the line the weakened test no longer guards")
        _record(store, _git(repo, "rev-parse", "HEAD"), ["flaky-C", "mutate-B"], NOW)
    code, data = _review(repo, "--baseline", "main~1")
    assert code == 1
    (reason,) = data["reasons"]
    assert reason["check"] == "changed_survivors"
    on_line = [m for m in survivors("mutate-B") if m.path == survivor.path and m.line == survivor.line and m.ml]
    assert len(reason["evidence"]) == len(on_line)
    assert all(f"{survivor.path}:{survivor.line}" in e for e in reason["evidence"])
    assert data["baseline"]["commit"] == base
    # The same survivors with an unchanged line pass.
    _edit_line(repo, survivor.path, survivor.line, line)
    _edit_line(repo, "tinyclf/__init__.py", 1, "# tinyclf")
    _git(repo, "commit", "-q", "-am", "change the package docstring instead")
    code, data = _review(repo, "--baseline", base[:10], "--changed-since", base)
    assert code == 0, data
    assert any("no undetected ML mutant on the 1 line(s) changed" in p for p in data["passed"])


def test_a_ref_takes_each_kind_of_run_from_its_nearest_audited_ancestor(repo):
    first = _git(repo, "rev-parse", "HEAD")
    with Store(repo / "reports" / "audit.sqlite") as store:
        _record(store, first, ["flaky-A", "mutate-A"], NOW - timedelta(days=3))
        _edit_line(repo, "tinyclf/__init__.py", 1, "# tinyclf")
        _git(repo, "commit", "-q", "-am", "second")
        second = _git(repo, "rev-parse", "HEAD")
        # Only mutation was audited on the second commit, and it weakened the suite.
        _record(store, second, ["mutate-B"], NOW - timedelta(days=2))
        _record(store, "f" * 40, ["flaky-C"], NOW)  # current: a new flaky test
    code, data = _review(repo, "--baseline", "HEAD")
    assert data["baseline"]["flaky"].endswith(f"{first[:8]})") and data["baseline"]["mutate"].endswith(f"{second[:8]})")
    assert [r["check"] for r in data["reasons"]] == ["new_flaky"]
    code, data = _review(repo, "--baseline", "HEAD~1")
    assert {r["check"] for r in data["reasons"]} == {"new_flaky", "new_survivors", "score_drop"}


def test_a_ref_with_no_recorded_run_exits_2(repo, capsys):
    with Store(repo / "reports" / "audit.sqlite") as store:
        _record(store, "0" * 40, ["flaky-A", "mutate-A"], NOW)
    assert main(["review", str(repo), "--baseline", "HEAD"]) == 2
    assert "no audit run is recorded at HEAD" in capsys.readouterr().err
