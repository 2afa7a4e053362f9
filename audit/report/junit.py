"""``audit flaky --junit FILE``: the verdicts as JUnit XML for CI dashboards (Jenkins, GitLab, Trunk, Datadog).

It follows the Jenkins xUnit plugin's ``junit-10.xsd``, which allows ``<properties>`` on a
``<testsuite>`` only: so each test is a ``<testsuite>`` of its own holding its properties
(verdict, rate, interval, executions, cause, cause status, p-value, site, repro, the ``--fix``
patch and whether it was verified) and its one
``<testcase>``. A flaky test carries a ``<flakyFailure>`` (the surefire element for a test that
both passed and failed), a failing one a ``<failure>``, an erroring one an ``<error>``, a skipped
or unrun one ``<skipped>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from audit.atomic import write_text


def _classname(nodeid: str) -> tuple[str, str]:
    """pytest's convention: ``tests/test_a.py::Cls::test_x[1]`` -> (``tests.test_a.Cls``, ``test_x[1]``)."""
    parts = nodeid.split("::")
    module = parts[0][:-3] if parts[0].endswith(".py") else parts[0]
    return ".".join([module.replace("/", "."), *parts[1:-1]]), parts[-1]


def _properties(test) -> list[tuple[str, str]]:
    props = [("verdict", test.verdict), ("executions", str(test.executions)), ("failures", str(test.failures)),
             ("rate", f"{test.rate:.6g}"), ("interval", f"{test.interval[0]:.6g},{test.interval[1]:.6g}")]
    if test.causes:
        cause = test.causes[0]
        props += [("cause", cause.source), ("cause.status", cause.status)]
        if cause.p_value is not None:
            props.append(("cause.p_value", f"{cause.p_value:.3g}"))
        if cause.sites:
            props.append(("cause.site", f"{cause.sites[0]} ({cause.sites[0].function})"))
        if cause.polluter:
            props.append(("cause.polluter", cause.polluter))
        props.append(("cause.evidence", cause.evidence))
    if test.repro:
        props.append(("repro", test.repro))
    if test.fix is not None:
        props += [("fix", test.fix.path), ("fix.kind", test.fix.kind), ("fix.verified", str(test.fix.verified).lower()),
                  ("fix.result", test.fix.words())]
    if test.not_run_reason and test.verdict == "not run":
        props.append(("not_run_reason", test.not_run_reason))
    return props


def _outcome(case: ET.Element, test) -> None:
    cause = test.causes[0] if test.causes else None
    why = f"; cause: {cause.source} ({cause.status})" if cause else ""
    message = f"{test.verdict}: failed {test.failures} of {test.executions} executions ({test.rate:.1%}){why}"
    if test.verdict == "flaky":
        ET.SubElement(case, "flakyFailure", type="flaky", message=message).text = "\n".join(test.failure_digests[:3])
    elif test.verdict == "fail":
        ET.SubElement(case, "failure", type="fail", message=message).text = "\n".join(test.failure_digests[:3])
    elif test.verdict == "error":
        ET.SubElement(case, "error", type="error", message=message).text = "\n".join(test.failure_digests[:3])
    elif test.verdict in ("skip", "not run"):
        ET.SubElement(case, "skipped", message=test.not_run_reason or test.verdict)


def to_xml(result) -> ET.Element:
    counts = {v: sum(t.verdict == v for t in result.tests) for v in ("flaky", "fail", "error", "skip", "not run")}
    root = ET.Element("testsuites", name="audit flaky", tests=str(len(result.tests)),
                      failures=str(counts["flaky"] + counts["fail"]), errors=str(counts["error"]),
                      time=f"{result.seconds:.3f}")
    for test in result.tests:
        bad = test.verdict in ("flaky", "fail")
        suite = ET.SubElement(root, "testsuite", name=test.nodeid, tests="1", failures=str(int(bad)),
                              errors=str(int(test.verdict == "error")),
                              skipped=str(int(test.verdict in ("skip", "not run"))),
                              time=f"{test.total_duration:.3f}", file=test.nodeid.split("::")[0])
        props = ET.SubElement(suite, "properties")
        for name, value in _properties(test):
            ET.SubElement(props, "property", name=name, value=value)
        classname, name = _classname(test.nodeid)
        case = ET.SubElement(suite, "testcase", name=name, classname=classname,
                             time=f"{test.mean_duration:.3f}")
        _outcome(case, test)
    return root


def write(result, path: str | Path) -> Path:
    root = to_xml(result)
    ET.indent(root)
    return write_text(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
