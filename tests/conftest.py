"""Shared fixtures for ml-audit's own tests."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_project"

# The Ctrl-C tests send SIGINT to an audit they started, as a terminal would. A suite started as a
# background job of a shell without job control inherits SIGINT ignored, and so would every audit
# it starts; a handler (unlike SIG_IGN) is not inherited across exec, so each child starts as from
# a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def expected() -> dict:
    """sample_project/expected.toml, the ground truth the engines are judged against."""
    with (SAMPLE / "expected.toml").open("rb") as f:
        return tomllib.load(f)


@pytest.fixture
def sample_copy(tmp_path) -> Path:
    """A private copy of sample_project, so a test can never touch the shipped one."""
    dest = tmp_path / "sample_project"
    shutil.copytree(SAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "mutants", "reports"))
    return dest
