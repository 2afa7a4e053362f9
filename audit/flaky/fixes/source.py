"""The libcst pieces every fix shares: finding a test's function, a call's name, an import, and
writing the change as a unified diff that ``patch -p1`` applies from the project root.

Edits go through libcst so that everything the fix does not touch keeps its formatting.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider


def dotted(node: cst.BaseExpression) -> str:
    """``torch.utils.data.DataLoader`` for an attribute chain, ``x.new_empty`` for a method call on
    a name, "" for anything else (a call on a call, a subscript)."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else ""
    return ""


def last_name(call: cst.Call) -> str:
    """The called name without its qualifier: ``DataLoader`` for ``data.DataLoader(...)``."""
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    return func.value if isinstance(func, cst.Name) else ""


def keyword(call: cst.Call, name: str) -> cst.Arg | None:
    return next((a for a in call.args if a.keyword is not None and a.keyword.value == name), None)


def add_keyword(call: cst.Call, name: str, value: str) -> cst.Call:
    """*call* with ``name=value`` appended, commas kept as the call had them."""
    arg = cst.Arg(keyword=cst.Name(name), value=cst.parse_expression(value),
                  equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                        whitespace_after=cst.SimpleWhitespace("")))
    args = list(call.args)
    if args and args[-1].star == "":
        last = args[-1]
        if isinstance(last.comma, cst.MaybeSentinel):
            args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        else:   # a trailing comma: the new argument goes after it, and gets one of its own
            arg = arg.with_changes(comma=last.comma.with_changes(whitespace_after=cst.SimpleWhitespace("")))
            after = last.comma.whitespace_after
            if isinstance(after, cst.SimpleWhitespace) and not after.value:
                after = cst.SimpleWhitespace(" ")
            args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=after))
    elif args:   # after *args or **kwargs a keyword still fits
        args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    return call.with_changes(args=[*args, arg])


def positions(module: cst.Module) -> tuple[cst.Module, dict]:
    """The module as libcst's metadata wrapper sees it, and each node's (first line, last line)."""
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    spans = {node: (pos.start.line, pos.end.line) for node, pos in wrapper.resolve(PositionProvider).items()}
    return wrapper.module, spans


def functions(module: cst.Module) -> list[tuple[str, cst.FunctionDef]]:
    """Every function in *module* with its qualified name (``Class.method``, ``outer.inner``)."""
    found = []

    class Visitor(cst.CSTVisitor):
        def __init__(self):
            self.stack = []

        def visit_ClassDef(self, node):
            self.stack.append(node.name.value)

        def leave_ClassDef(self, node):
            self.stack.pop()

        def visit_FunctionDef(self, node):
            self.stack.append(node.name.value)
            found.append((".".join(self.stack), node))

        def leave_FunctionDef(self, node):
            self.stack.pop()

    module.visit(Visitor())
    return found


def function_named(module: cst.Module, name: str) -> cst.FunctionDef | None:
    """The function whose qualified name is *name*, or whose own name is when that is unique."""
    found = functions(module)
    exact = [f for q, f in found if q == name]
    if exact:
        return exact[0]
    short = [f for q, f in found if q.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]]
    return short[0] if len(short) == 1 else None


def function_at(module: cst.Module, spans: dict, line: int) -> cst.FunctionDef | None:
    """The innermost function whose body holds *line*."""
    best = None
    for _, node in functions(module):
        first, last = spans.get(node, (0, -1))
        if first <= line <= last and (best is None or spans[best][0] <= first):
            best = node
    return best


def test_location(nodeid: str) -> tuple[str, str]:
    """(file, qualified function) of a pytest node id: ``tests/t.py::Cls::test_x[1]`` gives
    ``("tests/t.py", "Cls.test_x")``."""
    path, _, rest = nodeid.partition("::")
    return path, rest.split("[", 1)[0].replace("::", ".")


def imports_module(module: cst.Module, name: str) -> bool:
    """Whether *module* binds *name* with a top-level ``import name``."""
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Import) and any(
                        dotted(a.name) == name and a.asname is None for a in small.names):
                    return True
    return False


def ensure_import(module: cst.Module, name: str) -> cst.Module:
    """*module* with ``import name`` after its last top-level import (or its docstring) if missing."""
    if imports_module(module, name):
        return module
    body = list(module.body)
    at = 0
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.SimpleStatementLine) and any(
                isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body):
            at = i + 1
        elif i == 0 and isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Expr) \
                and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString)):
            at = 1
    line = cst.parse_statement(f"import {name}\n")
    if at and at == 1 and not any(isinstance(s, (cst.Import, cst.ImportFrom))
                                  for s in getattr(body[0], "body", ())):   # after a docstring: a blank line
        line = line.with_changes(leading_lines=[cst.EmptyLine()])
    return module.with_changes(body=[*body[:at], line, *body[at:]])


def read(root: Path, rel: str) -> str | None:
    """The text of project file *rel*, None when it is not a Python file inside *root*."""
    path = (root / rel).resolve()
    if path.suffix != ".py" or not path.is_file() or not path.is_relative_to(root.resolve()):
        return None
    return path.read_text()


def unified(rel: str, old: str, new: str) -> str:
    """The change as a unified diff with ``a/`` and ``b/`` paths relative to the project root."""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        f"a/{rel}", f"b/{rel}"))


class Patch:
    """The edits of one fix: project file -> (old text, new text), what they do, and the kind."""

    def __init__(self, kind: str, note: str = ""):
        self.kind = kind
        self.note = note
        self.files: dict[str, tuple[str, str]] = {}

    def edit(self, rel: str, old: str, new: str) -> None:
        if old != new:
            self.files[rel] = (self.files.get(rel, (old,))[0], new)

    def text(self, rel: str, root: Path) -> str | None:
        """The file as this patch has it so far (edited or read from *root*)."""
        return self.files[rel][1] if rel in self.files else read(root, rel)

    def diff(self) -> str:
        return "".join(unified(rel, old, new) for rel, (old, new) in sorted(self.files.items()))

    def __bool__(self) -> bool:
        return bool(self.files)
