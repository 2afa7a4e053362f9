"""``audit review``: the pre-release gate on recorded runs, result files and git refs."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta

import pytest

from audit.cli import main
from audit.store import Store
from test_store_history import (HOSTILE, NOISE, NOW, ORDER, THREADS, WEEKS_FLAKY, build_history, flaky_result,
                                mutate_result)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.audit.review]\nmax_score_drop = 2.0\n")
    return root


@pytest.fixture
def history(project):
    store = build_history(project / "reports" / "audit.sqlite")
    yield store
    store.close()


def _review(project, *args, capsys=None):
    code = main(["review", str(project), *args])
    data = json.loads((project / "reports" / "review.json").read_text()) if code in (0, 1) else None
    return code, data


def test_a_regressed_week_is_blocked_with_evidence(project, history, capsys):
    reference = history.latest("flaky", before=history.latest("flaky").started_at)
    code, data = _review(project, "--baseline", str(reference.id))
    assert code == 1 and data["decision"] == "fail"
    reasons = {r["check"]: r for r in data["reasons"]}
    assert set(reasons) == {"new_flaky", "score_drop", "new_survivors"}
    flagged = "\n".join(reasons["new_flaky"]["evidence"])
    for nodeid in (THREADS, ORDER, HOSTILE):
        assert nodeid in flagged
    assert NOISE not in flagged  # flaky in the baseline too: not new
    assert "repro:" in flagged and "95% interval" in flagged
    survivors = "\n".join(reasons["new_survivors"]["evidence"])
    for op in ("drop_eval", "change_dim", "swap_reduction"):
        assert op in survivors
    assert "killed in the baseline by" in survivors and "+    pass" in survivors
    assert reasons["score_drop"]["evidence"][0].startswith("score 81.0 → 71.4")
    out = capsys.readouterr().out
    assert "FAIL new_flaky" in out and "release blocked" in out
    md = (project / "reports" / "review.md").read_text()
    assert "release blocked" in md and "```diff" in md and "new\\_flaky" in md


def test_the_same_state_is_clear(project, history, capsys):
    code, data = _review(project, "--baseline", f"run:{history.latest('flaky').id}")
    assert code == 0 and data["decision"] == "pass" and data["reasons"] == []
    assert len(data["passed"]) == 3
    assert any("not in a git work tree" in s for s in data["skipped"])
    assert "clear to release" in capsys.readouterr().out


def test_thresholds_come_from_the_config_and_the_command_line(project, history):
    reference = history.latest("mutate", before=history.latest("mutate").started_at)
    code, data = _review(project, "--baseline", str(reference.id), "--max-score-drop", "20")
    assert "score_drop" not in {r["check"] for r in data["reasons"]}
    (project / "pyproject.toml").write_text("[tool.audit.review]\nfail_on_new_flaky = false\n"
                                            "fail_on_new_survivors = false\nmax_score_drop = 50.0\n")
    code, data = _review(project, "--baseline", str(reference.id))
    assert code == 0, data


def test_result_files_on_both_sides_need_no_store(tmp_path, project):
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps(flaky_result(WEEKS_FLAKY[2])))
    after.write_text(json.dumps(flaky_result(WEEKS_FLAKY[3])))
    code, data = _review(project, "--baseline", str(before), "--current", str(after))
    assert code == 1 and [r["check"] for r in data["reasons"]] == ["new_flaky"]
    assert any(s.startswith("score_drop: no mutate results") for s in data["skipped"])
    assert not (project / "reports" / "audit.sqlite").exists()


def test_scores_of_different_operator_sets_are_not_compared(tmp_path, project):
    base, cur = mutate_result(set()), mutate_result({"drop_eval"})
    base["operators"], cur["operators"] = ["drop_eval", "mutmut_number"], ["drop_eval"]
    (tmp_path / "b.json").write_text(json.dumps(base))
    (tmp_path / "c.json").write_text(json.dumps(cur))
    code, data = _review(project, "--baseline", str(tmp_path / "b.json"), "--current", str(tmp_path / "c.json"))
    assert any("different operators" in s for s in data["skipped"])
    assert [r["check"] for r in data["reasons"]] == ["new_survivors"]  # drop_eval was killed before


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


MODEL = "".join(f"line {i}\n" for i in range(1, 41))


@pytest.fixture
def repo(project):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (project / "tinyclf").mkdir()
    (project / "tinyclf" / "model.py").write_text(MODEL)
    (project / ".gitignore").write_text("reports/\n")
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "baseline")
    return project


def _record(store, commit, surviving, when):
    store.record_flaky(flaky_result(WEEKS_FLAKY[2]), commit=commit, started_at=when)
    store.record_mutate(mutate_result(surviving), commit=commit, started_at=when + timedelta(minutes=5))


def test_a_git_ref_baseline_and_survivors_on_changed_lines(repo, capsys):
    base = _git(repo, "rev-parse", "HEAD")
    with Store(repo / "reports" / "audit.sqlite") as store:
        _record(store, base, {"drop_detach"}, NOW - timedelta(days=3))
        # line 14 of model.py is where drop_detach's mutant lives (see test_store_history.DIFFS)
        (repo / "tinyclf" / "model.py").write_text(MODEL.replace("line 14\n", "line 14 changed\n"))
        _git(repo, "commit", "-q", "-am", "change line 14")
        _record(store, _git(repo, "rev-parse", "HEAD"), {"drop_detach"}, NOW)
    code, data = _review(repo, "--baseline", "main~1")
    assert code == 1
    (reason,) = data["reasons"]
    assert reason["check"] == "changed_survivors" and "tinyclf/model.py:14" in reason["evidence"][0]
    assert data["baseline"]["commit"] == base
    # The same survivor on an unchanged line passes.
    (repo / "tinyclf" / "model.py").write_text(MODEL.replace("line 20\n", "line 20 changed\n"))
    _git(repo, "commit", "-q", "-am", "change line 20 instead")
    code, data = _review(repo, "--baseline", base[:10], "--changed-since", base)
    assert code == 0, data
    assert any("no surviving ML mutant on the 1 line(s) changed" in p for p in data["passed"])


def test_a_ref_takes_each_kind_of_run_from_its_nearest_audited_ancestor(repo):
    first = _git(repo, "rev-parse", "HEAD")
    with Store(repo / "reports" / "audit.sqlite") as store:
        _record(store, first, set(), NOW - timedelta(days=3))
        (repo / "tinyclf" / "model.py").write_text(MODEL.replace("line 20\n", "line 20 changed\n"))
        _git(repo, "commit", "-q", "-am", "second")
        second = _git(repo, "rev-parse", "HEAD")
        # Only mutation was audited on the second commit, and it weakened the suite.
        store.record_mutate(mutate_result({"drop_zero_grad"}), commit=second, started_at=NOW - timedelta(days=2))
        store.record_flaky(flaky_result(WEEKS_FLAKY[3]), commit="f" * 40, started_at=NOW)  # current: new flaky tests
    code, data = _review(repo, "--baseline", "HEAD")
    assert data["baseline"]["flaky"].endswith(f"{first[:8]})") and data["baseline"]["mutate"].endswith(f"{second[:8]})")
    assert [r["check"] for r in data["reasons"]] == ["new_flaky"]
    code, data = _review(repo, "--baseline", "HEAD~1")
    assert {r["check"] for r in data["reasons"]} == {"new_flaky", "new_survivors", "score_drop"}


def test_a_ref_with_no_recorded_run_exits_2(repo, capsys):
    with Store(repo / "reports" / "audit.sqlite") as store:
        _record(store, "0" * 40, set(), NOW)
    assert main(["review", str(repo), "--baseline", "HEAD"]) == 2
    assert "no audit run is recorded at HEAD" in capsys.readouterr().err


def test_a_since_run_is_checked_for_survivors_but_its_score_is_not_compared(tmp_path, project):
    base, cur = mutate_result(set()), mutate_result({"drop_eval", "change_dim"})
    cur["since"] = "v1.0"  # what `audit mutate --since v1.0` writes
    cur["mutants"] = [m for m in cur["mutants"] if m["operator"] in ("drop_eval", "change_dim")]
    (tmp_path / "b.json").write_text(json.dumps(base))
    (tmp_path / "c.json").write_text(json.dumps(cur))
    code, data = _review(project, "--baseline", str(tmp_path / "b.json"), "--current", str(tmp_path / "c.json"))
    assert code == 1 and data["current"]["partial"]
    assert any(s.startswith("score_drop: a mutate run covering only changed lines") for s in data["skipped"])
    (reason,) = data["reasons"]
    assert reason["check"] == "new_survivors" and len(reason["evidence"]) == 2
