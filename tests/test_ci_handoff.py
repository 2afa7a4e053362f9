"""Hand-off to CI: the JUnit XML validates against Jenkins' junit-10.xsd and carries each test's
verdict, rate and cause; the quarantine file makes plain pytest mark the listed tests xfail."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

from audit.flaky.hints import make_cause
from audit.flaky.verdict import summarise
from audit.model.flaky import Counts, FlakyResult
from audit.report import junit, quarantine

XSD = Path(__file__).parent / "data" / "junit-10.xsd"
HOSTILE = 'tests/test_a.py::test_param[<x>&"y"|`z`]'


def _row(klass, digest="call: assert 0.41 < 0.37 (test_a.py:9)"):
    return {"nodeid": "x", "klass": klass, "unit": 1, "round": 0, "attempt": 0, "duration": 0.25,
            "outcome": {"pass": "passed", "fail": "failed", "skip": "skipped"}[klass], "threads": 1,
            "deterministic": "off", "hashseed": "5", "order": "file", "seeds": {"torch": 3},
            "digest": digest if klass == "fail" else "", "draws": {"torch": True}, "fixture_draws": []}


def _verdict(nodeid, rows):
    v = summarise(nodeid, rows)
    v.nodeid = nodeid
    return v


def _result():
    flaky = _verdict("tests/test_a.py::test_noise", [_row("pass")] * 3 + [_row("fail")])
    flaky.causes = [make_cause("torch", 2e-5, "pinned 0/60 failed, torch RNG released 9/60 executions failed",
                               status="confirmed", nodeid=flaky.nodeid,
                               counts=Counts((0, 60), (9, 60), confirmation=(0, 30)),
                               sites=[{"path": "pkg/aug.py", "line": 7, "function": "noise"}], call_path=[])]
    flaky.repro = "python -m pytest tests/test_a.py::test_noise --audit-enable --audit-seed-torch=fresh"
    broken = _verdict("tests/test_a.py::Cls::test_broken", [_row("fail")] * 2)
    fine = _verdict(HOSTILE, [_row("pass")] * 4)
    skipped = _verdict("tests/test_b.py::test_skipped", [_row("skip")])
    return FlakyResult(project="/p", tests=[fine, broken, flaky, skipped], settings={}, seconds=3.5,
                       executions=10, interpreters=2, stopped="budget spent")


def test_junit_validates_against_the_junit_10_xsd(tmp_path):
    out = junit.write(_result(), tmp_path / "flaky.xml")
    xmlschema.XMLSchema(str(XSD)).validate(str(out))   # raises on any violation


def test_the_xsd_check_can_fail(tmp_path):
    """The schema really constrains: properties on a testcase (pytest's xunit1 style) are rejected."""
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="t">'
                   '<properties><property name="a" value="b"/></properties></testcase></testsuite></testsuites>')
    assert not xmlschema.XMLSchema(str(XSD)).is_valid(str(bad))


def test_junit_has_one_testcase_per_test_with_verdict_rate_and_cause(tmp_path):
    root = ET.parse(junit.write(_result(), tmp_path / "flaky.xml")).getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {HOSTILE, "tests/test_a.py::Cls::test_broken", "tests/test_a.py::test_noise",
                           "tests/test_b.py::test_skipped"}
    assert len(root.findall("testsuite/testcase")) == 4
    noise = suites["tests/test_a.py::test_noise"]
    props = {p.get("name"): p.get("value") for p in noise.findall("properties/property")}
    assert props["verdict"] == "flaky" and props["rate"] == "0.25" and props["executions"] == "4"
    assert props["cause"] == "torch" and props["cause.status"] == "confirmed" and props["cause.p_value"] == "2e-05"
    assert props["cause.site"] == "pkg/aug.py:7 (noise)" and props["repro"].startswith("python -m pytest")
    case = noise.find("testcase")
    assert case.get("classname") == "tests.test_a" and case.get("name") == "test_noise"
    assert case.find("flakyFailure").get("message").startswith("flaky: failed 1 of 4")
    broken = suites["tests/test_a.py::Cls::test_broken"].find("testcase")
    assert broken.get("classname") == "tests.test_a.Cls" and broken.find("failure") is not None
    assert suites["tests/test_b.py::test_skipped"].find("testcase/skipped") is not None
    assert list(suites[HOSTILE].find("testcase")) == []       # a pass has no outcome element
    assert root.get("tests") == "4" and root.get("failures") == "2"


def test_quarantine_file_lists_the_flaky_tests_with_why(tmp_path):
    data = json.loads(quarantine.write(_result(), tmp_path / "q.json").read_text())
    assert data["schema"] == "ml-audit.quarantine/1"
    assert data["tests"] == [{"nodeid": "tests/test_a.py::test_noise",
                              "reason": "flaky: failed 1/4 under audit flaky, cause torch (confirmed)"}]


def _pytest(project, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-rxX",
                           *args], cwd=project, capture_output=True, text=True, timeout=120)


def test_plain_pytest_marks_quarantined_tests_xfail(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "test_q.py").write_text("def test_flake():\n    assert False\n\n"
                                       "def test_recovered():\n    pass\n\n"
                                       "def test_other():\n    assert False\n")
    qfile = tmp_path / "q.json"
    qfile.write_text(json.dumps({"schema": "ml-audit.quarantine/1", "tests": [
        {"nodeid": "test_q.py::test_flake", "reason": "flaky: failed 3/40, cause torch (confirmed)"},
        {"nodeid": "test_q.py::test_recovered", "reason": "flaky: failed 1/40"}]}))
    plain = _pytest(project)
    assert plain.returncode == 1 and "2 failed, 1 passed" in plain.stdout
    run = _pytest(project, f"--audit-quarantine={qfile}")
    assert run.returncode == 1, run.stdout            # the unlisted failure still fails
    assert "1 failed, 1 xfailed, 1 xpassed" in run.stdout, run.stdout
    assert "XFAIL test_q.py::test_flake - flaky: failed 3/40, cause torch (confirmed)" in run.stdout
    assert "ml-audit: 2 quarantined tests marked xfail(strict=False)" in run.stdout


def test_a_broken_quarantine_file_is_a_usage_error(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "test_q.py").write_text("def test_x():\n    pass\n")
    bad = tmp_path / "q.json"
    bad.write_text('{"tests": []}')
    run = _pytest(project, f"--audit-quarantine={bad}")
    assert run.returncode == 4 and "not an ml-audit quarantine file" in run.stderr


def test_cli_takes_junit_quarantine_and_no_attribute():
    from audit.cli import build_parser

    args = build_parser().parse_args(["flaky", ".", "--junit", "f.xml", "--quarantine", "q.json", "--no-attribute"])
    assert args.junit == "f.xml" and args.quarantine == "q.json" and args.attribute is False
