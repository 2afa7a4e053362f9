"""sample_project runs with plain pytest, and its ground truth is complete and consistent."""

import subprocess
import sys
import xml.etree.ElementTree as ET

from conftest import SAMPLE

SOURCES = {"torch", "numpy", "random", "hashseed", "threads", "determinism", "order"}


def _collected(cwd):
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [ln for ln in proc.stdout.splitlines() if "::" in ln]


def test_ground_truth_lists_every_test_exactly_once(expected):
    listed = [f["nodeid"] for f in expected["flaky"]] + [c["nodeid"] for c in expected["control"]]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(_collected(SAMPLE))
    assert 25 <= len(listed) <= 50


def test_every_flakiness_source_is_planted(expected):
    sources = {f["source"] for f in expected["flaky"]}
    assert sources == SOURCES
    for f in expected["flaky"]:
        assert 0 < f["approx_rate"] <= 1, f["nodeid"]
        if f["source"] == "order":
            assert f["polluter"] in _collected(SAMPLE)
        path, _, func = f["site"].partition("::")
        assert (SAMPLE / path).is_file() and func, f["site"]
    verdicts = [c["verdict"] for c in expected["control"]]
    assert verdicts.count("fail") == 1 and set(verdicts) == {"pass", "fail"}


def test_weaknesses_point_at_real_tests_and_functions(expected):
    ids = set(_collected(SAMPLE))
    for w in expected["weakness"]:
        assert w["weak_test"] in ids and w["expect"] == "survived"
        path, _, func = w["target"].partition("::")
        assert f"def {func.split('.')[-1]}(" in (SAMPLE / path).read_text()
    for s in expected["strong"]:
        assert s["test"] in ids and s["expect"] in ("killed", "seed_dependent")   # a kill, seed-dependent or not
        path, _, func = s["target"].partition("::")
        assert f"def {func.split('.')[-1]}(" in (SAMPLE / path).read_text()


def test_plain_pytest_run_gives_every_control_its_verdict(expected, sample_copy, tmp_path):
    report = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         f"--junitxml={report}"],
        cwd=sample_copy, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    outcome = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        path = case.get("classname").replace(".", "/") + ".py"
        failed = case.find("failure") is not None or case.find("error") is not None
        outcome[f"{path}::{case.get('name')}"] = "fail" if failed else "pass"
    for control in expected["control"]:
        assert outcome[control["nodeid"]] == control["verdict"], control["nodeid"]
