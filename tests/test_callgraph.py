"""The randomness call graph built from trace records, and its node-link export."""

from __future__ import annotations

import json

import networkx as nx

from audit.flaky.callgraph import SCHEMA, build_graph, from_json, paths_to_sites, site_id, to_json


def _site(path, line, function, call_paths, count=1, unseeded=1, kind="draw"):
    return {"path": path, "line": line, "function": function, "kind": kind, "count": count,
            "unseeded": unseeded, "call_paths": call_paths, "via": [], "names": []}


def _record(nodeid, torch=(), numpy=(), empty=(), hygiene=True):
    fam = lambda sites: {"count": sum(s["count"] for s in sites), "unseeded": sum(s["unseeded"] for s in sites),
                         "sites": list(sites)}
    return {"nodeid": nodeid, "outcome": "passed", "rng_hygiene": hygiene, "unseeded_families": [],
            "draws": {"torch": fam(torch), "numpy": fam(numpy), "random": fam(())}, "empty_sites": list(empty)}


A = "tests/test_a.py::test_a"
B = "tests/test_a.py::test_b"
SPLIT = _site("pkg/data.py", 56, "split", [[A, "fixture:holdout", "pkg/data.py::split"]])
DROP = _site("pkg/model.py", 40, "Block.forward",
             [[B, "pkg/model.py::Net.forward", "pkg/model.py::Block.forward"]], count=3)
SEEDED = _site("pkg/model.py", 16, "Block.__init__", [[B, "pkg/model.py::Block.__init__"]], unseeded=0)
EMPTY = {"path": "pkg/serve.py", "line": 13, "function": "pad", "call": "torch.empty", "count": 1,
         "call_path": [B, "pkg/serve.py::pad"]}
RECORDS = [_record(A, torch=[SPLIT]),
           _record(B, torch=[DROP, SEEDED], empty=[EMPTY]),
           _record("tests/test_a.py::test_c", torch=[_site("pkg/data.py", 56, "split",
                                                           [["tests/test_a.py::test_c", "fixture:holdout",
                                                             "pkg/data.py::split"]])])]


def test_nodes_have_kinds_and_edges_follow_the_call_paths():
    g = build_graph(RECORDS)
    kinds = nx.get_node_attributes(g, "kind")
    assert kinds[A] == kinds[B] == "test"
    assert kinds["fixture:holdout"] == "fixture"
    assert kinds["pkg/data.py::split"] == kinds["pkg/model.py::Block.forward"] == "function"
    assert kinds[site_id("torch", SPLIT)] == "draw-site" and kinds["empty:pkg/serve.py:13"] == "empty-site"
    assert g.has_edge(A, "fixture:holdout") and g.has_edge("fixture:holdout", "pkg/data.py::split")
    assert g["pkg/data.py::split"][site_id("torch", SPLIT)]["kind"] == "draws"
    assert g["pkg/serve.py::pad"]["empty:pkg/serve.py:13"]["kind"] == "allocates"
    assert g[B]["pkg/model.py::Net.forward"]["count"] == 3


def test_shared_sites_merge_counts_and_tests():
    g = build_graph(RECORDS)
    node = g.nodes[site_id("torch", SPLIT)]
    assert node["count"] == 2 and node["tests"] == [A, "tests/test_a.py::test_c"]
    assert g["fixture:holdout"]["pkg/data.py::split"]["count"] == 2


def test_unseeded_only_drops_seeded_sites():
    full, unseeded = build_graph(RECORDS), build_graph(RECORDS, unseeded_only=True)
    assert site_id("torch", SEEDED) in full and site_id("torch", SEEDED) not in unseeded
    assert site_id("torch", DROP) in unseeded


def test_paths_from_a_test_to_its_sites():
    g = build_graph(RECORDS)
    assert paths_to_sites(g, A) == [[A, "fixture:holdout", "pkg/data.py::split", site_id("torch", SPLIT)]]
    assert paths_to_sites(g, A, "numpy") == []
    assert [A, "fixture:holdout"] not in paths_to_sites(g, B)


def test_node_link_export_round_trips_through_json():
    g = build_graph(RECORDS)
    data = json.loads(json.dumps(to_json(g)))
    assert data["schema"] == SCHEMA and data["directed"] is True
    assert {"nodes", "edges"} <= set(data)
    assert all({"source", "target", "kind"} <= set(e) for e in data["edges"])
    back = from_json(data)
    assert set(back.nodes) == set(g.nodes) and set(back.edges) == set(g.edges)
    assert back.nodes[site_id("torch", SPLIT)]["line"] == 56


def test_a_draw_in_the_test_body_hangs_off_the_test_node():
    own = _site("tests/test_a.py", 9, "test_d", [["tests/test_a.py::test_d"]])
    g = build_graph([_record("tests/test_a.py::test_d", torch=[own])])
    assert list(g.predecessors(site_id("torch", own))) == ["tests/test_a.py::test_d"]
