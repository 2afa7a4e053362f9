"""Fix hints per cause name the place, from the fields attribution and tracing found, and
make_cause builds a model Cause."""

from __future__ import annotations

import pytest

from audit.flaky.hints import describe_state, hint, is_test_file, make_cause, sites_from_trace, tolerance_for
from audit.model.flaky import Counts, Site, StateChange
from audit.model.schema import validate


def _site(path, line, function, names=(), **extra):
    return {"path": path, "line": line, "function": function, "names": list(names), "kind": "draw",
            "count": 1, "unseeded": 1, "via": [], **extra}


T = "tests/test_x.py::test_x"


def test_torch_fixture_hint_names_fixture_and_generator_site():
    text = hint("torch", sites=[_site("pkg/data.py", 64, "split", ["random_split"])],
                call_path=[T, "fixture:holdout", "pkg/data.py::split"], nodeid=T)
    assert "fixture `holdout`" in text and "pass generator= to random_split at pkg/data.py:64" in text


def test_torch_hints_by_what_draws():
    drop = hint("torch", sites=[_site("pkg/m.py", 40, "Block.forward", ["dropout", "fc1"])], call_path=[T], nodeid=T)
    assert "dropout at pkg/m.py:40 (Block.forward)" in drop and "model.eval()" in drop and T in drop
    split = hint("torch", sites=[_site("pkg/d.py", 5, "split", ["randperm"])], call_path=[T], nodeid=T)
    assert "generator=torch.Generator().manual_seed(N) to randperm at pkg/d.py:5" in split
    fn = hint("torch", sites=[_site("pkg/a.py", 10, "noise", ["randn_like", "torch"])], call_path=[T], nodeid=T)
    assert fn.startswith("torch.randn_like at pkg/a.py:10 (noise)")
    dist = hint("torch", sites=[_site("pkg/a.py", 21, "mixup", ["Beta", "sample"])], call_path=[T], nodeid=T)
    assert "torch.distributions sample at pkg/a.py:21" in dist


def test_dataloader_hint_points_at_where_the_loader_is_built():
    site = _site(T.split("::")[0], 44, "test_x", ["iter", "next"],
                 loader_built_at={"path": "pkg/data.py", "line": 49, "function": "make_loader"},
                 via=["dataloader.py::DataLoader.__iter__"])
    text = hint("torch", sites=[site], call_path=[T], nodeid=T)
    assert "built at pkg/data.py:49 in make_loader" in text and "generator=" in text


def test_more_sites_are_listed_after_the_first():
    sites = [_site("pkg/a.py", 21, "mixup", ["sample"]), _site("tests/test_x.py", 39, "test_x", ["randn"])]
    assert hint("torch", sites=sites, call_path=[T], nodeid=T).endswith("(also drawn at tests/test_x.py:39)")


def test_numpy_and_random_hints():
    np_text = hint("numpy", sites=[_site("pkg/d.py", 23, "make_blobs", ["normal"])], call_path=[T], nodeid=T)
    assert "np.random's global state is drawn at pkg/d.py:23 (make_blobs)" in np_text
    ent = hint("numpy", sites=[_site("pkg/d.py", 3, "f", kind="entropy")], call_path=[T], nodeid=T)
    assert "default_rng(seed)" in ent
    rnd = hint("random", sites=[_site("pkg/a.py", 15, "frame_dropout", ["random"])], call_path=[T], nodeid=T)
    assert "pkg/a.py:15 (frame_dropout)" in rnd and "random.Random(seed)" in rnd
    assert "no project draw site" in hint("random", nodeid=T)


def test_threads_hint_gives_a_tolerance_that_holds():
    assert tolerance_for(3e-9) == pytest.approx(1e-7)
    assert tolerance_for(1e-7) == pytest.approx(1e-6)
    assert tolerance_for(0.0) == 1e-6
    text = hint("threads", sites=[_site("pkg/d.py", 73, "feature_stats")], nodeid=T, deviation=2.5e-9)
    assert "2.5e-09" in text and "atol=1e-07" in text and "pkg/d.py:73" in text and T in text
    assert "allclose" in hint("threads", nodeid=T)


def test_determinism_hint_names_the_empty_site():
    empty = [{"path": "pkg/serving.py", "line": 14, "function": "pad", "call": "torch.empty"}]
    assert hint("determinism", empty_sites=empty).startswith("replace torch.empty with torch.zeros at pkg/serving.py:14")
    like = [{"path": "p.py", "line": 2, "function": "f", "call": "torch.empty_like"}]
    assert "torch.zeros_like" in hint("determinism", empty_sites=like)


EPOCHS = StateChange("env", "TINYCLF_EPOCHS", None, "2")


def test_order_hint_names_polluter_and_state():
    text = hint("order", polluter="tests/test_train.py::test_fit", nodeid=T, state=[EPOCHS])
    assert "tests/test_train.py::test_fit leaves os.environ['TINYCLF_EPOCHS'] = '2' behind" in text
    assert "monkeypatch.setenv" in text
    removed = hint("order", polluter="tests/a.py::t", state=[StateChange("env", "HOME", "/root", None)])
    assert "os.environ['HOME'] removed" in removed and "monkeypatch.delenv" in removed
    dtype = hint("order", polluter="tests/a.py::t", state=[StateChange("dtype", "dtype", "torch.float32",
                                                                         "torch.float64")])
    assert "torch.get_default_dtype() = torch.float64" in dtype and "set_default_dtype" in dtype
    stream = hint("order", polluter="tests/a.py::t", nodeid=T, state=[StateChange("rng", "torch", "a", "b")])
    assert stream == f"{T} depends on the RNG stream position tests/a.py::t leaves: seed it in {T} itself"
    assert "tests/a.py::t" in hint("order", polluter="tests/a.py::t")


def test_state_in_words_names_env_dtype_and_globals_before_rng():
    changes = [EPOCHS, StateChange("dtype", "dtype", "torch.float32", "torch.float64"),
               StateChange("global", "pkg.mod.CACHE", "{}", "{'k': 1}"), StateChange("rng", "random", "r0", "r1")]
    assert describe_state(changes) == ("os.environ['TINYCLF_EPOCHS'] = '2'; torch.get_default_dtype() = "
                                       "torch.float64; module global pkg.mod.CACHE = {'k': 1} left behind")
    assert describe_state(changes[3:]) == "the global random RNG stream position left behind"
    assert describe_state([]) is None


def test_unknown_says_what_was_tried():
    assert "tried: torch, numpy" in hint("unknown", tried=["torch", "numpy"])


def test_make_cause_builds_a_cause_with_sites_from_a_trace():
    record = {"nodeid": T, "draws": {"torch": {"sites": [
        _site("tests/test_x.py", 9, "test_x", ["randn"], call_paths=[[T]]),
        _site("pkg/a.py", 21, "mixup", ["sample"], call_paths=[[T, "pkg/a.py::mixup"]]),
        _site("pkg/b.py", 3, "seeded", ["randn"], unseeded=0, call_paths=[[T, "pkg/b.py::seeded"]])]}},
        "empty_sites": []}
    counts = Counts(pinned=(0, 40), released=(11, 40), confirmation=(0, 30))
    cause = make_cause("torch", 0.0012, "pinned 0/40 failed, torch released 11/40 failed", trace=record,
                       status="confirmed", counts=counts)
    assert cause.sites == [Site("pkg/a.py", 21, "mixup"), Site("tests/test_x.py", 9, "test_x")]
    assert cause.call_path == [T, "pkg/a.py::mixup"] and cause.polluter is None and cause.confirmed
    data = cause.to_json()
    assert data["counts"] == {"pinned": [0, 40], "released": [11, 40], "unit": "executions", "confirmation": [0, 30]}
    assert type(cause).from_json(data) == cause
    assert Counts.from_json({"pinned": [0, 40], "released": [11, 40], "unit": "executions"}).confirmation is None
    order = make_cause("order", 0.01, "e", nodeid=T, polluter="tests/a.py::p", state=[EPOCHS])
    assert order.status == "suspected" and not order.confirmed
    assert order.polluter == "tests/a.py::p" and order.sites == [] and order.state == [EPOCHS]
    assert "monkeypatch" in order.hint
    with pytest.raises(ValueError, match="unknown source"):
        make_cause("cosmic-rays", 1.0, "")


def test_a_cause_validates_inside_a_result():
    cause = make_cause("random", 1e-5, "e", nodeid=T, counts=Counts((0, 40), (9, 60), confirmation=(2, 30)))
    unknown = make_cause("unknown", None, "pinned 0/40 failed; released: torch RNG 0/60", nodeid=T)
    test = {"nodeid": T, "verdict": "flaky", "executions": 1, "failures": 1, "rate": 1.0, "interval": [0, 1],
            "failing_settings": [], "repro": None, "causes": [cause.to_json(), unknown.to_json()]}
    validate({"schema": "ml-audit.flaky/3", "project": "p", "settings": {}, "seconds": 1, "executions": 1,
              "interpreters": 1, "stopped": "budget spent", "tests": [test]})


def test_an_unknown_cause_has_no_p_value_and_no_other_status():
    unknown = make_cause("unknown", None, "e", tried=["torch RNG"])
    assert unknown.status == "unknown" and unknown.p_value is None and "tried: torch RNG" in unknown.hint
    with pytest.raises(ValueError, match="no p-value"):
        make_cause("unknown", 0.2, "e")
    with pytest.raises(ValueError, match="cannot have status"):
        make_cause("unknown", None, "e", status="confirmed")


def test_a_tracing_failure_is_named_not_taken_for_no_draw_site():
    failed = make_cause("torch", 1e-5, "e", nodeid=T, trace=None, trace_error="pytest exit 2: ImportError")
    assert failed.trace_error == "pytest exit 2: ImportError" and failed.sites == []
    assert "tracing failed" in failed.hint and "ImportError" in failed.hint
    assert "no project draw site" not in failed.hint
    stopped = make_cause("numpy", 1e-5, "e", trace={"nodeid": T, "draws": {}, "trace_error": "RuntimeError: x"})
    assert stopped.trace_error == "RuntimeError: x" and "tracing failed" in stopped.hint
    clean = make_cause("numpy", 1e-5, "e", trace={"nodeid": T, "draws": {}, "trace_error": None})
    assert clean.trace_error is None and "no project draw site was traced" in clean.hint
    assert make_cause("threads", 1e-5, "e", trace_error="boom").trace_error is None
    determinism = make_cause("determinism", 1e-5, "e", nodeid=T, trace_error="pytest exit 3")
    assert determinism.trace_error == "pytest exit 3" and "tracing failed" in determinism.hint


def test_sites_from_trace_prefers_code_under_test_and_skips_seeded():
    assert sites_from_trace(None, "torch") == ([], [])
    assert is_test_file("tests/test_a.py") and is_test_file("conftest.py") and not is_test_file("pkg/a.py")
