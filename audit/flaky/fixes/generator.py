"""A DataLoader or random_split that draws its seed from the global torch RNG gets a seeded
generator of its own: ``generator=torch.Generator().manual_seed(0)``.

The draw site the trace names is where the loader was iterated (often the test) or where
random_split ran (often library code a fixture calls). The call to fix is the first found of:
a DataLoader/random_split call on the site's line; one in the function around it (the test or a
fixture it uses); a call there to a project function that takes ``generator=`` and passes it on;
the DataLoader/random_split inside such a project function.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst

from audit.flaky.fixes.source import (Patch, add_keyword, dotted, ensure_import, function_at, function_named,
                                      keyword, last_name, positions, read)

KIND = "generator"
DRAWERS = {"DataLoader", "random_split"}
SEEDED = "torch.Generator().manual_seed(0)"


def seed_calls(text: str, lines: range | None = None, function: str | None = None,
               names=frozenset(DRAWERS)) -> str:
    """*text* with ``generator=`` added to every call of *names* lacking one, those spanning a line
    in *lines* (or inside *function*, or anywhere), and ``import torch`` added where needed."""
    module, spans = positions(cst.parse_module(text))
    scope = function_named(module, function) if function else None
    if function and scope is None:
        return text
    targets = _targets(scope or module, spans, lines, names)
    if not targets:
        return text

    class Seed(cst.CSTTransformer):
        def leave_Call(self, original, updated):
            return add_keyword(updated, "generator", SEEDED) if original in targets else updated

    return ensure_import(module.visit(Seed()), "torch").code


def _targets(scope, spans, lines, names) -> set:
    found = set()

    class Find(cst.CSTVisitor):
        def visit_Call(self, node):
            first, last = spans.get(node, (0, -1))
            if last_name(node) in names and keyword(node, "generator") is None and not any(a.star for a in node.args) \
                    and (lines is None or any(first <= n <= last for n in lines)):
                found.add(node)

    scope.visit(Find())
    return found


def propose(root: Path, cause, nodeid: str) -> Patch | None:
    """The patch seeding the loader or split behind a torch cause, or None when none is found."""
    patch = Patch(KIND, f"pass generator={SEEDED}")
    for site in cause.sites:
        text = read(root, site.path)
        if text is None:
            continue
        new = seed_calls(text, range(site.line, site.line + 1))
        if new != text:
            patch.edit(site.path, text, new)
            return patch
    for rel, func in _scopes(root, cause, nodeid):
        text = patch.text(rel, root)
        new = seed_calls(text, function=func)
        if new != text:
            patch.edit(rel, text, new)
            return patch
        for callee_rel, callee, forwards in _project_callees(root, rel, text, func):
            if forwards:   # the helper takes generator= and hands it on: the caller passes one
                new = seed_calls(text, function=func, names={callee})
                if new != text:
                    patch.edit(rel, text, new)
                    return patch
            else:
                callee_text = patch.text(callee_rel, root)
                new = seed_calls(callee_text, function=callee)
                if new != callee_text:
                    patch.edit(callee_rel, callee_text, new)
                    return patch
    return None


def _scopes(root: Path, cause, nodeid: str) -> list[tuple[str, str]]:
    """(file, function) of the functions around the draw sites, then of the fixtures on the call
    path (in the test's module or a conftest.py above it)."""
    out = []
    for site in cause.sites:
        text = read(root, site.path)
        if text is None:
            continue
        module, spans = positions(cst.parse_module(text))
        func = function_at(module, spans, site.line)
        if func is not None:
            out.append((site.path, func.name.value))
    test_file = nodeid.partition("::")[0]
    for step in cause.call_path:
        if step.startswith("fixture:"):
            name = step.split(":", 1)[1]
            for rel in _fixture_files(root, test_file):
                text = read(root, rel)
                if text is not None and function_named(cst.parse_module(text), name) is not None:
                    out.append((rel, name))
                    break
    return list(dict.fromkeys(out))


def _fixture_files(root: Path, test_file: str) -> list[str]:
    parts = Path(test_file).parts[:-1]
    confs = [str(Path(*parts[:i], "conftest.py")) for i in range(len(parts), -1, -1)]
    return [test_file, *confs]


def _project_callees(root: Path, rel: str, text: str, function: str) -> list[tuple[str, str, bool]]:
    """(file, name, whether it forwards a ``generator`` parameter to DataLoader/random_split) of the
    project functions *function* calls that call DataLoader or random_split themselves."""
    module = cst.parse_module(text)
    scope = function_named(module, function)
    if scope is None:
        return []
    called = []

    class Calls(cst.CSTVisitor):
        def visit_Call(self, node):
            if isinstance(node.func, cst.Name) and keyword(node, "generator") is None:
                called.append(node.func.value)

    scope.visit(Calls())
    out = []
    for name in dict.fromkeys(called):
        where = _defined_in(root, rel, module, name)
        if where is None:
            continue
        callee_text = read(root, where)
        callee = function_named(cst.parse_module(callee_text), name) if callee_text else None
        if callee is None:
            continue
        params = [p.name.value for p in (*callee.params.posonly_params, *callee.params.params,
                                          *callee.params.kwonly_params)]
        drawers = []

        class Drawers(cst.CSTVisitor):
            def visit_Call(self, node):
                if last_name(node) in DRAWERS:
                    drawers.append(node)

        callee.visit(Drawers())
        if not drawers:
            continue
        forwards = "generator" in params and any(
            isinstance(getattr(keyword(d, "generator"), "value", None), cst.Name)
            and keyword(d, "generator").value.value == "generator" for d in drawers)
        out.append((where, name, forwards))
    return out


def _defined_in(root: Path, rel: str, module: cst.Module, name: str) -> str | None:
    """The project file defining *name* as *rel* sees it: *rel* itself, or the module a
    ``from pkg.mod import name`` names (a file under *root*)."""
    if function_named(module, name) is not None:
        return rel
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if not isinstance(small, cst.ImportFrom) or small.relative or isinstance(small.names, cst.ImportStar):
                continue
            if any(a.name.value == name and a.asname is None for a in small.names if isinstance(a.name, cst.Name)):
                base = Path(*dotted(small.module).split("."))
                for candidate in (base.with_suffix(".py"), base / "__init__.py",
                                  "src" / base.with_suffix(".py"), "src" / base / "__init__.py"):
                    if (root / candidate).is_file():
                        return str(candidate)
    return None
