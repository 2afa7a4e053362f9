"""A polluter that leaves an environment variable set has its ``os.environ[K] = V`` rewritten to
``monkeypatch.setenv(K, V)`` (``monkeypatch`` added to its parameters), so pytest undoes it after
the test. Where the assignment is not that plain statement in the polluter itself, an autouse
fixture in the polluter's module restores the variable after each of its tests.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst

from audit.flaky.fixes.source import Patch, dotted, ensure_import, function_named, test_location

KIND = "setenv"


def _environ_key(target: cst.BaseExpression) -> str | None:
    """K of an ``os.environ["K"]`` subscript (a string literal key), else None."""
    if not isinstance(target, cst.Subscript) or dotted(target.value) not in ("os.environ", "environ") \
            or len(target.slice) != 1 or not isinstance(target.slice[0].slice, cst.Index):
        return None
    key = target.slice[0].slice.value
    return key.evaluated_value if isinstance(key, cst.SimpleString) else None


def use_setenv(text: str, function: str, name: str) -> str:
    """*text* with *function*'s ``os.environ[name] = V`` statements as ``monkeypatch.setenv(name, V)``
    and ``monkeypatch`` among its parameters."""
    module = cst.parse_module(text)
    scope = function_named(module, function)
    if scope is None:
        return text

    class SetEnv(cst.CSTTransformer):
        def __init__(self):
            super().__init__()
            self.inside = False
            self.done = 0

        def visit_FunctionDef(self, node):
            if node is scope:
                self.inside = True

        def leave_FunctionDef(self, original, updated):
            if original is not scope:
                return updated
            self.inside = False
            params = updated.params
            if not self.done or any(p.name.value == "monkeypatch" for p in (*params.params, *params.kwonly_params)):
                return updated
            plain = list(params.params)
            if plain and isinstance(plain[-1].comma, cst.MaybeSentinel):
                plain[-1] = plain[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            return updated.with_changes(params=params.with_changes(params=[*plain, cst.Param(cst.Name("monkeypatch"))]))

        def leave_SimpleStatementLine(self, original, updated):
            if not self.inside or len(updated.body) != 1 or not isinstance(updated.body[0], cst.Assign):
                return updated
            assign = updated.body[0]
            if len(assign.targets) != 1 or _environ_key(assign.targets[0].target) != name:
                return updated
            self.done += 1
            code = cst.Module([]).code_for_node
            key, value = code(assign.targets[0].target.slice[0].slice.value), code(assign.value)
            return updated.with_changes(body=[cst.Expr(cst.parse_expression(f"monkeypatch.setenv({key}, {value})"))])

    return module.visit(SetEnv()).code


def restore_fixture(text: str, name: str) -> str:
    """*text* with an autouse fixture that puts os.environ[name] back after each test of the module."""
    module = ensure_import(ensure_import(cst.parse_module(text), "os"), "pytest")
    ident = "".join(c if c.isalnum() else "_" for c in name.lower())
    fixture = cst.parse_module(
        f"\n\n@pytest.fixture(autouse=True)\n"
        f"def _restore_{ident}_env():\n"
        f"    \"\"\"Put os.environ[{name!r}] back after each test: a test here sets it and leaves it behind.\"\"\"\n"
        f"    before = os.environ.get({name!r})\n"
        f"    yield\n"
        f"    if before is None:\n"
        f"        os.environ.pop({name!r}, None)\n"
        f"    else:\n"
        f"        os.environ[{name!r}] = before\n").body
    body = list(module.body)
    at = max((i + 1 for i, s in enumerate(body) if isinstance(s, cst.SimpleStatementLine)
              and any(isinstance(x, (cst.Import, cst.ImportFrom)) for x in s.body)), default=0)
    first = fixture[0].with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
    return module.with_changes(body=[*body[:at], first, *body[at:]]).code


def propose(root: Path, cause, nodeid: str) -> Patch | None:
    """The patch making the polluter undo the environment variables it leaves set."""
    names = [c.name for c in cause.state if c.kind == "env" and c.after is not None]
    if not names or not cause.polluter:
        return None
    patch = Patch(KIND)
    notes = []
    for name in dict.fromkeys(names):
        for polluter in cause.polluter.split(" + "):
            rel, function = test_location(polluter)
            text = patch.text(rel, root)
            if text is None:
                continue
            new = use_setenv(text, function, name)
            if new != text:
                patch.edit(rel, text, new)
                notes.append(f"os.environ[{name!r}] = ... -> monkeypatch.setenv in {function}")
                break
        else:
            rel, _ = test_location(cause.polluter.split(" + ")[0])
            text = patch.text(rel, root)
            if text is not None:
                patch.edit(rel, text, restore_fixture(text, name))
                notes.append(f"an autouse fixture in {rel} restores os.environ[{name!r}]")
    patch.note = "; ".join(notes)
    return patch or None
