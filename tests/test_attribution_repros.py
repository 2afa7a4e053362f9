"""The minimal repro and its counterfactual per cause: the test alone (its polluter and it, for
order) with only the cause's option, at a value that failed and at one that passed."""

from audit.flaky.attribution.case import Case
from audit.flaky.attribution.lab import PIN_HASHSEEDS, PIN_SEEDS
from audit.flaky.attribution.repros import settings_for
from audit.flaky.repro import minimal

T = "tests/test_a.py::test_x"


def _pair(case, source):
    fails, passing, before = settings_for(case, source, default_threads=2)
    return [minimal(T, f, passing, [], before) for f in fails]


def test_an_rng_cause_sets_only_its_family_and_the_families_the_test_draws():
    case = Case(T, pin=1, not_drawn=("numpy", "random", "entropy"))
    case.example("torch", {"seeds": {"torch": 99, "numpy": 5}, "threads": 2, "masked": False})
    [(repro, counter)] = _pair(case, "torch")
    assert repro.args[-2:] == ["--audit-enable", "--audit-seed-torch=99"] and repro.env == {}
    assert counter.args[-1] == f"--audit-seed-torch={PIN_SEEDS[1]}"
    assert repro.command().count("::") == 1 and "numpy" not in repro.command()
    drawing_both = Case(T, pin=0, not_drawn=("random", "entropy"))
    drawing_both.example("torch", {"seeds": {"torch": 99, "numpy": 5}, "threads": 2, "masked": True})
    [(repro, _)] = _pair(drawing_both, "torch")
    assert f"--audit-seed-numpy={PIN_SEEDS[0]}" in repro.args and "--force-reruns=0" in repro.args


def test_threads_determinism_and_hash_seed_set_their_own_option_only():
    case = Case(T, pin=0)
    case.example("threads", {"seeds": {}, "threads": 1, "masked": False})
    [(repro, counter)] = _pair(case, "threads")
    assert repro.args[-2:] == ["--audit-enable", "--audit-threads=1"] and counter.args[-1] == "--audit-threads=2"
    [(repro, counter)] = _pair(case, "determinism")
    assert repro.args[-1] == "--audit-deterministic=on" and counter.args[-1] == "--audit-deterministic=off"
    case.example("hashseed", {"hashseed": "31337"})
    [(repro, counter)] = _pair(case, "hashseed")
    assert repro.env == {"PYTHONHASHSEED": "31337"} and counter.env == {"PYTHONHASHSEED": PIN_HASHSEEDS[0]}
    assert "--audit-enable" not in repro.args and repro.args[-1] == T


def test_an_order_cause_runs_the_polluter_then_the_victim_and_the_victim_alone():
    case = Case(T, pin=0, polluter="tests/test_b.py::test_sets_env")
    [(repro, counter)] = _pair(case, "order")
    assert repro.args[-2:] == ["tests/test_b.py::test_sets_env", T] and counter.args[-1] == T
    assert repro.command() == "python -m pytest -p no:cacheprovider -p no:randomly tests/test_b.py::test_sets_env " + T
    assert _pair(Case(T, pin=0), "order") == []          # no polluter found: no repro to claim
