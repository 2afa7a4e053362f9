"""audit flaky collects as the user's own pytest does: ini files, conftests at any level, a src
layout with tests inside the package, and addopts naming coverage, xdist and -x, which must
neither break nor slow the audit."""

from __future__ import annotations

import json
import textwrap

from audit.cli import main


def write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


def test_setup_cfg_addopts_src_layout_and_nested_conftests(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = tmp_path / "proj"
    write(root, {
        "setup.cfg": """\
            [tool:pytest]
            addopts = --cov=mypkg --cov-report=term -n 2 -x -p no:cacheprovider
            testpaths = src tests
            """,
        "conftest.py": "import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).parent / 'src'))\n",
        "src/mypkg/__init__.py": "def double(x):\n    return 2 * x\n",
        "src/mypkg/tests/__init__.py": "",
        "src/mypkg/tests/test_inside.py": "from mypkg import double\n\ndef test_double():\n    assert double(2) == 4\n",
        "tests/conftest.py": "import pytest\n\n@pytest.fixture\ndef three():\n    return 3\n",
        "tests/test_outside.py": "from mypkg import double\n\ndef test_three(three):\n    assert double(three) == 6\n\n"
                                 "def test_fails():\n    assert double(1) == 3\n",
    })
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    out = tmp_path / "r.json"
    assert main(["flaky", str(root), "--runs", "3", "--seed", "1", "--no-record", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    verdicts = {t["nodeid"]: t["verdict"] for t in data["tests"]}
    assert verdicts == {"src/mypkg/tests/test_inside.py::test_double": "pass",
                        "tests/test_outside.py::test_three": "pass",
                        "tests/test_outside.py::test_fails": "fail"}   # -x in addopts stopped nothing
    assert all(t["executions"] >= 3 for t in data["tests"])
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before     # no .coverage, no caches, nothing written
