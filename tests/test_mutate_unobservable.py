"""A keepdim mutant is pruned exactly when nothing downstream can see the kept axis.

Each pruned case is also run with torch, both ways, to show the value really is the same; each
kept case is one where a test could tell them apart.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

from audit.mutate import registry
from audit.mutate.bridge import generate


def keepdim_mutants(body: str) -> list[str]:
    source = "def f(torch, x, y):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    _, records = generate("mod.py", source, registry.select("flip_keepdim"))
    return [r["replacement"] for r in records]


def both_ways(body: str, x=None) -> tuple:
    """f with the reduction as written and with keepdim=True added, on the same input."""
    x = torch.arange(6.0).reshape(3, 2) if x is None else x
    results = []
    for keep in ("", ", keepdim=True"):
        scope: dict = {}
        code = "def f(torch, x, y):\n" + textwrap.indent(textwrap.dedent(body).replace("dim=0)", f"dim=0{keep})"),
                                                        "    ")
        exec(code, scope)
        results.append(scope["f"](torch, x, torch.ones(x.shape[1])))
    return tuple(results)


PRUNED = [
    "return x.sum(dim=0).view(-1)\n",
    "return x.sum(dim=0).flatten()\n",
    "return x.sum(dim=0).max()\n",
    "return float(x.sum(dim=0).sum())\n",
    "m = x.max(dim=0)\n_, best = x[0].max(dim=0)\nreturn best.item()\n",
    "total = x.sum(dim=0)\nout = total.reshape(2)\nreturn out\n",
]
KEPT = [
    "return x.sum(dim=0)\n",                          # the shape itself is returned
    "return x.sum(dim=0) + y\n",                      # broadcasting sees the axis
    "total = x.sum(dim=0)\nreturn total.item() if y.sum() else total\n",  # one read sees the shape
    "total = x.sum(dim=0)\nreturn total.view(total.shape[0], -1)\n",      # the view's size reads the shape
    "best = x.sum(dim=0)\nreturn [best.item(), best]\n",                  # a list holding the tensor
    "return x.sum(dim=0).squeeze(0)\n",               # squeezes a different axis without keepdim
]


@pytest.mark.parametrize("body", PRUNED)
def test_a_keepdim_nobody_can_see_is_pruned(body):
    assert keepdim_mutants(body) == []
    plain, kept = both_ways(body)
    assert torch.equal(torch.as_tensor(plain), torch.as_tensor(kept))


def test_only_the_observable_one_of_two_reductions_is_kept():
    # the first max's result is returned as it is; only the second, read through .item(), is pruned
    (left,) = keepdim_mutants("m = x.max(dim=0)\n_, best = x[0].max(dim=0)\nreturn best.item(), m\n")
    assert left == "x.max(dim=0, keepdim=True)"


@pytest.mark.parametrize("body", KEPT)
def test_a_keepdim_a_test_could_see_is_kept(body):
    assert len(keepdim_mutants(body)) == 1


def test_the_kept_cases_really_differ():
    for body in KEPT[:2] + KEPT[5:]:
        plain, kept = both_ways(body, torch.arange(3.0).reshape(3, 1))
        assert plain.shape != kept.shape
