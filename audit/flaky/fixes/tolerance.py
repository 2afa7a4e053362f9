"""An exact float comparison against a golden value that moves with the thread count becomes
``torch.testing.assert_close(a, b, rtol=0, atol=TOL)``.

TOL is ten times the largest deviation the failures showed, rounded up to a power of ten, and at
least 1e-12: wide enough for every thread count, narrow enough to catch a real change. The
comparison rewritten is the one the failures point at (the line of the failing assert); a test
with one exact comparison needs no pointer.
"""

from __future__ import annotations

import re
from pathlib import Path

import libcst as cst

from audit.flaky.attribution.causes import deviation
from audit.flaky.fixes.source import Patch, dotted, ensure_import, function_named, positions, read, test_location
from audit.flaky.hints import tolerance_for

KIND = "tolerance"
FLOOR = 1e-12


def tolerance(dev: float) -> float:
    """Ten times *dev*, rounded up to a power of ten (as the hint says), at least FLOOR."""
    return max(FLOOR, tolerance_for(dev))


def operands(test: cst.BaseExpression) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """(a, b) of ``a == b``, ``torch.equal(a, b)`` or ``(a == b).all()``; None for anything else."""
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1 \
            and isinstance(test.comparisons[0].operator, cst.Equal):
        right = test.comparisons[0].comparator
        if "approx" in cst.Module([]).code_for_node(right):
            return None
        return test.left, right
    if isinstance(test, cst.Call) and dotted(test.func) == "torch.equal" and len(test.args) == 2 \
            and not any(a.keyword or a.star for a in test.args):
        return test.args[0].value, test.args[1].value
    if isinstance(test, cst.Call) and isinstance(test.func, cst.Attribute) and test.func.attr.value == "all" \
            and not test.args:
        inner = test.func.value
        if isinstance(inner, cst.Comparison) or (inner.lpar and isinstance(inner, cst.Comparison)):
            return operands(inner.with_changes(lpar=[], rpar=[]))
    return None


def close_asserts(text: str, function: str, tol: float, line: int | None = None) -> str:
    """*text* with the exact comparisons asserted in *function* (the one on *line* when given and
    found there) rewritten to ``torch.testing.assert_close(..., rtol=0, atol=tol)``."""
    module, spans = positions(cst.parse_module(text))
    scope = function_named(module, function)
    if scope is None:
        return text
    found = []

    class Find(cst.CSTVisitor):
        def visit_Assert(self, node):
            if node.msg is None and operands(node.test) is not None:
                found.append(node)

    scope.visit(Find())
    if line is not None:
        at = [n for n in found if spans[n][0] <= line <= spans[n][1]]
        found = at or (found if len(found) == 1 else [])
    elif len(found) > 1:
        found = []
    if not found:
        return text

    class Close(cst.CSTTransformer):
        def leave_Assert(self, original, updated):
            if original not in found:
                return updated
            a, b = operands(original.test)
            code = cst.Module([]).code_for_node
            call = f"torch.testing.assert_close({code(a)}, {code(b)}, rtol=0, atol={tol:g})"
            return cst.Expr(cst.parse_expression(call), semicolon=updated.semicolon)

    return ensure_import(module.visit(Close()), "torch").code


def failing_line(digests: list[str], path: str) -> int | None:
    """The line of *path* the failures were raised on, from their digests (``... (test_x.py:17)``)."""
    name = Path(path).name
    for text in digests:
        m = re.search(rf"\({re.escape(name)}:(\d+)\)\s*$", text)
        if m:
            return int(m.group(1))
    return None


def propose(root: Path, cause, nodeid: str, digests: list[str]) -> Patch | None:
    """The patch widening the test's failing exact comparison to the measured deviation; None when
    the failures showed no deviation or no such comparison is found."""
    dev = deviation(digests)
    if dev is None:
        return None
    tol = tolerance(dev)
    rel, function = test_location(nodeid)
    text = read(root, rel)
    if text is None:
        return None
    patch = Patch(KIND, f"atol={tol:g}: ten times the largest deviation seen, {dev:.3g}")
    patch.edit(rel, text, close_asserts(text, function, tol, failing_line(digests, rel)))
    return patch or None
