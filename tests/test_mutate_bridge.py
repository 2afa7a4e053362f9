"""The mutmut bridge: verdict mapping against mutmut's own table, and the version pin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mutmut.stats import status_by_exit_code

from audit.errors import AuditError
from audit.model.mutate import STATUSES, UNCHECKED
from audit.mutate.bridge import MUTMUT_VERSION, check_mutmut_version, mutmut_status, status_from_mutmut

# every status mutmut 3.8.1 gives, and what it is for ml-audit
EXPECTED = {"killed": "killed", "survived": "survived", "timeout": "timeout", "no tests": "no_coverage",
            "segfault": "killed", "caught by type check": "killed", "not checked": "unchecked",
            "check was interrupted by user": "unchecked", "suspicious": "suspicious", "skipped": "skipped"}


def test_every_exit_code_mutmut_knows_maps_to_a_status_of_ours():
    assert set(status_by_exit_code.values()) == set(EXPECTED)
    for code, name in status_by_exit_code.items():
        ours = status_from_mutmut(code, name)
        assert ours in STATUSES and ours != "error", (code, name)
        if code not in (-9,):
            assert ours == EXPECTED[name], (code, name, ours)


def test_sigkill_after_the_cpu_limit_is_a_timeout_not_a_kill():
    assert status_by_exit_code[-9] == "segfault"
    assert status_from_mutmut(-9, "segfault") == "timeout"
    assert status_from_mutmut(137, mutmut_status(137)) == "timeout"


def test_mutants_mutmut_did_not_finish_are_unchecked_never_scored():
    assert status_from_mutmut(None, mutmut_status(None)) == "unchecked"
    assert status_from_mutmut(2, mutmut_status(2)) == "unchecked"          # interrupted by the user
    assert status_from_mutmut(34, mutmut_status(34)) == "skipped"
    assert status_from_mutmut(99, mutmut_status(99)) == "suspicious"      # an exit code mutmut does not know
    assert {"unchecked", "skipped", "suspicious"} == set(UNCHECKED)
    assert status_from_mutmut(0, "a status from another mutmut") == "error"


def test_a_mutmut_other_than_the_pinned_one_is_refused_by_name():
    check_mutmut_version(MUTMUT_VERSION)
    with pytest.raises(AuditError, match=r"needs mutmut 3\.8\.1 exactly.*mutmut 3\.9\.0 is installed") as raised:
        check_mutmut_version("3.9.0")
    assert raised.value.exit_code == 2


@pytest.fixture
def other_mutmut(tmp_path):
    fake = tmp_path / "fake" / "mutmut"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "3.9.0"\n')
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(fake.parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}


def test_audit_mutate_with_another_mutmut_exits_2_naming_both_versions(tmp_path, other_mutmut):
    (tmp_path / "proj").mkdir()
    for argv in (["mutate", str(tmp_path / "proj")], ["mutate", "--list-operators"]):
        proc = subprocess.run([sys.executable, "-m", "audit", *argv], capture_output=True, text=True,
                              env=other_mutmut, timeout=120)
        err = " ".join(proc.stderr.split())
        assert proc.returncode == 2, proc.stderr
        assert "mutmut 3.8.1 exactly" in err and "mutmut 3.9.0 is installed" in err
        assert "Traceback" not in proc.stderr


def test_reading_the_history_loads_no_mutmut_and_no_libcst():
    code = ("import sys, audit.mutate.catalog, audit.model.mutate, audit.report.mutate_table; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mutmut', 'libcst'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
