"""The operator registry: built-ins, mutmut's operators keyed by function, and entry-point plugins.

Third-party operators come from a real distribution written into a temporary ``site-packages``
(a ``.dist-info`` with ``entry_points.txt``) put on ``sys.path``, as pip would install it.
"""

from __future__ import annotations

import sys
import textwrap
from importlib import metadata
from pathlib import Path

import libcst as cst
import pytest

from audit.errors import AuditError
from audit.mutate import catalog, registry
from audit.mutate.bridge import generate, mutmut_operators
from audit.mutate.operators import ML_OPERATORS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

GOOD_MODULE = '''
import libcst as cst


class DropClipGrad:
    name = "drop_clip_grad"
    node_type = cst.Expr
    bug = "gradients are no longer clipped, so one bad batch can blow the weights up"
    example = "clip_grad_norm_(params, 1.0) -> pass"
    killer = "gradient-flow"

    @staticmethod
    def mutate(node):
        call = node.value
        if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute) and \\
                call.func.attr.value == "clip_grad_norm_":
            yield cst.Pass()


drop_clip_grad = DropClipGrad()
'''


def install_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write a distribution the way an installer leaves it in site-packages."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{catalog.ENTRY_POINT_GROUP}]\n{lines}")
    for module, text in modules.items():
        (site / f"{module}.py").write_text(text)


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site-packages"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path
    for module in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[module]


def test_a_third_party_operator_is_registered_selected_and_run(site):
    install_distribution(site, "ml-audit-clip", {"drop_clip_grad": "thirdparty_clip:drop_clip_grad"},
                         {"thirdparty_clip": GOOD_MODULE})
    operators = registry.load()
    op = operators["drop_clip_grad"]
    assert (op.node_type, op.killer, op.ml) == (cst.Expr, "gradient-flow", True)
    assert "drop_clip_grad" in [o.name for o in registry.select("ml", operators)]
    assert catalog.info("drop_clip_grad") == catalog.OperatorInfo(
        "drop_clip_grad", op.bug, op.example, "gradient-flow")
    source = textwrap.dedent("""\
        def step(model, opt):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        """)
    _, records = generate("train.py", source, registry.select("drop_clip_grad", operators))
    assert [(r["operator"], r["line"], r["replacement"]) for r in records] == [("drop_clip_grad", 2, "pass")]


def test_a_broken_entry_point_names_itself_and_its_distribution(site):
    install_distribution(site, "ml-audit-broken", {"drop_lr": "thirdparty_broken:drop_lr"},
                         {"thirdparty_broken": "import no_such_module_anywhere\n"})
    with pytest.raises(AuditError) as raised:
        registry.load()
    message = str(raised.value)
    assert "'drop_lr'" in message and "ml-audit-broken 1.0" in message and "no_such_module_anywhere" in message


def test_an_entry_point_without_the_operator_fields_is_refused(site):
    install_distribution(site, "ml-audit-bare", {"bare": "thirdparty_bare:bare"},
                         {"thirdparty_bare": "def bare(node):\n    return []\n"})
    with pytest.raises(AuditError, match=r"'bare'.*ml-audit-bare 1\.0.*has no name, node_type, mutate, bug, example, killer;"):
        registry.load()


@pytest.mark.parametrize("taken", ["change_dim", "mutmut_string"])
def test_an_operator_clashing_with_a_registered_name_is_refused(site, taken):
    module = GOOD_MODULE.replace('"drop_clip_grad"', repr(taken))
    install_distribution(site, "ml-audit-clash", {taken: "thirdparty_clash:drop_clip_grad"},
                         {"thirdparty_clash": module})
    with pytest.raises(AuditError, match=rf"'{taken}'.*ml-audit-clash 1\.0.*clashes with.*ml-audit"):
        registry.load()


def test_two_distributions_registering_one_name_are_both_named(site):
    for dist in ("ml-audit-one", "ml-audit-two"):
        install_distribution(site, dist, {"drop_clip_grad": f"thirdparty_{dist[-3:]}:drop_clip_grad"},
                             {f"thirdparty_{dist[-3:]}": GOOD_MODULE})
    with pytest.raises(AuditError) as raised:
        registry.load()
    assert "ml-audit-one 1.0" in str(raised.value) and "ml-audit-two 1.0" in str(raised.value)


def test_the_builtin_operators_register_through_the_same_entry_point_group():
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        catalog.ENTRY_POINT_GROUP]
    assert list(table) == list(catalog.ML_CATALOG)
    for name, value in table.items():
        assert metadata.EntryPoint(name, value, catalog.ENTRY_POINT_GROUP).load() is ML_OPERATORS[name]


def test_mutmut_operators_are_keyed_by_function_so_none_is_lost():
    from mutmut.mutation.mutators import mutation_operators

    ours = mutmut_operators()
    covered = {(node_type, op.mutate) for op in ours.values()
               for node_type in (op.node_type if isinstance(op.node_type, tuple) else (op.node_type,))}
    assert covered == set(mutation_operators)
    assert ours["mutmut_assignment"].node_type == (cst.Assign, cst.AnnAssign)


def test_mutmut_assignment_mutates_plain_and_annotated_assignments():
    source = "def f(b, d):\n    a = b\n    c: int = d\n    return a, c\n"
    _, records = generate("mod.py", source, registry.select("mutmut_assignment"), noisy=True)
    assert sorted((r["line"], r["replacement"]) for r in records) == [(2, "a = None"), (3, "c: int = None")]
