"""Everything ml-audit takes from or changes inside mutmut 3.8.1 (exact pin, checked on import).

No other module imports mutmut's internals (the worker runs mutmut through ``install``). mutmut
has no plugin API, so this module replaces a few of its module-level functions:

* mutant generation: our operator list (ML operators + mutmut's, pruned), functions under
  grad-mode decorators such as ``@torch.no_grad()`` get mutants (mutmut skips every decorated
  function), and a sidecar ``<file>.audit.json`` records which operator made which mutant, where,
  and its diff (mutmut's ``.meta`` has only exit codes);
* the trampoline keeps grad-mode decorators off the trampoline itself and on each copy, so that
  a mutant which drops ``@torch.no_grad()`` really runs with autograd on;
* the test runner runs the covering tests in suite order and writes the test that killed a mutant.

It also offers mutmut's own operators under stable names and maps mutmut's verdicts to ours.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import cast

import libcst as cst
import libcst.matchers as m
import mutmut
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from audit.errors import AuditError
from audit.pytest_run import read_records

MUTMUT_VERSION = "3.8.1"  # the one release whose internals this module was written against


def check_mutmut_version(installed: str) -> None:
    """Refuse any mutmut but the pinned one: its internals move between releases."""
    if installed != MUTMUT_VERSION:
        raise AuditError(f"ml-audit needs mutmut {MUTMUT_VERSION} exactly (it patches mutmut's internals), "
                         f"but mutmut {installed} is installed; run: pip install mutmut=={MUTMUT_VERSION}")


check_mutmut_version(getattr(mutmut, "__version__", "(unknown version)"))

from mutmut.configuration import Config, ForkServerWarmup, ProcessIsolation  # noqa: E402
from mutmut.mutation import file_mutation  # noqa: E402
from mutmut.mutation import mutators as mutmut_mutators  # noqa: E402
from mutmut.mutation.file_mutation import (NEVER_MUTATE_FUNCTION_NAMES, MutatedFile, Mutation,  # noqa: E402
                                           MutationVisitor, OuterFunctionProvider, combine_mutations_to_source,
                                           deep_replace)
from mutmut.mutation.pragma_handling import get_ignored_lines  # noqa: E402
from mutmut.mutation.trampoline_templates import build_mutants_dict_and_name, mangle_function_name  # noqa: E402
from mutmut.runners.harness import PytestRunner  # noqa: E402
from mutmut.state import state  # noqa: E402
from mutmut.utils.format_utils import get_mutant_name  # noqa: E402

from audit.mutate import operators as ops  # noqa: E402
from audit.mutate import prune  # noqa: E402
from audit.mutate.catalog import GOLDEN  # noqa: E402

SIDECAR_SUFFIX = ".audit.json"
FORMAT = 2  # of the sidecar records: part of the cache fingerprint


def mutmut_operators() -> dict[str, ops.Operator]:
    """mutmut's operators as ``mutmut_<function>``, one per function with every node type it handles.

    mutmut lists ``(node type, function)`` pairs and registers one function for several node types
    (``operator_assignment`` for ``Assign`` and ``AnnAssign``): keyed by function, none is lost.
    """
    node_types: dict[object, list[type]] = {}
    for node_type, fn in mutmut_mutators.mutation_operators:
        node_types.setdefault(fn, []).append(node_type)
    found = {}
    for fn, types in node_types.items():
        name = "mutmut_" + fn.__name__.removeprefix("operator_")
        doc = (fn.__doc__ or "").strip().splitlines()
        found[name] = ops.Operator(name, types[0] if len(types) == 1 else tuple(types), fn,
                                   f"mutmut: {doc[0] if doc else name}", "see mutmut's documentation", GOLDEN,
                                   ml=False)
    return found


class Spec:
    """The worker's instructions (a JSON file written by the engine)."""

    def __init__(self, data: dict):
        self.operators: list[str] = data["operators"]
        self.noisy: bool = data["noisy"]
        self.allowed_lines: dict[str, list[int]] | None = data.get("allowed_lines")
        self.source_paths: list[str] = data["source_paths"]
        self.test_paths: list[str] = data["test_paths"]
        self.pytest_args: list[str] = data["pytest_args"]
        self.also_copy: list[str] = data["also_copy"]
        self.max_children: int = data["max_children"]
        self.timeout: float = data["timeout"]
        self.killers_dir: str = data["killers_dir"]
        self.results: str = data["results"]
        self.diagnostics: str = data.get("diagnostics", "")  # where a failing stats or clean run is described
        self.draws: str = data.get("draws", "")              # the stats run's plugin rows: which tests draw
        self.recheck_rounds: int = int(data.get("recheck_rounds", 0))  # other seeds a drawing test's kill is re-checked under
        self.baseline: str = data.get("baseline", "")  # the tests failing in the run on unmutated code
        # ``-m pytest ...`` that runs tests on the project itself, outside mutmut, to tell a failing
        # suite from tests that fail only as mutmut runs them
        self.check_args: list[str] = list(data.get("check_args", []))
        self.untrampolined: str = data.get("untrampolined", "")  # where the tests left out so are written
        self.left_out: list[str] = list(data.get("left_out", []))  # left out so by an earlier run
        self.names: list[str] = list(data.get("names", []))  # the mutants to check (a shard); empty: all

    @classmethod
    def default(cls) -> "Spec":
        return cls({"operators": ["all"], "noisy": False, "source_paths": ["."], "test_paths": [],
                    "pytest_args": [], "also_copy": [], "max_children": 1, "timeout": 30.0,
                    "killers_dir": "killers", "results": "results.json"})


SPEC: Spec | None = None
OPERATORS: list[ops.Operator] = []  # what the worker's spec selected


# --------------------------------------------------------------------------- generation

# operators whose bug is a kept autograd graph (see the catalog): meaningless under no_grad
GRAD_ONLY = {"drop_item", "drop_detach"}


class AuditVisitor(MutationVisitor):
    """mutmut's visitor with named operators, pruning, a line filter and grad-decorated functions."""

    METADATA_DEPENDENCIES = (*MutationVisitor.METADATA_DEPENDENCIES, ParentNodeProvider)

    def __init__(self, operators: list[ops.Operator], ignored_code, allowed_lines: set[int] | None, noisy: bool):
        super().__init__([(op.node_type, op) for op in operators], ignored_code, None)
        self._named = operators
        self._allowed = allowed_lines
        self._noisy = noisy
        self._ml_active = any(op.ml for op in operators)
        self._managed: set[int] = set()
        self._arguments: set[int] = set()
        self.site: dict[int, tuple] = {}  # id(mutation) -> (operator, line, column, end line, end column)
        self._seen: set[tuple[int, str]] = set()  # (node, replacement code): one mutant per distinct change
        self._grad_off: list[int] = []  # the no_grad blocks and functions being visited

    def on_visit(self, node: cst.CSTNode) -> bool:
        if (isinstance(node, cst.With) and any(ops.is_grad_off(item.item) for item in node.items)) or (
                isinstance(node, cst.FunctionDef) and any(ops.is_grad_off(d.decorator) for d in node.decorators)):
            self._grad_off.append(id(node))
        if isinstance(node, (cst.Call, cst.Param, cst.Assign)):
            if self._ml_active:
                self._managed.update(id(n) for n in prune.managed_nodes(node))
            if isinstance(node, cst.Call):
                self._arguments.update(id(a.value) for a in node.args)
            elif isinstance(node, cst.Param) and node.default is not None:
                self._arguments.add(id(node.default))
        return super().on_visit(node)

    def _parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.get_metadata(ParentNodeProvider, node, None)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        if self._grad_off and self._grad_off[-1] == id(original_node):
            self._grad_off.pop()
        super().on_leave(original_node)

    def _skip_node_and_children(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.FunctionDef) and node.decorators and all(
                ops.is_grad_decorator(d) or _is_static_or_class(d) for d in node.decorators) and any(
                ops.is_grad_decorator(d) for d in node.decorators):
            position = self.get_metadata(PositionProvider, node, None)
            if position and position.start.line in self._ignored_node_lines:
                self.ignored_functions.add(node.name.value)
                return True
            return node.name.value in NEVER_MUTATE_FUNCTION_NAMES or node in self._enum_creation_hooks
        return super()._skip_node_and_children(node)

    def _site_line(self, node: cst.CSTNode, mutated) -> tuple[int, int, int, int]:
        if isinstance(node, cst.FunctionDef) and isinstance(mutated, cst.FunctionDef):
            kept = {id(d) for d in mutated.decorators}
            for deco in node.decorators:
                if id(deco) not in kept:
                    node = deco
                    break
        position = self.get_metadata(PositionProvider, node, None)
        if position is None:
            return 0, 0, 0, 0
        return position.start.line, position.start.column, position.end.line, position.end.column

    def _create_mutations(self, node: cst.CSTNode) -> None:
        for op in self._named:
            if not isinstance(node, op.node_type):
                continue
            if not op.ml and id(node) in self._managed:
                continue  # an ML operator owns this literal
            if op.name in GRAD_ONLY and self._grad_off:
                continue  # under no_grad there is no graph to keep: the bug it models cannot happen
            for mutated in op(node):
                if self._removes_ignored_code_safe(node, mutated):
                    continue
                if prune.is_equivalent(op.name, node, mutated, self._parent):
                    continue
                if not op.ml and not self._noisy and prune.is_noisy(op.name, node, mutated,
                                                                     id(node) in self._arguments):
                    continue
                line, col, end_line, end_col = self._site_line(node, mutated)
                if self._allowed is not None and line not in self._allowed:
                    continue
                key = (id(node), prune.code_of(mutated))
                if key in self._seen:
                    continue  # another operator made the very same mutant
                self._seen.add(key)
                mutation = Mutation(original_node=node, mutated_node=mutated,
                                    contained_by_top_level_function=self.get_metadata(
                                        OuterFunctionProvider, node, None))
                if mutation.contained_by_top_level_function is None:
                    continue  # module level and class bodies: mutmut cannot switch these
                self.site[id(mutation)] = (op.name, line, col, end_line, end_col)
                self.mutations.append(mutation)

    def _removes_ignored_code_safe(self, node, mutated) -> bool:
        if isinstance(mutated, cst.FlattenSentinel):
            return False
        return self._removes_ignored_code(node, mutated)


def _is_static_or_class(decorator: cst.Decorator) -> bool:
    return isinstance(decorator.decorator, cst.Name) and decorator.decorator.value in ("staticmethod", "classmethod")


_ARRANGED: list[tuple[str, Mutation, cst.FunctionDef, str | None]] = []


def function_trampoline_arrangement(function: cst.FunctionDef, mutants, class_name: str | None):
    """mutmut's arrangement, with grad-mode decorators kept off the trampoline (see module doc)."""
    method_nodes = []
    mutant_names = []
    name = function.name.value
    mangled_name = mangle_function_name(name=name, class_name=class_name) + "__mutmut"
    mutants_dict_name = f"mutants_{mangled_name}"
    declaration = list(cst.parse_module(f"{mutants_dict_name}: MutantDict = {{}}  # type: ignore").body)

    outer = [d for d in function.decorators if not ops.is_grad_decorator(d)]
    decorator_args = [cst.Arg(cst.Name(mutants_dict_name))]
    if len(outer) == 1 and m.matches(outer[0].decorator, m.Name("classmethod")):
        decorator_args.append(cst.Arg(cst.Name("True"), keyword=cst.Name("is_classmethod")))
    trampoline = function.with_changes(decorators=[
        *outer, cst.Decorator(cst.Call(func=cst.Name("_mutmut_mutated"), args=decorator_args))])
    method_nodes.append(trampoline)
    method_nodes.append(function.with_changes(name=cst.Name(mangled_name + "_orig")))
    for i, mutant in enumerate(mutants):
        mutant_name = f"{mangled_name}_{i + 1}"
        mutant_names.append(mutant_name)
        if mutant.original_node is function:
            mutated = cast(cst.FunctionDef, mutant.mutated_node)
        else:
            mutated = cast(cst.FunctionDef, deep_replace(function, mutant.original_node, mutant.mutated_node))
        _ARRANGED.append((mutant_name, mutant, mutated, class_name))
        method_nodes.append(mutated.with_changes(name=cst.Name(mutant_name)))
    assignments = list(cst.parse_module(build_mutants_dict_and_name(
        mangled_name=mangled_name, mutants=mutant_names, mutants_dict_name=mutants_dict_name,
        class_name=class_name)).body)
    assignments[0] = assignments[0].with_changes(leading_lines=[cst.EmptyLine()])
    return declaration, method_nodes, assignments, mutant_names


def _function_diff(module: cst.Module, code: str, path: str, original: cst.FunctionDef,
                   mutated: cst.FunctionDef, indent: str) -> str:
    """A unified diff of the file *code* with one function mutated, so that ``patch -p1`` applies it.
    The function is rendered where it stands (*indent*: its class body's indentation), so a method
    keeps its indentation and multi-line strings stay as they are, and spliced into the file text."""
    old, new = (_code_at(module, node, indent) for node in (original, mutated.with_changes(name=original.name)))
    start = code.find(old)
    if start < 0 or code.find(old, start + 1) >= 0:  # not found once: render the whole file instead
        after = cast(cst.Module, module.deep_replace(original, mutated.with_changes(name=original.name))).code
    else:
        after = code[:start] + new + code[start + len(old):]
    lines = difflib.unified_diff(code.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}", n=1)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _code_at(module: cst.Module, node: cst.CSTNode, indent: str) -> str:
    """*node*'s source as it reads at indentation *indent* in *module*."""
    from libcst._nodes.internal import CodegenState

    state = CodegenState(default_indent=module.default_indent, default_newline=module.default_newline,
                         indent_tokens=[indent] if indent else [])
    node._codegen(state)
    return "".join(state.tokens)


def _class_indents(module: cst.Module) -> dict[str, str]:
    """The body indentation of each top-level class (mutmut mutates their methods)."""
    return {stmt.name.value: stmt.body.indent if stmt.body.indent is not None else module.default_indent
            for stmt in module.body if isinstance(stmt, cst.ClassDef) and isinstance(stmt.body, cst.IndentedBlock)}


def _replacement(module: cst.Module, node) -> str:
    if isinstance(node, cst.FlattenSentinel):
        return "".join(module.code_for_node(n) for n in node.nodes).strip()
    if isinstance(node, cst.FunctionDef):
        return ""  # a decorator removed
    return module.code_for_node(node).strip()


def generate(filename: str, code: str, operators: list[ops.Operator], allowed: set[int] | None = None,
             noisy: bool = False, excluded_lines=None) -> tuple[MutatedFile, list[dict]]:
    """The mutated file (trampolines) and one record per mutant: id, operator, line, function, diff."""
    from mutmut import configuration

    if configuration._config is None:  # used outside a worker (tests, tools)
        configuration._config = configure(Spec.default())
    file_mutation.function_trampoline_arrangement = function_trampoline_arrangement
    module = cst.parse_module(code)
    wrapper = MetadataWrapper(module)
    ignored = get_ignored_lines(filename, code, wrapper, excluded_lines)
    visitor = AuditVisitor(operators, ignored, allowed, noisy)
    module = wrapper.visit(visitor)
    # (the wrapper visited its own copy of the tree: `module` holds that copy's nodes)
    _ARRANGED.clear()
    mutated_file = combine_mutations_to_source(module, visitor.mutations, visitor.ignored_classes,
                                               visitor.ignored_functions)
    records = []
    text, indents = module.code, _class_indents(module)
    for mutant_name, mutation, mutated_function, class_name in _ARRANGED:
        operator, line, col, end_line, end_col = visitor.site[id(mutation)]
        function = mutation.contained_by_top_level_function
        qualname = f"{class_name}.{function.name.value}" if class_name else function.name.value
        records.append({
            "id": get_mutant_name(Path(filename), mutant_name),
            "operator": operator,
            "line": line,
            "column": col,
            "end_line": end_line,
            "end_column": end_col,
            "replacement": _replacement(module, mutation.mutated_node),
            "function": qualname,
            "diff": _function_diff(module, text, filename, function, mutated_function,
                                   indents.get(class_name, "") if class_name else ""),
        })
    _ARRANGED.clear()
    mutated_file = replace(mutated_file, hash_by_function_name=file_mutation._compute_mutated_function_hashes(
        code, module, visitor.mutations))
    return mutated_file, records


def mutate_file_contents(filename: str, code: str, covered_lines=None, coverage_excluded_lines=None) -> MutatedFile:
    """Replacement for mutmut's: our operators, and a sidecar record of every mutant."""
    assert SPEC is not None
    allowed = None
    if SPEC.allowed_lines is not None:
        allowed = set(SPEC.allowed_lines.get(Path(filename).as_posix(), []))
    mutated_file, records = generate(filename, code, OPERATORS, allowed, SPEC.noisy, coverage_excluded_lines)
    for record in records:  # a mutant on a line no test executes has no coverage, whatever tests reach its function
        record["covered"] = covered_lines is None or record["line"] in covered_lines
    sidecar = Path("mutants") / (filename + SIDECAR_SUFFIX)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps({"path": Path(filename).as_posix(), "mutants": records}, indent=1))
    return mutated_file


# --------------------------------------------------------------------------- running

HARNESS_SUFFIX = ".harness"  # beside a mutant's killers file: why its run gave no verdict
SEEDS_SUFFIX = ".seeds"      # beside a mutant's killers file: its kill re-checked under other seeds
HARNESS_ERROR = 39  # our exit code for a mutant's run that ended without a test verdict (mutmut knows no 39)
_PYTEST_EXITS = {2: "interrupted or collection error", 3: "pytest internal error", 4: "pytest usage error",
                 5: "no tests collected"}


class _Recorder:
    """A pytest plugin noting what a run really did: failed tests (with their report), collection
    errors, and whether it was stopped by Ctrl-C."""

    def __init__(self):
        self.failed: dict[str, str] = {}
        self.collect_errors: dict[str, str] = {}
        self.interrupted = False

    def pytest_runtest_logreport(self, report):
        if report.failed and report.nodeid not in self.failed:
            captured = "\n".join(f"--- {name} ---\n{text}" for name, text in report.sections if text.strip())
            self.failed[report.nodeid] = "\n".join(filter(None, [report.longreprtext, captured]))

    def pytest_collectreport(self, report):
        if report.failed:
            self.collect_errors[report.nodeid or "."] = report.longreprtext

    def pytest_keyboard_interrupt(self, excinfo):
        self.interrupted = True


def left_out() -> set[str]:
    """Tests that fail only as mutmut runs them: known from an earlier run, or found by this run's
    coverage or stats pass (in another forked child, hence the file)."""
    if SPEC is None:
        return set()
    found = Path(SPEC.untrampolined) if SPEC.untrampolined else None
    return {*SPEC.left_out, *(json.loads(found.read_text()) if found is not None and found.exists() else ())}


class _LeaveOut:
    """A pytest plugin deselecting the tests found failing only as mutmut runs them (pytest's own
    ``--deselect`` would change mutmut's config and so throw its cached verdicts away)."""

    def __init__(self, nodeids):
        self.nodeids = frozenset(nodeids)

    def pytest_collection_modifyitems(self, config, items):
        out = [item for item in items if item.nodeid in self.nodeids]
        if out:
            items[:] = [item for item in items if item.nodeid not in self.nodeids]
            config.hook.pytest_deselected(items=out)


def verdict_code(code: int, recorder: _Recorder) -> int:
    """The exit code mutmut is told for one mutant: a kill only when a test failed.

    pytest's internal errors (3), usage errors (4), collection errors and a run interrupted other
    than by Ctrl-C (2), or an exit 1 with no failed test, say nothing about the mutant."""
    if code == 1 and recorder.failed and not recorder.collect_errors:
        return 1
    if code == 2 and recorder.interrupted:
        return 2   # Ctrl-C: mutmut's "check was interrupted by user"
    if code in (0, 5):
        return code
    return HARNESS_ERROR


def harness_reason(code: int, recorder: _Recorder) -> str:
    """Why a run gave no verdict: pytest's exit, then the collection errors it reported."""
    head = f"pytest exit {code}" + (f" ({_PYTEST_EXITS[code]})" if code in _PYTEST_EXITS else "")
    details = [f"collection error in {where}:\n{text}" for where, text in recorder.collect_errors.items()]
    return "\n".join([head, *details]).strip()


class AuditPytestRunner(PytestRunner):
    """Runs covering tests in suite order, records the test that killed each mutant, scores a kill only
    for a failed test (see :func:`verdict_code`), and keeps the pytest reports of a failing stats or
    clean run for the engine (``SPEC.diagnostics``), since mutmut's forked children lose that output."""

    def _pytest_args_regular_run(self, tests):
        order = {name: i for i, name in enumerate(state().duration_by_test)}
        tests = sorted(tests, key=lambda t: (order.get(t, len(order)), t))
        args = super()._pytest_args_regular_run(tests)
        if _phase() in ("coverage", "stats"):
            args.remove("-x")  # find every failing test, not just the first
        return args

    def execute_pytest(self, params, **kwargs):
        import sys

        from mutmut.runners.harness import BadTestExecutionCommandsException

        if SYS_PATH:  # as the worker had it before any test module ran (see mutant_runner)
            sys.path[:] = SYS_PATH
        recorder = _Recorder()
        kwargs["plugins"] = [*kwargs.get("plugins", ()), recorder, _LeaveOut(left_out())]
        if _phase() == "stats" and SPEC is not None and SPEC.draws:
            params = [*params, f"--audit-rows={SPEC.draws}"]  # the plugin notes which tests draw randomness
        self.recorder = recorder
        try:
            code = super().execute_pytest(params, **kwargs)
        except BadTestExecutionCommandsException:
            code = 4
        if code != 0 and _phase() in ("stats", "clean"):
            _write_diagnostics(_phase(), code, recorder)
        return code

    def collect_main_test_coverage(self, cov) -> int:
        """mutmut's line-coverage run, the whole suite on the unmutated code before any trampoline:
        the baseline a failing suite is told apart from tests that fail only under mutmut by."""
        code = super().collect_main_test_coverage(cov)
        if SPEC is not None and SPEC.baseline:
            from audit.atomic import write_json

            write_json(SPEC.baseline, {"exit_code": code, "failed": self.recorder.failed})
        return code

    def run_stats(self, *, tests) -> int:
        """mutmut's stats run, where a test that fails although it passed on the unmutated code
        fails only under the trampolines (``torch.jit.script`` of trampolined code,
        ``inspect.getsource``, ...): it is left out of the run and noted."""
        code = super().run_stats(tests=tests)
        failed = dict(self.recorder.failed)
        if code != 1 or not failed or self.recorder.collect_errors or not _baseline_passed(failed):
            return code
        from mutmut.state import state

        for covering in state().tests_by_mangled_function_name.values():
            covering.difference_update(failed)
        for nodeid in failed:
            state().duration_by_test.pop(nodeid, None)
        if SPEC.diagnostics:
            Path(SPEC.diagnostics).unlink(missing_ok=True)
        leave_out(failed)
        return 0

    def run_tests(self, *, mutant_name, tests) -> int:
        if not mutant_name:
            return super().run_tests(mutant_name=mutant_name, tests=tests)
        killers = Path(SPEC.killers_dir, mutant_name) if SPEC is not None else None
        if killers is not None:
            killers.unlink(missing_ok=True)  # a verdict from an earlier version of this mutant
            for suffix in (HARNESS_SUFFIX, SEEDS_SUFFIX):
                Path(str(killers) + suffix).unlink(missing_ok=True)
        if mutant_name in _uncovered():
            return NO_TESTS
        code = super().run_tests(mutant_name=mutant_name, tests=tests)
        if code == 4 and forget_test_modules():  # tests not found: collected afresh, they may be
            self.refreshed = True
            code = super().run_tests(mutant_name=mutant_name, tests=tests)
        verdict = verdict_code(code, self.recorder)
        if killers is not None and verdict == 1:
            killing = list(self.recorder.failed)
            killers.write_text("\n".join(killing))
            seeds = self.recheck(killing)
            if seeds is not None:
                Path(str(killers) + SEEDS_SUFFIX).write_text(json.dumps(seeds))
        elif killers is not None and verdict == HARNESS_ERROR:
            Path(str(killers) + HARNESS_SUFFIX).write_text(harness_reason(code, self.recorder))
        return verdict

    def recheck(self, killing: list[str]) -> dict | None:
        """Re-run a kill's tests that draw randomness under other seeds, in the mutant's own process
        (the mutant still active), once per seed (the plugin's rounds): under how many of all the
        seeds, the pinned one included, the mutant was killed. A kill under some seeds only is no
        evidence that the suite catches the bug."""
        import shutil
        import tempfile

        from mutmut.utils.file_utils import change_cwd

        rounds = SPEC.recheck_rounds if SPEC is not None else 0
        tests = [t for t in killing if t in drawing_tests(SPEC.draws if SPEC is not None else "")]
        if not rounds or not tests:
            return None
        if getattr(self, "refreshed", False):
            forget_test_modules()
        folder = Path(tempfile.mkdtemp(prefix="ml-audit-recheck-"))
        try:
            unit, rows = folder / "unit.json", folder / "rows.jsonl"
            unit.write_text(recheck_unit(tests, rounds).to_json())
            args = [a for a in self._pytest_args_regular_run(tests) if a != "-x"]
            with change_cwd("mutants"):
                code = self.execute_pytest([*args, f"--audit-unit={unit}", f"--audit-rows={rows}"])
            if code not in (0, 1):  # the re-check itself could not run: the kill stands unchecked
                return None
            return {"seed_kills": 1 + failing_rounds(rows), "seed_runs": rounds + 1}
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def forget_test_modules() -> bool:
    """Drop the test modules and conftests that the fork server imported (mutmut's warm-up
    collection) from ``sys.modules``, so that the next collection runs them afresh: a module whose
    ``parametrize`` values are a generator (torchsde's) yields no test the second time it is
    collected, and every mutant run then stops with "not found". True when there were any."""
    import fnmatch
    import sys

    root = (Path.cwd() / "mutants").resolve()
    names = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or not Path(file).resolve().is_relative_to(root):
            continue
        rel = Path(file).resolve().relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, pattern) for pattern in TEST_FILES):
            names.append(name)
    for name in names:
        del sys.modules[name]
    return bool(names)


def _baseline() -> dict | None:
    path = Path(SPEC.baseline) if SPEC is not None and SPEC.baseline else None
    return json.loads(path.read_text()) if path is not None and path.exists() else None


def _baseline_passed(tests) -> bool:
    """Whether the run on unmutated code ran and none of *tests* failed in it."""
    baseline = _baseline()
    return baseline is not None and not set(tests) & set(baseline["failed"])


def store_lines_covered_by_tests(original):
    """mutmut's coverage step, then the baseline's verdict: a test that failed there and fails on
    the project too stops the run (exit 1, the failing tests in the diagnostics: mutation testing
    needs a green suite); one that passes on the project fails only as mutmut runs it (under its
    coverage tracing, say) and is left out of the run."""
    def store() -> None:
        original()
        baseline = _baseline()
        if baseline is None or not baseline["failed"]:
            return
        failing = failing_unmutated(list(baseline["failed"]))
        if failing:
            from audit.atomic import write_json

            write_json(SPEC.diagnostics, {"phase": "suite", "exit_code": baseline["exit_code"],
                                          "failed": {t: baseline["failed"].get(t, "") for t in failing},
                                          "collect_errors": {}, "reason": f"pytest exit {baseline['exit_code']}"})
            raise SystemExit(1)
        leave_out(baseline["failed"])
    return store


def leave_out(failed: dict[str, str]) -> None:
    """Note *failed* (node id: report) as tests that fail only under mutmut, for the rest of this
    run (``left_out``) and for the engine."""
    if SPEC is None or not SPEC.untrampolined:
        return
    from audit.atomic import write_json

    path = Path(SPEC.untrampolined)
    known = json.loads(path.read_text()) if path.exists() else {}
    write_json(path, {**known, **failed})


def failing_unmutated(tests: list[str]) -> list[str]:
    """Which of *tests* fail on the project itself (the worker's folder, not ``mutants/``), run
    in a fresh interpreter the one way ml-audit starts pytest, outside mutmut's environment."""
    import re
    import sys
    import tempfile

    from audit.pytest_run import kill_group, run_process

    log = Path(tempfile.mkstemp(prefix="ml-audit-baseline-", suffix=".log")[1])
    mutmuts = {name: os.environ.pop(name) for name in MUTMUT_ENV if name in os.environ}
    try:
        proc = run_process([sys.executable, *SPEC.check_args, "-rfE", *tests], cwd=Path.cwd(), log=log)
    finally:
        os.environ.update(mutmuts)
    try:
        code = proc.wait()
        found = re.findall(r"^(?:FAILED|ERROR) (\S+)", log.read_text(errors="replace"), re.MULTILINE)
        return [] if code == 0 else [t for t in tests if t in found] or list(tests)
    finally:
        if proc.returncode is None:  # interrupted meanwhile
            kill_group(proc)
        log.unlink(missing_ok=True)


MUTMUT_ENV = ("MUTANT_UNDER_TEST", "PY_IGNORE_IMPORTMISMATCH", "MUTMUT_DEPENDENCY_DEPTH")  # what mutmut's runs set


@functools.cache
def _uncovered() -> frozenset[str]:
    """Mutants on lines no test executed (the sidecars' ``covered``), read once per fork server."""
    names = set()
    for sidecar in Path("mutants").rglob("*" + SIDECAR_SUFFIX):
        names.update(r["id"] for r in json.loads(sidecar.read_text())["mutants"] if not r.get("covered", True))
    return frozenset(names)


def _phase() -> str:
    """Which of mutmut's runs this is: ``coverage`` (line coverage, before the trampolines), ``stats``,
    ``clean``, ``fail`` (forced fail) or ``mutant``."""
    from mutmut.mutation.trampoline import get_mutant_under_test

    name = get_mutant_under_test()
    return {"stats": "stats", "fail": "fail", "mutant_generation": "coverage", "": "clean"}.get(name, "mutant")


def _write_diagnostics(phase: str, code: int, recorder: _Recorder) -> None:
    if SPEC is None or not SPEC.diagnostics:
        return
    from audit.atomic import write_json

    write_json(SPEC.diagnostics, {"phase": phase, "exit_code": code, "failed": recorder.failed,
                                  "collect_errors": recorder.collect_errors,
                                  "reason": harness_reason(code, recorder)})


def drawing_tests(rows_file: str) -> set[str]:
    """Tests whose stats-run execution drew from an RNG (the ml_audit plugin's rows)."""
    if not rows_file:
        return set()
    rows, _ = read_records(Path(rows_file))
    return {row["nodeid"] for row in rows if row.get("event") == "row" and row.get("drew_any")}


RECHECK_BASE = 1   # seed base of the re-check rounds: every seed of every round derives from it


def recheck_unit(tests: list[str], rounds: int):
    """The ml_audit plugin's unit for a kill's re-check: the killing tests, *rounds* times in one
    pytest session, torch/numpy/random seeded afresh each round (derived from RECHECK_BASE, so a
    re-check repeats), fixtures torn down between rounds, no stop at the first failure."""
    from audit.flaky.runner import Unit

    return Unit(id=0, tests=list(tests), order="given", seeds={f: "fresh" for f in ("torch", "numpy", "random")},
                seed_base=RECHECK_BASE, rounds=rounds, threads=[1], runs_without_draws=rounds,
                max_runs_per_test=rounds, stop_when_flaky=False)


def failing_rounds(rows_file: Path) -> int:
    """Rounds of a re-check in which a test failed."""
    rows, _ = read_records(rows_file)
    return len({row["round"] for row in rows if row.get("event") == "row" and row.get("klass") == "fail"})


SYS_PATH: list[str] = []


def mutant_runner(max_workers: int = 1):
    """A fork server: the process that forks mutants never ran a test, so none inherits a polluted state.

    The fork server itself imports the test modules once (mutmut's warm-up), and a module that trims
    ``sys.path`` at import (torchsde's drop ``sys.path[0]``, once per module) would leave every forked
    mutant without the standard library or site-packages: each pytest run starts from the worker's
    ``sys.path`` as it is here, before any test ran."""
    import sys

    from mutmut.configuration import config
    from mutmut.workers.isolation import ForkServerRunner

    SYS_PATH[:] = sys.path
    cfg = config()
    return ForkServerRunner(max_workers=max(1, max_workers), test_runner_class=AuditPytestRunner,
                            test_runner_args={}, debug=cfg.debug, max_restarts=cfg.max_forkserver_restarts)


# test code inside a package is copied, never mutated (mutmut's fnmatch patterns, where * spans folders)
TEST_FILES = ("*/tests/*", "*/test/*", "*/testing/*", "test_*.py", "*/test_*.py", "*_test.py", "conftest.py",
              "*/conftest.py")


def configure(spec: Spec) -> Config:
    """mutmut's configuration, built from the spec rather than read from the project's files."""
    source_paths = [Path(p) for p in spec.source_paths]
    multiplier = 10.0
    return Config(
        also_copy=[Path(p) for p in spec.also_copy],
        only_mutate=[], do_not_mutate=list(TEST_FILES), do_not_mutate_patterns=[],
        max_stack_depth=-1, debug=False,
        source_paths=source_paths,
        resolved_mutated_source_paths=[Path.cwd().resolve() / "mutants" / p for p in source_paths],
        pytest_add_cli_args=list(spec.pytest_args),
        pytest_add_cli_args_test_selection=list(spec.test_paths),
        mutate_only_covered_lines=True,  # mutmut measures line coverage once; we keep every mutant (see above)
        timeout_multiplier=multiplier, timeout_constant=spec.timeout / multiplier,
        type_check_command=[], use_setproctitle=False, track_dependencies=True, dependency_tracking_depth=-1,
        cache_invalidation_files=[], cache_invalidation_exclude=[], on_dependency_change="ignore",
        use_git_change_detection=False,
        process_isolation=ProcessIsolation.FORKSERVER, forkserver_warmup=ForkServerWarmup.COLLECT,
        max_forkserver_restarts=3, preload_modules_file=None, log_to_file=False,
        log_file_path="mutants/mutmut-debug.log",
    )


class MutantsFirst:
    """A meta path finder, first in ``sys.meta_path``, that resolves the mutated top-level packages
    to mutmut's copy whatever the tests do to ``sys.path``: a suite that imports "the installed
    library" (torchsde's tests drop ``sys.path[0]`` for it) would otherwise get an editable
    install of the user's tree, and no mutant would ever run."""

    def __init__(self, roots: dict[str, Path]):
        self.roots = roots  # top-level name: the folder in mutants/ it is imported from

    @classmethod
    def for_sources(cls, sources: list[str], mutants: Path) -> "MutantsFirst":
        roots = {}
        for source in sources:
            parts = Path(source).parts
            under_src = len(parts) > 1 and parts[0] == "src"
            top = parts[1] if under_src else parts[0]
            roots[top.removesuffix(".py")] = mutants / "src" if under_src else mutants
        return cls(roots)

    def find_spec(self, fullname, path=None, target=None):
        from importlib.machinery import PathFinder

        root = self.roots.get(fullname)
        return PathFinder.find_spec(fullname, [str(root)]) if root is not None else None


def install(spec: Spec, operators: list[ops.Operator], progress=None) -> None:
    """Patch mutmut for this process (the worker) and configure it from *spec*, with *operators*."""
    global SPEC
    SPEC = spec
    OPERATORS[:] = operators
    from mutmut import configuration

    mutmut._reset_globals()
    configuration._config = configure(spec)  # before mutmut.__main__ is imported: it reads the config
    from mutmut import __main__ as mutmut_main

    mutmut_main.mutate_file_contents = mutate_file_contents
    mutmut_main.PytestRunner = AuditPytestRunner  # the coverage run's runner (its only use there)
    mutmut_main.store_lines_covered_by_tests = store_lines_covered_by_tests(mutmut_main.store_lines_covered_by_tests)
    file_mutation.function_trampoline_arrangement = function_trampoline_arrangement
    mutmut_main.get_mutant_runner = mutant_runner
    if progress is not None:
        original_print_stats = mutmut_main.print_stats

        def print_stats(data_by_path, force_output=False):
            from mutmut.stats import calculate_summary_stats

            s = calculate_summary_stats(data_by_path)
            progress(s.total - s.not_checked, s.total)
            return original_print_stats(data_by_path, force_output)

        mutmut_main.print_stats = print_stats
    os.makedirs(spec.killers_dir, exist_ok=True)
    import sys

    sys.meta_path.insert(0, MutantsFirst.for_sources(spec.source_paths, Path.cwd() / "mutants"))


def run_mutmut(max_children: int, names: list[str] = ()) -> int:
    """Run mutmut as installed by ``install``, in the current directory, on the mutants *names*
    (all when empty); its exit status."""
    from mutmut import __main__ as mutmut_main

    try:
        mutmut_main._run(list(names), max_children)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


NO_TESTS = 33   # the exit code mutmut records for a mutant no test covers ("no tests")


def nothing_covered() -> bool:
    """mutmut's stats pass ran the tests and none of them reached a function it mutated: it
    then stops early (exit 1) with every mutant unchecked, where each has no covering test."""
    from mutmut.state import state

    return bool(state().duration_by_test) and not any(state().tests_by_mangled_function_name.values())


def mutant_names(spec: Spec, operators: list[ops.Operator], root: Path) -> list[str]:
    """The names mutmut gives the mutants of *spec* in the project at *root*, in its order, made
    as the worker makes them but without running a test: what shards of a run are cut from."""
    from mutmut import configuration
    from mutmut.utils.file_utils import change_cwd, walk_mutatable_files

    saved = configuration._config
    names: list[str] = []
    try:
        with change_cwd(root):
            configuration._config = configure(spec)
            for path in sorted(walk_mutatable_files()):
                allowed = None
                if spec.allowed_lines is not None:
                    allowed = set(spec.allowed_lines.get(path.as_posix(), []))
                _, records = generate(str(path), path.read_text(encoding="utf-8"), operators, allowed, spec.noisy)
                names += [r["id"] for r in records]
    finally:
        configuration._config = saved
    return names


def forget_harness_errors(mutants: Path = Path("mutants")) -> int:
    """Mark the mutants whose last run gave no verdict (``HARNESS_ERROR``) as not checked in
    mutmut's ``.meta`` files, so that this run checks them again instead of keeping a result that
    says nothing about the mutant; how many there were."""
    from audit.atomic import write_json

    count = 0
    for meta in mutants.rglob("*.meta"):
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        stale = [key for key, code in codes.items() if code == HARNESS_ERROR]
        if stale:
            codes.update(dict.fromkeys(stale))
            write_json(meta, data)
            count += len(stale)
    return count


def mutmut_status(exit_code: int | None) -> str:
    """mutmut's name for a mutant's exit code (``mutmut.stats.status_by_exit_code``)."""
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[exit_code]


# mutmut's status names (mutmut.stats.status_by_exit_code) -> ours (audit.model.mutate.STATUSES)
_FROM_MUTMUT = {"killed": "killed", "survived": "survived", "timeout": "timeout", "no tests": "no_coverage",
                "segfault": "killed", "caught by type check": "killed", "not checked": "unchecked",
                "check was interrupted by user": "unchecked", "suspicious": "suspicious", "skipped": "skipped"}


def status_from_mutmut(exit_code: int | None, mutmut_status: str, seed_kills: int | None = None,
                       seed_runs: int | None = None) -> str:
    """Our status for a mutant mutmut left with *exit_code* and *mutmut_status*."""
    if exit_code in (-9, 137):  # SIGKILL after the CPU limit's grace second: mutmut calls it a segfault
        return "timeout"
    if exit_code == HARNESS_ERROR:
        return "harness_error"
    if seed_kills is not None and seed_runs and seed_kills < seed_runs and mutmut_status == "killed":
        return "seed_dependent"
    return _FROM_MUTMUT.get(mutmut_status, "error")
