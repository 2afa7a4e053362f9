"""The randomness call graph: which tests reach which RNG draw sites, through which fixtures and
project functions. Built with networkx from trace records (audit.flaky.trace) and exported in
node-link form, so the report can draw it without knowing how it was traced.

Node kinds: ``test`` (a node id), ``fixture`` (``fixture:NAME``), ``function`` (``path::qualname``),
``draw-site`` (one line drawing from one RNG family) and ``empty-site`` (a ``torch.empty``-family
call in project code). Edges: ``calls`` along each call path, ``draws`` from a function to the
sites it draws at, ``allocates`` to empty sites. Counts add up over tests.
"""

from __future__ import annotations

from typing import Iterable

import networkx as nx

from audit.flaky.sources import FAMILIES

SCHEMA = "ml-audit.rng-graph/1"


def _kind(name: str) -> str:
    if name.startswith("fixture:"):
        return "fixture"
    return "function"


def _add_path(graph: nx.DiGraph, path: list[str], count: int) -> str:
    """Add the test -> fixture -> function chain; return the last node (where the site lives)."""
    for i, name in enumerate(path):
        if name not in graph:
            graph.add_node(name, kind="test" if i == 0 else _kind(name), label=name.rpartition("::")[2] or name)
        if i:
            prev = path[i - 1]
            if graph.has_edge(prev, name):
                graph[prev][name]["count"] += count
            else:
                graph.add_edge(prev, name, kind="calls", count=count)
    return path[-1]


def site_id(family: str, site: dict) -> str:
    """The graph node id of one draw site."""
    return f"draw:{family}:{site['path']}:{site['line']}"


def build_graph(records: Iterable[dict], *, unseeded_only: bool = False) -> nx.DiGraph:
    """One DiGraph for many tests' trace records (dicts as written by ``--audit-trace``)."""
    graph = nx.DiGraph()
    for rec in records:
        nodeid = rec["nodeid"]
        graph.add_node(nodeid, kind="test", label=nodeid.rpartition("::")[2], outcome=rec.get("outcome"),
                       rng_hygiene=rec.get("rng_hygiene", False),
                       unseeded_families=rec.get("unseeded_families", []))
        for family in FAMILIES:
            for site in rec.get("draws", {}).get(family, {}).get("sites", []):
                if unseeded_only and not site["unseeded"]:
                    continue
                node = site_id(family, site)
                if node not in graph:
                    graph.add_node(node, kind="draw-site", family=family, path=site["path"], line=site["line"],
                                   function=site["function"], draw_kind=site.get("kind", "draw"),
                                   label=f"{site['path']}:{site['line']}", count=0, unseeded=0, tests=[])
                data = graph.nodes[node]
                data["count"] += site["count"]
                data["unseeded"] += site["unseeded"]
                if nodeid not in data["tests"]:
                    data["tests"].append(nodeid)
                for path in site.get("call_paths") or [[nodeid]]:
                    holder = _add_path(graph, path, site["count"])
                    if graph.has_edge(holder, node):
                        graph[holder][node]["count"] += site["count"]
                    else:
                        graph.add_edge(holder, node, kind="draws", count=site["count"], family=family)
        for site in rec.get("empty_sites", []):
            node = f"empty:{site['path']}:{site['line']}"
            if node not in graph:
                graph.add_node(node, kind="empty-site", call=site["call"], path=site["path"], line=site["line"],
                               function=site["function"], label=f"{site['path']}:{site['line']}", tests=[])
            if nodeid not in graph.nodes[node]["tests"]:
                graph.nodes[node]["tests"].append(nodeid)
            holder = _add_path(graph, site.get("call_path") or [nodeid], site["count"])
            if not graph.has_edge(holder, node):
                graph.add_edge(holder, node, kind="allocates", count=0)
            graph[holder][node]["count"] += site["count"]
    return graph


def to_json(graph: nx.DiGraph) -> dict:
    """Node-link data (networkx.node_link_data, edges under "edges") plus a schema tag."""
    data = nx.node_link_data(graph, edges="edges")
    data["schema"] = SCHEMA
    return data


def from_json(data: dict) -> nx.DiGraph:
    """The graph back from :func:`to_json`'s output."""
    data = {k: v for k, v in data.items() if k != "schema"}
    return nx.node_link_graph(data, directed=True, edges="edges")


def paths_to_sites(graph: nx.DiGraph, nodeid: str, family: str | None = None) -> list[list[str]]:
    """Every simple path from a test to the draw sites it reaches (optionally of one family)."""
    targets = [n for n, d in graph.nodes(data=True)
               if d.get("kind") == "draw-site" and (family is None or d.get("family") == family)
               and nodeid in d.get("tests", ())]
    paths = []
    for target in targets:
        paths.extend(nx.all_simple_paths(graph, nodeid, target))
    return paths
