"""Fix hints per cause name the place, and make_cause builds issue 4's causes entry."""

from __future__ import annotations

import pytest

from audit.flaky.hints import hint, is_test_file, make_cause, sites_from_trace, tolerance_for


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


def test_order_hint_names_polluter_and_state():
    text = hint("order", polluter="tests/test_train.py::test_fit", nodeid=T,
                state="os.environ['TINYCLF_EPOCHS'] = '2' left behind")
    assert "tests/test_train.py::test_fit leaves os.environ['TINYCLF_EPOCHS'] = '2' behind" in text
    assert "monkeypatch.setenv" in text
    dtype = hint("order", polluter="tests/a.py::t", state="torch.get_default_dtype() == torch.float64")
    assert "set_default_dtype" in dtype
    assert "tests/a.py::t" in hint("order", polluter="tests/a.py::t")


def test_unknown_says_what_was_tried():
    assert "tried: torch, numpy" in hint("unknown", tried=["torch", "numpy"])


def test_make_cause_has_the_issue_fields_and_takes_sites_from_a_trace():
    record = {"nodeid": T, "draws": {"torch": {"sites": [
        _site("tests/test_x.py", 9, "test_x", ["randn"], call_paths=[[T]]),
        _site("pkg/a.py", 21, "mixup", ["sample"], call_paths=[[T, "pkg/a.py::mixup"]]),
        _site("pkg/b.py", 3, "seeded", ["randn"], unseeded=0, call_paths=[[T, "pkg/b.py::seeded"]])]}},
        "empty_sites": []}
    cause = make_cause("torch", 0.0012, "pinned 0/40 failed, torch released 11/40 failed", trace=record)
    assert set(cause) == {"source", "p_value", "evidence", "sites", "call_path", "polluter", "hint"}
    assert cause["sites"] == [{"path": "pkg/a.py", "line": 21, "function": "mixup"},
                              {"path": "tests/test_x.py", "line": 9, "function": "test_x"}]
    assert cause["call_path"] == [T, "pkg/a.py::mixup"] and cause["polluter"] is None
    order = make_cause("order", 0.01, "e", nodeid=T, polluter="tests/a.py::p", state="os.environ['X'] = '1'")
    assert order["polluter"] == "tests/a.py::p" and order["sites"] == [] and "monkeypatch" in order["hint"]
    with pytest.raises(ValueError, match="unknown source"):
        make_cause("cosmic-rays", 1.0, "")


def test_sites_from_trace_prefers_code_under_test_and_skips_seeded():
    assert sites_from_trace(None, "torch") == ([], [])
    assert is_test_file("tests/test_a.py") and is_test_file("conftest.py") and not is_test_file("pkg/a.py")
