"""The pytest plugin inside a real pytest run: inert by default, seeds, fixtures, rounds, rows."""

import json
import random
import subprocess
import sys
import textwrap

import pytest

from audit.flaky.plugin import derive_seed

CONFTEST = "import pytest\n"

TESTS = textwrap.dedent('''
    import json, os, random
    import numpy as np
    import pytest
    import torch

    LOG = os.environ["PLUGIN_LOG"]

    def log(**kw):
        with open(LOG, "a") as f:
            f.write(json.dumps(kw) + "\\n")

    @pytest.fixture(scope="module")
    def shared():
        value = random.random()
        log(kind="fixture", value=value)
        return value

    def test_draws(shared):
        log(kind="draws", r=random.random(), n=float(np.random.rand()), t=float(torch.rand(1)),
            shared=shared, threads=torch.get_num_threads(),
            det=torch.are_deterministic_algorithms_enabled(), env=os.environ.get("LEAK"),
            dtype=str(torch.get_default_dtype()))

    def test_pollutes():
        os.environ["LEAK"] = "yes"
        torch.set_default_dtype(torch.float64)

    def test_reseeds():
        random.seed(0)
        random.random()

    def test_quiet():
        assert True

    @pytest.mark.flaky(reruns=20)
    def test_masked():
        assert random.random() < 0.5
''')


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_p.py").write_text(TESTS)
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = ['tests']\n")
    return root


def run(root, *args, env_extra=None):
    import os
    log = root.parent / "log.jsonl"
    log.unlink(missing_ok=True)
    env = dict(os.environ, PLUGIN_LOG=str(log), PYTHONDONTWRITEBYTECODE="1", **(env_extra or {}))
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return proc, lines


def test_inert_without_enable(project, tmp_path):
    rows = tmp_path / "rows.jsonl"
    proc, log = run(project, "tests/test_p.py::test_draws", "tests/test_p.py::test_draws",
                    f"--audit-rows={rows}", "--audit-seed-random=1")
    assert proc.returncode == 0, proc.stdout
    assert not rows.exists()
    assert log[-1]["r"] != random.Random(1).random()


def test_pinned_and_derived_seeds_and_fixture_keys(project, tmp_path):
    rows = tmp_path / "rows.jsonl"
    proc, log = run(project, "tests/test_p.py::test_draws", "--audit-enable", "--audit-seed-random=5",
                    "--audit-seed-numpy=5", "--audit-seed-torch=5", "--audit-threads=1",
                    "--audit-deterministic=on", f"--audit-rows={rows}")
    assert proc.returncode == 0, proc.stdout
    draw = [x for x in log if x["kind"] == "draws"][0]
    import numpy as np
    import torch
    np.random.seed(5)
    torch.manual_seed(5)
    assert draw["r"] == random.Random(5).random() and draw["n"] == float(np.random.rand())
    assert draw["t"] == float(torch.rand(1))
    assert draw["shared"] == random.Random(5).random()     # pinned: fixtures get the same seed
    assert draw["threads"] == 1 and draw["det"] is True
    row = [json.loads(x) for x in rows.read_text().splitlines() if '"row"' in x][0]
    assert row["seeds"] == {"random": 5, "numpy": 5, "torch": 5, "entropy": None} and row["outcome"] == "passed"
    assert row["draws"] == {"random": True, "numpy": True, "torch": True, "entropy": False}
    assert row["fixture_draws"] == [{"fixture": "shared", "scope": "module", "families": ["random"]}]

    # derived seeds: the same test alone or after another one sees the same values, fixture too
    node = "tests/test_p.py::test_draws"
    runs = []
    for args in ([node], ["tests/test_p.py::test_quiet", "tests/test_p.py::test_reseeds", node]):
        proc, log = run(project, *args, "--audit-enable", "--audit-seed-random=fresh", "--audit-seed-base=77")
        assert proc.returncode == 0, proc.stdout
        runs.append([x for x in log if x["kind"] == "draws"][0])
    assert (runs[0]["r"], runs[0]["shared"]) == (runs[1]["r"], runs[1]["shared"])
    assert runs[0]["r"] == random.Random(derive_seed(77, "random", node)).random()
    fixture_seed = derive_seed(77, "random", "fixture", "tests/test_p.py", "shared")
    assert runs[0]["shared"] == random.Random(fixture_seed).random()


def test_unit_rounds_refresh_fixtures_undo_leaks_and_record_rows(project, tmp_path):
    unit = {"tests": ["tests/test_p.py::test_pollutes", "tests/test_p.py::test_draws",
                      "tests/test_p.py::test_reseeds", "tests/test_p.py::test_quiet",
                      "tests/test_p.py::test_masked"],
            "seed_base": 9, "seeds": {"torch": "fresh", "numpy": "fresh", "random": "fresh"},
            "deterministic": "off", "rounds": 6, "threads": [1, 2], "thread_offset": 0,
            "runs_without_draws": 1, "max_runs_per_test": 6, "caps": {"tests/test_p.py::test_draws": 4}}
    unit_file = tmp_path / "unit.json"
    unit_file.write_text(json.dumps(unit))
    rows_file = tmp_path / "rows.jsonl"
    proc, log = run(project, "tests/test_p.py", "--audit-enable", f"--audit-unit={unit_file}",
                    f"--audit-rows={rows_file}")
    records = [json.loads(x) for x in rows_file.read_text().splitlines()]
    rows = [r for r in records if r["event"] == "row"]
    assert records[0]["event"] == "ready" and records[-1]["event"] == "end"
    by = {}
    for r in rows:
        by.setdefault(r["nodeid"].split("::")[1], []).append(r)
    # the fixture is torn down after each round and re-created with that round's seed
    fixtures = [x["value"] for x in log if x["kind"] == "fixture"]
    draws = [x for x in log if x["kind"] == "draws"]
    assert len(fixtures) == len(draws) == 4 == len(by["test_draws"])
    assert len(set(fixtures)) == 4 and [d["shared"] for d in draws] == fixtures
    # threads alternate by round; what test_pollutes leaves is undone before the next round,
    # but seen by test_draws in the same round (that is what order audits look for)
    assert [d["threads"] for d in draws] == [1, 2, 1, 2]
    assert all(d["env"] == "yes" and d["dtype"] == "torch.float64" for d in draws[:1])
    assert [r["round"] for r in by["test_draws"]] == [0, 1, 2, 3]
    # a test that draws nothing, or reseeds itself, is not repeated; a fresh drawer is
    assert len(by["test_quiet"]) == 1 and len(by["test_pollutes"]) == 1
    assert len(by["test_reseeds"]) == 2
    assert by["test_draws"][0]["signature"] != by["test_draws"][1]["signature"]
    # pytest-rerunfailures: failing attempts are rows of their own, marked as masked
    masked = [r for r in by["test_masked"] if r["masked"]]
    assert masked and all(r["outcome"] == "failed" for r in masked)
    assert {r["attempt"] for r in by["test_masked"]} >= {0, 1}
    for r in rows:
        assert {"nodeid", "outcome", "duration", "seeds", "threads", "deterministic", "draws",
                "digest", "seed_base", "round"} <= set(r)
