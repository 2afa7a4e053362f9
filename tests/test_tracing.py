"""trace_tests: one interpreter under the trace plugin, its records back, and its failures named."""

from __future__ import annotations

import textwrap

import pytest

from audit.config import load_config
from audit.errors import AuditError
from audit.flaky.tracing import trace_tests


def _project(tmp_path, tests: str, conftest: str = ""):
    (tmp_path / "pyproject.toml").write_text("[tool.audit]\n")
    (tmp_path / "test_t.py").write_text(textwrap.dedent(tests))
    if conftest:
        (tmp_path / "conftest.py").write_text(textwrap.dedent(conftest))
    return load_config(tmp_path)


def test_records_of_the_named_tests_only(tmp_path):
    cfg = _project(tmp_path, """
        import random

        def test_draws():
            assert random.random() < 2

        def test_other():
            pass
    """)
    records = trace_tests(cfg, ["test_t.py::test_draws"])
    assert list(records) == ["test_t.py::test_draws"]
    [site] = records["test_t.py::test_draws"]["draws"]["random"]["sites"]
    assert (site["path"], site["line"], site["function"]) == ("test_t.py", 5, "test_draws")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyproject.toml", "test_t.py"]


def test_a_run_that_breaks_says_how(tmp_path):
    cfg = _project(tmp_path, "def test_x():\n    pass\n", conftest="""
        def pytest_configure(config):
            raise RuntimeError("no tracing here")
    """)
    with pytest.raises(AuditError, match=r"(?s)tracing tests in .* failed \(pytest exit [1-9]\d*\):.*no tracing here"):
        trace_tests(cfg, ["test_t.py::test_x"])


def test_a_run_past_its_timeout_is_stopped(tmp_path):
    cfg = _project(tmp_path, "import time\n\ndef test_slow():\n    time.sleep(60)\n")
    with pytest.raises(AuditError, match=r"tracing 1 test\(s\) in .* took more than 3s"):
        trace_tests(cfg, ["test_t.py::test_slow"], timeout=3)
