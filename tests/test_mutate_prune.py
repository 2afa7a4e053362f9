"""Certainly-equivalent pruning knows each callee's defaults, not one default per keyword name."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.utils.data

from audit.mutate import registry
from audit.mutate.bridge import generate
from audit.mutate.torch_defaults import DEFAULTS, default_of

# the default differs from the table's text but means the same: DataLoader's shuffle=None is no shuffle
SAME_MEANING = {("DataLoader", "shuffle"): ("None", "False")}


def removals(call: str) -> list[str]:
    source = f"def f(nn, torch, w, x):\n    return {call}\n"
    _, records = generate("mod.py", source, registry.select("mutmut_arg_removal"))
    return [r["replacement"].replace(", )", ")") for r in records]


def test_removing_requires_grad_false_from_a_parameter_is_a_real_mutant():
    # nn.Parameter's requires_grad defaults to True: without the keyword the weight trains
    assert "nn.Parameter(w)" in removals("nn.Parameter(w, requires_grad=False)")


def test_removing_requires_grad_false_from_a_factory_is_pruned():
    assert "torch.zeros(2)" not in removals("torch.zeros(2, requires_grad=False)")
    assert "torch.zeros(requires_grad=False)" in removals("torch.zeros(2, requires_grad=False)")


def test_a_keyword_of_an_unknown_callee_is_never_taken_for_a_default():
    assert "make_layer(x)" in removals("make_layer(x, bias=True)")
    assert "nn.Linear(x)" not in removals("nn.Linear(x, bias=True)")


def test_a_value_other_than_the_default_is_kept():
    assert "nn.Linear(x)" in removals("nn.Linear(x, bias=False)")
    assert default_of("Parameter", "requires_grad") == "True" and default_of("zeros", "requires_grad") == "False"
    assert default_of(None, "bias") is None and default_of("make_layer", "bias") is None


def _torch_callable(callee: str):
    for namespace in (torch.nn, torch.nn.functional, torch.utils.data, torch.nn.parameter):
        if hasattr(namespace, callee):
            return getattr(namespace, callee)
    return None


def test_the_table_agrees_with_torch_signatures_wherever_torch_has_one():
    checked = 0
    for callee, defaults in DEFAULTS.items():
        obj = _torch_callable(callee)
        if obj is None:
            continue  # a builtin method such as Tensor.sum: no Python signature to read
        try:
            signature = inspect.signature(obj.__init__ if isinstance(obj, type) else obj)
        except (TypeError, ValueError):
            continue
        for keyword, text in defaults.items():
            param = signature.parameters.get(keyword)
            if param is None:
                continue
            actual = param.default if isinstance(param.default, str) else repr(param.default)
            assert actual in SAME_MEANING.get((callee, keyword), (text,)), (callee, keyword, actual, text)
            checked += 1
    assert checked >= 60  # most of the table is checked, Parameter's requires_grad among it


@pytest.mark.parametrize("callee", ["sum", "mean", "amax"])
def test_reduction_keepdim_default_matches_behaviour(callee):
    x = torch.arange(6.0).reshape(2, 3)
    assert default_of(callee, "keepdim") == "False"
    assert torch.equal(getattr(x, callee)(1), getattr(x, callee)(1, keepdim=False))
