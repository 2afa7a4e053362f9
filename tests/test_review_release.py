"""Real audits of sample_project over three weeks of commits, then the report and the review on them.

A private git copy of sample_project goes through four commits, each audited for real with the
``audit`` CLI (30 s flaky budgets, a few operators; the default budget when making the sample) and recorded into its history store dated back
into the past, as a CI cron would have:

  A  21 days ago  the project as shipped                      audit flaky + audit mutate
  B  13 days ago  a test weakened (a gradient assert deleted) audit mutate
  C   5 days ago  a flaky test added (a golden recorded at 1 torch thread)   audit flaky
  D   1 day ago   a clean refactor of predict()               audit mutate

The review must block B (weakened test) and C (new flaky test) and clear D; the weekly report
of the last 7 days must show C's new flaky test, the mutation score drop B caused, and the
surviving mutant B left behind. With ``ML_AUDIT_SAMPLE_REPORT=DIR`` set, the report is also
written to DIR (that is how ``reports/sample/`` was made).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from audit.cli import main
from audit.store import Store

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parent.parent / "sample_project"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
OPERATORS = "drop_detach,drop_eval"
# A subset of the suite keeps the real audits short; it holds the tests that kill this
# operator set's mutants, planted flaky tests, and test_stats.py where C adds its test.
TEST_PATHS = ["tests/test_functional.py", "tests/test_model.py", "tests/test_augment.py", "tests/test_stats.py"]
NEW_FLAKY = "tests/test_stats.py::test_signal_energy_matches_golden"
WEAKENED = "tests/test_functional.py::test_consistency_loss_blocks_gradient_to_target"


def _git(root, *args):
    return subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True).stdout.strip()


def _audit(*args, expect=(0, 1)):
    proc = subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode in expect, f"audit {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _energy_golden() -> tuple[str, str]:
    """The float32 sum C's new test compares against, at 1 torch thread (hex), and at 2 threads."""
    code = ("import torch, sys; torch.set_num_threads(int(sys.argv[1])); "
            "x = torch.randn(400_000, generator=torch.Generator().manual_seed(0)); print(x.sum().item().hex())")
    return tuple(subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True,
                                check=True).stdout.strip() for n in (1, 2))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


class Release:
    """The audited copy: its root, store, and the commit and run ids of each step."""

    def __init__(self, root: Path):
        self.root, self.commits, self.runs = root, {}, {}
        # Outside the project: the dated history is ours, whatever the CLI records on its own.
        self.db = root.parent / "history.sqlite"

    def commit(self, step: str, message: str) -> None:
        _git(self.root, "add", "-A")
        _git(self.root, "commit", "-q", "-m", message)
        self.commits[step] = _git(self.root, "rev-parse", "HEAD")

    def flaky(self, step: str, when: datetime) -> None:
        out = self.root.parent / f"flaky-{step}.json"
        # CI gives each flaky audit 30 s of detection (the review needs no causes); the published
        # sample (ML_AUDIT_SAMPLE_REPORT) the default budget, attribution included
        budget = [] if os.environ.get("ML_AUDIT_SAMPLE_REPORT") else ["--budget", "30", "--no-attribute"]
        _audit("flaky", str(self.root), *budget, "--seed", "7", "--json", str(out), "--no-record")
        self._record(step, "flaky", json.loads(out.read_text()), when)

    def mutate(self, step: str, when: datetime) -> None:
        out = self.root.parent / f"mutate-{step}.json"
        _audit("mutate", str(self.root), "--operators", OPERATORS, "--json", str(out), "--no-record")
        self._record(step, "mutate", json.loads(out.read_text()), when)

    def _record(self, step, kind, result, when):
        with Store(self.db) as store:
            self.runs[(step, kind)] = store.record(result, project="tinyclf", commit=self.commits[step],
                                                   branch="main", started_at=when,
                                                   duration=result.get("seconds") or result.get("elapsed"))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    golden1, golden2 = _energy_golden()
    if golden1 == golden2:
        pytest.skip("this machine's float32 sum does not depend on the thread count; C's flaky test would not be flaky")
    root = tmp_path_factory.mktemp("release") / "tinyclf"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "mutants", "reports"))
    pyproject = (root / "pyproject.toml").read_text()
    pyproject = pyproject.replace('test_paths = ["tests"]', f"test_paths = {json.dumps(TEST_PATHS)}")
    assert json.dumps(TEST_PATHS) in pyproject
    # Mutation runs leave out the planted flaky tests and the broken one, as a project would.
    expected = tomllib.loads((root / "expected.toml").read_text())
    leave_out = [f["nodeid"] for f in expected["flaky"]] + [c["nodeid"] for c in expected["control"]
                                                            if c["verdict"] == "fail"]
    start = pyproject.index("deselect = [")
    pyproject = pyproject[:start] + f"deselect = {json.dumps(leave_out)}" + pyproject[pyproject.index("]", start) + 1:]
    (root / "pyproject.toml").write_text(pyproject)
    (root / ".gitignore").write_text("reports/\n__pycache__/\n")
    _git(root, "init", "-q", "-b", "main")
    rel = Release(root)

    rel.commit("A", "tinyclf 0.3.1")
    rel.flaky("A", NOW - timedelta(days=21))
    rel.mutate("A", NOW - timedelta(days=21, hours=-1))

    _edit(root / "tests" / "test_functional.py", "    assert target.grad is None\n", "")
    rel.commit("B", "simplify the consistency loss test")
    rel.mutate("B", NOW - timedelta(days=13))
    rel.review_b = _review(root, "--baseline", rel.commits["A"], "--out", str(root.parent / "review-B"))

    with (root / "tests" / "test_stats.py").open("a") as f:
        f.write(f"\n\ndef test_signal_energy_matches_golden():\n"
                f"    x = torch.randn(400_000, generator=torch.Generator().manual_seed(0))\n"
                f"    assert x.sum().item() == float.fromhex({golden1!r})  # recorded on a 1-core CI runner\n")
    rel.commit("C", "test the signal energy against a golden value")
    rel.flaky("C", NOW - timedelta(days=5))
    rel.review_c = _review(root, "--baseline", rel.commits["B"], "--out", str(root.parent / "review-C"))

    _edit(root / "tinyclf" / "evaluate.py", "    model.eval()\n    with torch.no_grad():\n        return model(x, mask)\n",
          "    model.eval()  # dropout off: repeated calls give the same logits\n    with torch.no_grad():\n"
          "        logits = model(x, mask)\n    return logits\n")
    rel.commit("D", "predict: name the logits")
    rel.mutate("D", NOW - timedelta(days=1))
    rel.review_d = _review(root, "--baseline", rel.commits["C"], "--out", str(root.parent / "review-D"))
    return rel


def _review(root: Path, *args) -> tuple[int, dict, str]:
    proc = _audit("review", str(root), "--db", str(root.parent / "history.sqlite"), *args, expect=(0, 1))
    out = Path(args[args.index("--out") + 1])
    return proc.returncode, json.loads((out / "review.json").read_text()), (out / "review.md").read_text()


def test_review_blocks_a_weakened_test(release):
    code, data, md = release.review_b
    assert code == 1, data
    checks = {r["check"]: r for r in data["reasons"]}
    assert "new_survivors" in checks, data
    evidence = "\n".join(checks["new_survivors"]["evidence"])
    assert "drop_detach at tinyclf/functional.py" in evidence and "consistency_loss" in evidence
    assert WEAKENED in evidence  # the test that used to kill it
    assert "score_drop" in checks  # 4 mutants: one more survivor is a 25-point fall
    assert "new_flaky" not in checks  # no flaky audit since A: the same run on both sides
    assert "drop\\_detach" in md or "drop_detach" in md


def test_review_blocks_a_new_flaky_test(release):
    code, data, md = release.review_c
    assert code == 1, data
    checks = {r["check"]: r for r in data["reasons"]}
    assert "new_flaky" in checks, data
    assert any(e.startswith(NEW_FLAKY + ": flaky now") for e in checks["new_flaky"]["evidence"])
    assert "repro:" in "\n".join(checks["new_flaky"]["evidence"])
    assert "new_survivors" not in checks and "score_drop" not in checks  # B's mutate run on both sides


def test_review_clears_a_clean_change(release):
    code, data, md = release.review_d
    assert code == 0, data
    assert data["decision"] == "pass" and "clear to release" in md
    passed = "\n".join(data["passed"])
    assert "changed_survivors: no undetected ML mutant" in passed
    assert "line(s) changed since" in passed and "on the 0 line(s)" not in passed


def test_the_users_project_is_untouched_apart_from_its_store(release):
    status = _git(release.root, "status", "--porcelain", "--ignored").splitlines()
    assert set(status) <= {"!! reports/"}, status  # only the store, where the CLI records runs itself
    reports = release.root / "reports"
    assert not reports.exists() or {p.name.split("-")[0] for p in reports.iterdir()} <= {"audit.sqlite"}


def test_weekly_report_of_the_real_history(release, tmp_path):
    out = Path(os.environ.get("ML_AUDIT_SAMPLE_REPORT") or tmp_path / "report")
    assert main(["report", str(release.root), "--db", str(release.db), "--since", "7d", "--until", NOW.isoformat(),
                 "--out", str(out)]) == 0
    data = json.loads((out / "weekly.json").read_text())
    with Store(release.db, create=False) as store:
        flaky_c = store.run(release.runs[("C", "flaky")])
        flaky_now = {t["nodeid"] for t in store.tests(flaky_c.id) if t["verdict"] == "flaky"}
        flaky_a = {t["nodeid"] for t in store.tests(release.runs[("A", "flaky")]) if t["verdict"] == "flaky"}
        scores = {step: store.run(release.runs[(step, "mutate")]).score for step in "ABD"}
    f, m = data["flaky"], data["mutation"]
    assert f["current_run"] == flaky_c.id and f["reference_run"] == release.runs[("A", "flaky")]
    assert {t["nodeid"] for t in f["new"]} == flaky_now - flaky_a and NEW_FLAKY in flaky_now - flaky_a
    assert {t["nodeid"] for t in f["still"]} == flaky_now & flaky_a
    assert [p["score"] for p in m["trend"]] == pytest.approx([scores["A"], scores["B"], scores["D"]])
    assert scores["B"] < scores["A"] and m["score"] == pytest.approx(scores["D"], abs=0.01)
    assert m["previous_score"] == pytest.approx(scores["B"], abs=0.01)
    worth = {(w["operator"], w["function"]) for w in m["worth_a_test"]}
    assert ("drop_detach", "consistency_loss") in worth
    md = (out / "weekly.md").read_text()
    assert f"`{NEW_FLAKY}`" in md and "consistency_loss" in md
    html = (out / "weekly.html").read_text()
    assert NEW_FLAKY in html and html.count("<svg") >= 4
