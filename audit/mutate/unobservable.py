"""Mutants whose change no later code can observe: equivalent by where their value goes.

``keepdim`` only decides whether a reduction keeps its reduced axis as size 1; the elements and
their order are the same. A result that then only reaches ``.item()``, ``float()``, a full
reduction, ``.view``/``.reshape``/``.flatten`` or an argument-less ``.squeeze()`` is the same
value either way, so such a mutant survives every possible test (the CRF and LR-finder survivors
that first showed it: ``score.max(dim=0)`` whose index is only read through ``.item()``).

The rule follows the value through one local name as well (``_, best = x.max(dim=0)`` then only
``best.item()``): every read of that name in the enclosing function must be such a use, which is
conservative (a read of a later, re-bound value must be one too).

``non_blocking`` only says whether a host-to-device copy may overlap with other work; the values
copied are the same on every device. A mutant that only flips, drops or re-defaults an argument
or parameter whose name says ``non_blocking`` (``non_blocking_transfer=True`` in the LR finder,
passed down to ``.to(device, non_blocking=...)``) is equivalent too.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import libcst as cst

from audit.mutate import operators as ops

Parent = Callable[[cst.CSTNode], Optional[cst.CSTNode]]

KEEPDIM = ("keepdim", "keepdims")
# methods that give the same value whatever the shape of a tensor with the same elements
SHAPE_BLIND_NO_ARGS = {"item", "numel", "flatten", "ravel", "squeeze", "sum", "mean", "prod", "max", "min", "amax",
                       "amin", "all", "any", "norm", "std", "var", "nansum", "nanmean", "median", "argmax",
                       "argmin"}
SHAPE_BLIND_ANY_ARGS = {"view", "reshape"}
SCALAR_BUILTINS = {"float", "int", "bool"}


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _without_keepdim(call: cst.Call) -> list[str]:
    return [_code(a.value) if a.keyword is None else f"{a.keyword.value}={_code(a.value)}"
            for a in call.args if a.keyword is None or a.keyword.value not in KEEPDIM]


def changes_only_keepdim(original: cst.CSTNode, mutated) -> bool:
    """The mutant differs from *original* in its ``keepdim`` argument only (flipped, added, dropped)."""
    if not (isinstance(original, cst.Call) and isinstance(mutated, cst.Call)):
        return False
    if ops.callee_name(original) not in ops.REDUCE_FUNCS or _code(original.func) != _code(mutated.func):
        return False
    return _without_keepdim(original) == _without_keepdim(mutated) and _code(original) != _code(mutated)


def _shape_blind_use(node: cst.CSTNode, parent: Parent, name: str | None = None) -> bool:
    """*node* (an expression) is used only by something that cannot see its shape."""
    up = parent(node)
    if isinstance(up, cst.Attribute) and up.value is node:
        call = parent(up)
        if not (isinstance(call, cst.Call) and call.func is up):
            return False
        method = up.attr.value
        if method in SHAPE_BLIND_NO_ARGS:
            return not call.args
        if method in SHAPE_BLIND_ANY_ARGS:
            return name is None or not any(isinstance(n, cst.Name) and n.value == name
                                           for a in call.args for n in ops._walk(a))
        return False
    if isinstance(up, cst.Arg) and up.keyword is None:
        call = parent(up)
        return (isinstance(call, cst.Call) and isinstance(call.func, cst.Name)
                and call.func.value in SCALAR_BUILTINS and len(call.args) == 1)
    return False


def _enclosing_function(node: cst.CSTNode, parent: Parent) -> cst.FunctionDef | None:
    up = parent(node)
    while up is not None and not isinstance(up, cst.FunctionDef):
        up = parent(up)
    return up


def _bound_names(target: cst.BaseAssignTargetExpression) -> list[str] | None:
    """The plain local names an assignment target binds, or None for anything else."""
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        names = []
        for element in target.elements:
            if isinstance(element, cst.StarredElement) or not isinstance(element.value, cst.Name):
                return None
            names.append(element.value.value)
        return names
    return None


def _is_store(node: cst.Name, parent: Parent) -> bool:
    """*node* is bound here (assignment, loop or ``with`` target), not read."""
    child, up = node, parent(node)
    while isinstance(up, (cst.Element, cst.StarredElement, cst.Tuple, cst.List)):
        child, up = up, parent(up)
    if isinstance(up, cst.AssignTarget) or (isinstance(up, cst.AnnAssign) and up.target is child):
        return True
    if isinstance(up, (cst.For, cst.CompFor)) and up.target is child:
        return True
    return isinstance(up, cst.AsName) and up.name is child


def _loads(function: cst.FunctionDef, name: str, parent: Parent) -> Iterator[cst.Name]:
    """Every read of the variable *name* in *function* (nested scopes included: conservative)."""
    for node in ops._walk(function.body):
        if not (isinstance(node, cst.Name) and node.value == name):
            continue
        up = parent(node)
        if (isinstance(up, cst.Attribute) and up.attr is node) or (isinstance(up, cst.Arg) and up.keyword is node):
            continue  # an attribute or keyword spelled the same, not the variable
        if not _is_store(node, parent):
            yield node


def unobservable_keepdim(original: cst.CSTNode, mutated, parent: Parent) -> bool:
    """A keepdim mutant of a reduction whose result only ever reaches shape-blind uses."""
    if not changes_only_keepdim(original, mutated):
        return False
    if _shape_blind_use(original, parent):
        return True
    up = parent(original)
    if not (isinstance(up, cst.Assign) and up.value is original and len(up.targets) == 1):
        return False
    names = _bound_names(up.targets[0].target)
    function = _enclosing_function(up, parent)
    if not names or function is None:
        return False
    return all(_shape_blind_use(load, parent, name) for name in names for load in _loads(function, name, parent))


def _is_transfer_hint(name: str | None) -> bool:
    return bool(name) and "non_blocking" in name


def _args_without_hints(call: cst.Call) -> list[str]:
    return [_code(a.value) if a.keyword is None else f"{a.keyword.value}={_code(a.value)}"
            for a in call.args if a.keyword is None or not _is_transfer_hint(a.keyword.value)]


def unobservable_transfer_hint(original: cst.CSTNode, mutated, parent: Parent) -> bool:
    """A mutant that only changes a ``non_blocking`` argument, or the default of such a parameter."""
    if isinstance(original, cst.Call) and isinstance(mutated, cst.Call):
        return (_code(original.func) == _code(mutated.func) and _code(original) != _code(mutated)
                and _args_without_hints(original) == _args_without_hints(mutated))
    up = parent(original)
    return isinstance(up, cst.Param) and up.default is original and _is_transfer_hint(up.name.value)
