"""Python processes a test spawns run under the test's settings, or the verdict says they did not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from audit.cli import main
from audit.flaky.children import HOOK_DIR, SETTINGS_VAR

SUITE = '''
import os
import subprocess
import sys

DRAW = "import random; print(random.random())"


def _child(env=None):
    return float(subprocess.run([sys.executable, "-c", DRAW], capture_output=True, text=True,
                                env=env, check=True).stdout)


def test_child_draw_is_the_tests():
    # flaky when the child's seed varies with the test's, and only then
    assert _child() < 0.5


def test_child_without_the_environment():
    _child(env={"PATH": os.environ.get("PATH", "")})


def test_no_child():
    assert 1 + 1 == 2
'''


def _audit(tmp_path_factory, rng: str) -> dict:
    root = tmp_path_factory.mktemp("children") / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_spawn.py").write_text(SUITE)
    out = root.parent / "result.json"
    main(["flaky", str(root), "--budget", "30", "--seed", "9", "--rng", rng, "--no-hashseed",
          "--no-determinism", "--orders", "file", "--threads", "1", "--no-attribute", "--no-record", "--json", str(out)])
    return {t["nodeid"].split("::")[1]: t for t in json.loads(out.read_text())["tests"]}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return _audit(tmp_path_factory, "random")   # python's random varied per execution


def test_a_childs_randomness_follows_the_test_seed(result):
    test = result["test_child_draw_is_the_tests"]
    assert test["verdict"] == "flaky"
    assert test["children"]["controlled"] >= test["executions"] and test["children"]["uncontrolled"] == 0
    assert "spawned Python processes ran under each execution's settings" in test["evidence"]


def test_a_pinned_seed_pins_the_child_too(tmp_path_factory):
    # random pinned to 0 (only torch varied): the child draws random.seed(0)'s 0.844 every time, so the
    # test fails every time; an uncontrolled child would pass about half of its executions
    test = _audit(tmp_path_factory, "torch")["test_child_draw_is_the_tests"]
    assert test["verdict"] == "fail" and test["executions"] >= 5 and test["failures"] == test["executions"], test


def test_a_child_that_escapes_is_reported(result):
    test = result["test_child_without_the_environment"]
    assert test["children"] == {"controlled": 0, "uncontrolled": test["executions"]}
    assert "ran without the audit's settings" in test["evidence"]
    assert result["test_no_child"]["children"] is None


def _draw(tmp_path, seed: int) -> str:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"test": "t", "seeds": {"random": seed, "numpy": seed}, "threads": None,
                                    "deterministic": None, "log": str(tmp_path / "log.jsonl")}))
    env = dict(os.environ, PYTHONPATH=HOOK_DIR, **{SETTINGS_VAR: str(settings)})
    code = "import random, numpy; print(random.random(), numpy.random.rand())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_the_hook_pins_random_and_numpy_in_the_child(tmp_path):
    assert _draw(tmp_path, 3) == _draw(tmp_path, 3) != _draw(tmp_path, 4)
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3


def test_the_hook_hands_over_to_the_sitecustomize_it_shadows(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import builtins\nbuiltins.THEIRS = 'ran'\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HOOK_DIR, str(theirs)]))
    env.pop(SETTINGS_VAR, None)
    out = subprocess.run([sys.executable, "-c", "print(THEIRS)"], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ran", out.stderr
