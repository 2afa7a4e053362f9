"""Equivalent mutants stay at or below 5% of what survives, on a hand-labelled sample from real projects.

``tests/data/survivors.json`` holds surviving mutants of real ``audit mutate`` runs on public
PyTorch projects (``tests/data/make_survivors.py`` adds them), each read by hand and labelled
``equivalent`` (no test could tell it from the original) or ``real``. Every entry is regenerated
here from its function's source with every operator: pruning may drop equivalents, must never
drop a real one, and of the entries still made at most 5% may be equivalent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.mutate import registry
from audit.mutate.bridge import generate
from data.make_survivors import changed_lines   # tests/data, found as a namespace package

SAMPLE = Path(__file__).parent / "data" / "survivors.json"


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    entries = json.loads(SAMPLE.read_text())
    assert all(e["label"] in ("equivalent", "real") and e["why"] for e in entries), "an entry is not labelled"
    return entries


def _made(entry: dict, cache: dict) -> bool:
    """Whether the operator still makes this mutant from the function's source."""
    key = entry["source"]
    if key not in cache:
        _, records = generate("sample.py", entry["source"], registry.select("all"))
        cache[key] = {(r["operator"], tuple(map(tuple, changed_lines(r["diff"])))) for r in records}
    return (entry["operator"], (tuple(entry["removed"]), tuple(entry["added"]))) in cache[key]


@pytest.fixture(scope="module")
def made(sample) -> list[bool]:
    cache: dict = {}
    return [_made(e, cache) for e in sample]


def test_the_sample_is_large_enough_and_from_more_than_one_project(sample):
    assert len(sample) >= 30
    assert len({e["project"] for e in sample}) >= 2


def test_pruning_never_drops_a_real_mutant(sample, made):
    dropped = [(e["project"], e["function"], e["operator"], e["added"]) for e, m in zip(sample, made)
               if e["label"] == "real" and not m]
    assert not dropped


def test_at_most_five_percent_of_the_survivors_still_made_are_equivalent(sample, made):
    kept = [e for e, m in zip(sample, made) if m]
    equivalent = [(e["function"], e["operator"], e["added"]) for e in kept if e["label"] == "equivalent"]
    assert len(equivalent) <= 0.05 * len(kept), equivalent
