"""Tracing judged against sample_project/expected.toml: every planted RNG flake is traced to the
site the ground truth names (with the fixture in the call path for the module-scoped one), the
determinism flake to its torch.empty site, and the hints name those places."""

from __future__ import annotations

import pytest

from audit.config import load_config
from audit.flaky.callgraph import build_graph, paths_to_sites, to_json
from audit.flaky.hints import make_cause
from audit.flaky.tracing import trace_tests

RNG = ("torch", "numpy", "random")


@pytest.fixture(scope="module")
def sample_trace(expected, tmp_path_factory):
    import shutil

    from conftest import SAMPLE

    root = tmp_path_factory.mktemp("trace_sample") / "sample_project"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "mutants", "reports"))
    wanted = [f for f in expected["flaky"] if f["source"] in RNG + ("determinism",)]
    controls = ["tests/test_holdout.py::test_holdout_size",       # sets the module fixture up first
                "tests/test_augment.py::test_frame_dropout_is_reproducible_when_seeded",
                "tests/test_seeding.py::test_seed_everything_fixes_every_family",
                "tests/test_model.py::test_predict_is_repeatable_in_eval_mode"]
    # grouped by module (stable), so test_holdout_size sets the module fixture up for its neighbour
    nodeids = sorted(controls + [f["nodeid"] for f in wanted], key=lambda n: n.split("::")[0])
    records = trace_tests(load_config(root), nodeids)
    return {"records": records, "wanted": wanted}


def _site_names(rec, family):
    return {f"{s['path']}::{s['function']}" for s in rec["draws"][family]["sites"] if s["unseeded"]}


def test_every_planted_rng_flake_is_traced_to_its_site(sample_trace):
    records = sample_trace["records"]
    for flake in sample_trace["wanted"]:
        if flake["source"] not in RNG:
            continue
        rec = records[flake["nodeid"]]
        assert flake["site"] in _site_names(rec, flake["source"]), (flake["nodeid"], rec["draws"])
        assert rec["rng_hygiene"] and flake["source"] in rec["unseeded_families"], flake["nodeid"]


def test_module_fixture_case_has_the_fixture_in_the_call_path(sample_trace):
    flake = next(f for f in sample_trace["wanted"] if f.get("fixture"))
    rec = sample_trace["records"][flake["nodeid"]]
    site = next(s for s in rec["draws"]["torch"]["sites"] if f"{s['path']}::{s['function']}" == flake["site"])
    assert site["call_paths"] == [[flake["nodeid"], f"fixture:{flake['fixture']}", flake["site"]]]
    assert rec["fixtures"][0]["name"] == flake["fixture"]
    assert rec["fixtures"][0]["set_up_in"] == "tests/test_holdout.py::test_holdout_size"


def test_determinism_flake_is_traced_to_its_torch_empty(sample_trace):
    flake = next(f for f in sample_trace["wanted"] if f["source"] == "determinism")
    rec = sample_trace["records"][flake["nodeid"]]
    assert [f"{e['path']}::{e['function']}" for e in rec["empty_sites"]] == [flake["site"]]
    assert rec["empty_sites"][0]["call"] == "torch.empty"


def test_seeded_controls_are_not_flagged(sample_trace):
    records = sample_trace["records"]
    for nodeid in ("tests/test_augment.py::test_frame_dropout_is_reproducible_when_seeded",
                   "tests/test_seeding.py::test_seed_everything_fixes_every_family",
                   "tests/test_model.py::test_predict_is_repeatable_in_eval_mode"):
        assert records[nodeid]["rng_hygiene"] is False, (nodeid, records[nodeid]["draws"])
    seeded = records["tests/test_seeding.py::test_seed_everything_fixes_every_family"]
    assert seeded["seeded_by_test"] == {"torch": True, "numpy": True, "random": True, "entropy": False}


def test_hints_name_the_traced_place(sample_trace):
    records = sample_trace["records"]
    for flake in sample_trace["wanted"]:
        rec = records[flake["nodeid"]]
        cause = make_cause(flake["source"], 1e-4, "pinned 0/40 failed, released 12/40 failed", trace=rec)
        path, _, function = flake["site"].partition("::")
        named = [s for s in cause.sites if s.path == path and s.function == function]
        assert named, (flake["nodeid"], cause)
        assert f"{path}:{named[0].line}" in cause.hint, cause.hint
        assert cause.call_path[0] == flake["nodeid"] and cause.trace_error is None
    holdout = make_cause("torch", 1e-4, "e", trace=records["tests/test_holdout.py::test_holdout_contains_every_class"])
    assert "fixture `holdout`" in holdout.hint and "random_split at tinyclf/data.py:56" in holdout.hint
    loader = make_cause("torch", 1e-4, "e", trace=records["tests/test_data.py::test_first_batch_has_every_class"])
    assert "DataLoader" in loader.hint and "make_loader" in loader.hint
    serving = make_cause("determinism", 1e-4, "e", trace=records["tests/test_serving.py::test_predict_batch_matches_one_by_one"])
    assert "replace torch.empty with torch.zeros at tinyclf/serving.py:13" in serving.hint


def test_call_graph_of_the_sample_reaches_every_planted_site(sample_trace):
    graph = build_graph(sample_trace["records"].values(), unseeded_only=True)
    for flake in sample_trace["wanted"]:
        if flake["source"] not in RNG:
            continue
        ends = {graph.nodes[p[-1]]["function"] for p in paths_to_sites(graph, flake["nodeid"], flake["source"])}
        assert flake["site"].partition("::")[2] in ends, flake["nodeid"]
    data = to_json(graph)
    kinds = {n["kind"] for n in data["nodes"]}
    assert {"test", "fixture", "function", "draw-site", "empty-site"} <= kinds
