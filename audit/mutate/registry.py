"""Every mutation operator a run can use: the built-in ML ones, mutmut's, and third-party ones.

A package adds operators the way coverage.py and pytest plugins are added: an entry point in
the ``ml_audit.operators`` group, named after the operator, that loads an object with ``name``,
``node_type`` (a libcst node class or a tuple of them), ``mutate`` (node -> replacement nodes),
``bug``, ``example``, ``killer`` and optionally ``ml`` (default True)::

    [project.entry-points."ml_audit.operators"]
    drop_clip_grad = "my_ops:drop_clip_grad"

ml-audit's own ML operators are declared the same way in its pyproject.toml.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import metadata

from audit.errors import AuditError
from audit.mutate.bridge import mutmut_operators
from audit.mutate.catalog import ENTRY_POINT_GROUP
from audit.mutate.operators import ML_OPERATORS, Operator

REQUIRED = ("name", "node_type", "mutate", "bug", "example", "killer")
GROUPS = ("ml", "mutmut", "all")


def _origin(entry: metadata.EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    where = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"entry point {entry.name!r} = {entry.value!r} (group {ENTRY_POINT_GROUP}, from {where})"


def _is_node_type(value) -> bool:
    types = value if isinstance(value, tuple) else (value,)
    return bool(types) and all(isinstance(t, type) for t in types)


def _from_entry_point(entry: metadata.EntryPoint) -> Operator:
    try:
        obj = entry.load()
    except Exception as exc:
        raise AuditError(f"mutation operator {_origin(entry)} cannot be loaded: "
                         f"{type(exc).__name__}: {exc}") from None
    if isinstance(obj, Operator):
        found = obj
    else:
        missing = [field for field in REQUIRED if not hasattr(obj, field)]
        if missing:
            raise AuditError(f"mutation operator {_origin(entry)} has no {', '.join(missing)}; "
                             f"an operator needs {', '.join(REQUIRED)}")
        found = Operator(str(obj.name), obj.node_type, obj.mutate, str(obj.bug), str(obj.example),
                         str(obj.killer), bool(getattr(obj, "ml", True)))
    if found.name != entry.name:
        raise AuditError(f"mutation operator {_origin(entry)} is named {found.name!r}: "
                         f"the entry point must carry the operator's name")
    if not _is_node_type(found.node_type) or not callable(found.mutate):
        raise AuditError(f"mutation operator {_origin(entry)}: node_type must be a libcst node class "
                         f"(or a tuple of them) and mutate a function of a node")
    return found


def load() -> dict[str, Operator]:
    """Read the operators afresh: built-in ML ones, then mutmut's, then every entry point."""
    found: dict[str, Operator] = {**ML_OPERATORS, **mutmut_operators()}
    origin: dict[str, str] = {name: "ml-audit" for name in found}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        op = _from_entry_point(entry)
        if ML_OPERATORS.get(op.name) is op:
            continue  # a built-in, registered by ml-audit's own distribution
        if op.name in found:
            raise AuditError(f"mutation operator {_origin(entry)} clashes with the operator of that name "
                             f"from {origin[op.name]}; rename one of them")
        found[op.name] = op
        origin[op.name] = _origin(entry)
    return found


@cache
def all_operators() -> dict[str, Operator]:
    """The operators of this process (entry points are read once)."""
    return load()


def select(spec: str, available: dict[str, Operator] | None = None) -> list[Operator]:
    """Operators for ``ml``, ``mutmut``, ``all`` or a comma-separated list of names and groups."""
    available = all_operators() if available is None else available
    chosen: set[str] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part == "ml":
            chosen.update(name for name, op in available.items() if op.ml)
        elif part == "mutmut":
            chosen.update(name for name, op in available.items() if not op.ml)
        elif part == "all":
            chosen.update(available)
        elif part in available:
            chosen.add(part)
        else:
            close = difflib.get_close_matches(part, list(available), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise AuditError(f"unknown mutation operator {part!r}{hint}; "
                             f"use ml, mutmut, all or names from `audit mutate --list-operators`")
    if not chosen:
        raise AuditError("no mutation operator selected")
    return [op for name, op in available.items() if name in chosen]
