"""Rules that keep equivalent, duplicate and noisy mutants out of a run.

Three kinds of rule:

* ML-managed arguments: an axis, ``keepdim``, ``reduction``, a dtype, a seed, a hyperparameter or
  a DataLoader flag is mutated by the ML operator that knows its valid values, so mutmut's generic
  mutations of the same literal (``dim=-1`` -> ``dim=+1``, the positive twin; ``'mean'`` ->
  ``'XXmeanXX'``; ``lr=0.1`` -> ``lr=1.1``) are dropped there.
* Certainly-equivalent mutants: no change at all, a keyword removed that was set to the callee's
  default (``audit.mutate.torch_defaults``), ``transpose(a, b)`` -> ``transpose(b, a)``, a
  ``keepdim`` change whose result no later code can see, a ``non_blocking`` flag changed or dropped
  (``audit.mutate.unobservable``).
* Noise (switchable with ``[tool.audit.mutate] noisy = true``): mutmut's case/XX mutation of
  enum-like strings (``mode='bilinear'``) and its ``None`` injection into arguments and assignments.
"""

from __future__ import annotations

import re

import libcst as cst

from audit.mutate import operators as ops
from audit.mutate.torch_defaults import default_of
from audit.mutate.unobservable import Parent, unobservable_keepdim, unobservable_transfer_hint

MANAGED_KEYWORDS = {"dim", "axis", "keepdim", "keepdims", "reduction", "dtype", "seed", "random_state",
                    "shuffle", "drop_last", "requires_grad", *ops.HYPERPARAMS}
ENUM_LIKE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def managed_nodes(node: cst.CSTNode) -> list[cst.CSTNode]:
    """Nodes under *node* whose generic (mutmut) mutations an ML operator replaces."""
    values: list[cst.CSTNode] = []
    if isinstance(node, cst.Call):
        for arg in node.args:
            if arg.keyword is not None and arg.keyword.value in MANAGED_KEYWORDS:
                values.append(arg.value)
        for found in (ops.dim_argument(node),):
            if found:
                values.append(found[1].value)
        for i in ops.axes_arguments(node) or []:
            values.append(node.args[i].value)
        if ops.is_seed_call(node) or ops.callee_name(node) in ops.RNG_CONSTRUCTORS:
            values.extend(a.value for a in node.args)
    elif isinstance(node, cst.Param) and node.default is not None:
        if node.name.value in {"reduction", "seed", "shuffle", "drop_last", *ops.HYPERPARAMS}:
            values.append(node.default)
    elif isinstance(node, cst.Assign) and len(node.targets) == 1:
        target = node.targets[0].target
        name = target.value if isinstance(target, cst.Name) else (
            target.attr.value if isinstance(target, cst.Attribute) else None)
        if name in ops.HYPERPARAMS or name == "requires_grad":
            values.append(node.value)
    out = []
    for value in values:
        out.extend(ops._walk(value))
    return out


def is_noop(original: cst.CSTNode, mutated) -> bool:
    if isinstance(mutated, cst.FlattenSentinel):
        return False
    return _code(original) == _code(mutated)


def code_of(node) -> str:
    """Source text of a replacement node (or of the statements a FlattenSentinel stands for)."""
    if isinstance(node, cst.FlattenSentinel):
        return "\n".join(_code(n) for n in node.nodes)
    return _code(node)


def _code(node) -> str:
    try:
        return cst.Module([]).code_for_node(node)
    except Exception:  # pragma: no cover - a node kind that renders only in context
        return repr(node)


def removes_default_keyword(original: cst.CSTNode, mutated: cst.CSTNode) -> bool:
    """mutmut's argument removal dropping ``keepdim=False`` and the like: the same call.

    The default is the callee's (``nn.Parameter``'s ``requires_grad`` is True, a factory's False).
    """
    if not (isinstance(original, cst.Call) and isinstance(mutated, cst.Call)):
        return False
    if len(mutated.args) != len(original.args) - 1:
        return False
    kept = {id(a) for a in mutated.args}
    removed = [a for a in original.args if id(a) not in kept]
    if len(removed) != 1 or removed[0].keyword is None:
        return False
    key, value = removed[0].keyword.value, removed[0].value
    default = default_of(ops.callee_name(original), key)
    if default is None:
        return False
    literal = ops.string_value(value)
    return (literal if literal is not None else _code(value)) == default


def is_transpose_swap(original: cst.CSTNode, mutated: cst.CSTNode) -> bool:
    if not (isinstance(original, cst.Call) and isinstance(mutated, cst.Call)):
        return False
    if ops.callee_name(original) not in ("transpose", "swapaxes", "swapdims"):
        return False
    idx = ops.axes_arguments(original) or []
    if len(idx) != 2 or len(mutated.args) != len(original.args):
        return False
    a, b = idx
    return (_code(mutated.args[a].value) == _code(original.args[b].value)
            and _code(mutated.args[b].value) == _code(original.args[a].value))


def is_noisy(operator: str, original: cst.CSTNode, mutated: cst.CSTNode, in_call_argument: bool) -> bool:
    """mutmut mutations that are mostly noise on ML code."""
    if operator == "mutmut_string":
        value = ops.string_value(original)
        return in_call_argument and value is not None and bool(ENUM_LIKE.match(value))
    if operator == "mutmut_arg_removal" and isinstance(mutated, cst.Call):
        return len(mutated.args) == len(original.args)  # same arity: an argument replaced by None
    if operator == "mutmut_assignment":
        return True  # a = b -> a = None
    return False


def is_equivalent(operator: str, original: cst.CSTNode, mutated, parent: Parent | None = None) -> bool:
    """Certainly equivalent; with *parent* (the tree's parent links) also by where the value goes."""
    return (is_noop(original, mutated) or removes_default_keyword(original, mutated)
            or is_transpose_swap(original, mutated)
            or (parent is not None and (unobservable_keepdim(original, mutated, parent)
                                        or unobservable_transfer_hint(original, mutated, parent))))
