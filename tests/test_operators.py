"""ML mutation operators: what each one produces, and what the pruning rules keep out."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

from audit.errors import AuditError
from audit.mutate import catalog, registry
from audit.mutate import operators as ops
from audit.mutate.bridge import generate

SHARED_NAMES = """drop_detach drop_no_grad drop_zero_grad drop_backward drop_optimizer_step drop_scheduler_step
flip_requires_grad drop_item drop_eval drop_train swap_train_eval change_dim change_axes flip_keepdim
swap_reduction softmax_before_cross_entropy change_seed drop_seed flip_shuffle flip_drop_last
lower_precision scale_hyperparam""".split()


def mutants(source: str, operators="ml", noisy=False, allowed=None):
    spec = operators if isinstance(operators, str) else ",".join(operators)
    _, records = generate("mod.py", textwrap.dedent(source), registry.select(spec), allowed=allowed, noisy=noisy)
    return records


def changes(records) -> list[tuple[str, str, str]]:
    """(operator, removed line, added line) for each single-line mutant."""
    out = []
    for r in records:
        lines = r["diff"].splitlines()[2:]
        minus = [ln[1:].strip() for ln in lines if ln.startswith("-")]
        plus = [ln[1:].strip() for ln in lines if ln.startswith("+")]
        out.append((r["operator"], " | ".join(minus), " | ".join(plus)))
    return out


def test_the_ml_operator_names_are_exactly_the_shared_list():
    assert list(ops.ML_OPERATORS) == SHARED_NAMES
    assert list(catalog.ML_CATALOG) == SHARED_NAMES
    for op in ops.ML_OPERATORS.values():
        assert op.bug and op.example and op.killer in catalog.KILLERS
        assert catalog.info(op.name) == catalog.OperatorInfo(op.name, op.bug, op.example, op.killer)
    assert catalog.info("mutmut_string") is None and catalog.info("no_such_operator") is None


def test_the_catalog_loads_neither_libcst_nor_mutmut():
    code = ("import sys, audit.mutate.catalog as c; c.info('change_dim'); c.info('nope'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('libcst', 'mutmut', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


CASES = [
    ("drop_detach", "def f(t):\n    return g(t.detach())\n", "return g(t.detach())", "return g(t)"),
    ("drop_zero_grad", "def f(opt):\n    opt.zero_grad()\n    return 1\n", "opt.zero_grad()", "pass"),
    ("drop_backward", "def f(loss):\n    loss.backward()\n    return 1\n", "loss.backward()", "pass"),
    ("drop_optimizer_step", "def f(optimizer):\n    optimizer.step()\n    return 1\n", "optimizer.step()", "pass"),
    ("drop_scheduler_step", "def f(scheduler):\n    scheduler.step()\n    return 1\n", "scheduler.step()",
     "pass"),
    ("flip_requires_grad", "def f(torch):\n    return torch.zeros(2, requires_grad=True)\n",
     "return torch.zeros(2, requires_grad=True)", "return torch.zeros(2, requires_grad=False)"),
    ("drop_item", "def f(loss):\n    total = 0.0\n    total += loss.item()\n    return total\n",
     "total += loss.item()", "total += loss"),
    ("drop_eval", "def f(model):\n    model.eval()\n    return 1\n", "model.eval()", "pass"),
    ("drop_train", "def f(model):\n    model.train()\n    return 1\n", "model.train()", "pass"),
    ("swap_train_eval", "def f(model):\n    model.eval()\n    return 1\n", "model.eval()", "model.train()"),
    ("change_dim", "def f(torch, x):\n    return torch.softmax(x, dim=-1)\n", "return torch.softmax(x, dim=-1)",
     "return torch.softmax(x, dim=-2)"),
    ("change_dim", "def f(torch, a, b):\n    return torch.cat([a, b], 0)\n", "return torch.cat([a, b], 0)",
     "return torch.cat([a, b], 1)"),
    ("change_dim", "def f(x):\n    return x.sum(1)\n", "return x.sum(1)", "return x.sum(0)"),
    ("change_axes", "def f(k):\n    return k.transpose(-2, -1)\n", "return k.transpose(-2, -1)",
     "return k.transpose(-3, -1)"),
    ("change_axes", "def f(x):\n    return x.permute(0, 2, 1)\n", "return x.permute(0, 2, 1)",
     "return x.permute(2, 0, 1)"),
    ("change_axes", "def f(m):\n    return m.unsqueeze(-1)\n", "return m.unsqueeze(-1)", "return m.unsqueeze(-2)"),
    ("flip_keepdim", "def f(x):\n    return x.mean(dim=0, keepdim=True)\n", "return x.mean(dim=0, keepdim=True)",
     "return x.mean(dim=0, keepdim=False)"),
    ("flip_keepdim", "def f(x):\n    return x.sum(dim=1)\n", "return x.sum(dim=1)",
     "return x.sum(dim=1, keepdim=True)"),
    ("swap_reduction", "def f(F, x, y):\n    return F.mse_loss(x, y, reduction='mean')\n",
     "return F.mse_loss(x, y, reduction='mean')", "return F.mse_loss(x, y, reduction='sum')"),
    ("swap_reduction", "def f(F, x, y):\n    return F.cross_entropy(x, y)\n", "return F.cross_entropy(x, y)",
     'return F.cross_entropy(x, y, reduction="sum")'),
    ("softmax_before_cross_entropy", "def f(F, x, y):\n    return F.cross_entropy(x, y)\n",
     "return F.cross_entropy(x, y)", "return F.cross_entropy(F.softmax(x, dim=1), y)"),
    ("change_seed", "def f(torch):\n    torch.manual_seed(0)\n    return 1\n", "torch.manual_seed(0)",
     "torch.manual_seed(1)"),
    ("drop_seed", "def f(torch):\n    torch.manual_seed(0)\n    return 1\n", "torch.manual_seed(0)", "pass"),
    ("drop_seed", "def f(torch, s):\n    return torch.Generator().manual_seed(s)\n",
     "return torch.Generator().manual_seed(s)", "return torch.Generator()"),
    ("flip_shuffle", "def f(DataLoader, ds):\n    return DataLoader(ds, shuffle=True)\n",
     "return DataLoader(ds, shuffle=True)", "return DataLoader(ds, shuffle=False)"),
    ("flip_shuffle", "def f(DataLoader, ds, s):\n    return DataLoader(ds, shuffle=s)\n",
     "return DataLoader(ds, shuffle=s)", "return DataLoader(ds, shuffle=not s)"),
    ("flip_drop_last", "def f(DataLoader, ds):\n    return DataLoader(ds, batch_size=4)\n",
     "return DataLoader(ds, batch_size=4)", "return DataLoader(ds, batch_size=4, drop_last=True)"),
    ("lower_precision", "def f(torch, x):\n    return x.to(torch.float32)\n", "return x.to(torch.float32)",
     "return x.to(torch.bfloat16)"),
    ("scale_hyperparam", "def f(torch, p):\n    return torch.optim.SGD(p, lr=0.01)\n",
     "return torch.optim.SGD(p, lr=0.01)", "return torch.optim.SGD(p, lr=0.1)"),
    ("scale_hyperparam", "def f(torch, p, cfg):\n    return torch.optim.SGD(p, lr=cfg.lr)\n",
     "return torch.optim.SGD(p, lr=cfg.lr)", "return torch.optim.SGD(p, lr=cfg.lr * 10)"),
]


@pytest.mark.parametrize("operator, source, before, after", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_operator_makes_the_expected_mutant(operator, source, before, after):
    found = changes(mutants(source, operator))
    assert (operator, before, after) in found, found


def test_scale_hyperparam_leaves_the_eps_of_numerical_checks_alone():
    source = ("def f(torch, fn, x, y):\n    torch.autograd.gradcheck(fn, (x,), eps=1e-6)\n"
              "    return torch.allclose(x, y, eps=1e-8), torch.optim.Adam(x, eps=1e-8)\n")
    found = changes(mutants(source, "scale_hyperparam"))
    assert found and all("Adam" in before and "gradcheck" not in after for _, before, after in found), found


def test_graph_keeping_mutants_are_not_made_under_no_grad():
    source = ("def f(torch, model, xs):\n    total = 0.0\n    for x in xs:\n        total += model(x).item()\n"
              "    with torch.no_grad():\n        for x in xs:\n            total += model(x).item()\n"
              "    return total\n")
    assert [r["line"] for r in mutants(source, "drop_item")] == [4]


def test_every_ml_operator_is_exercised_above():
    assert {c[0] for c in CASES} | {"drop_no_grad"} == set(SHARED_NAMES)


def test_drop_no_grad_removes_a_with_block_and_a_decorator():
    source = """
    import torch

    @torch.no_grad()
    def evaluate(model, x):
        model.eval()
        return model(x)

    def predict(model, x):
        with torch.no_grad():
            return model(x)
    """
    found = [r for r in mutants(source, "drop_no_grad")]
    assert [(r["function"], r["line"]) for r in found] == [("evaluate", 4), ("predict", 10)]
    assert "-@torch.no_grad()" in found[0]["diff"]
    assert "-    with torch.no_grad():\n-        return model(x)\n+    return model(x)" in found[1]["diff"]


def test_functions_under_grad_decorators_get_mutants_that_really_run(tmp_path, monkeypatch):
    """The trampoline keeps @torch.no_grad() off itself, so dropping it turns autograd back on."""
    torch = pytest.importorskip("torch")
    from mutmut.mutation.trampoline import set_mutant_under_test

    source = textwrap.dedent("""
    import torch

    @torch.no_grad()
    def grad_on(x):
        x.sum()
        return torch.is_grad_enabled()
    """)
    mutated, records = generate("gradmod.py", source, registry.select("drop_no_grad,mutmut_name"))
    assert [r["operator"] for r in records] == ["drop_no_grad"]
    (tmp_path / "gradmod.py").write_text(mutated.code)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("gradmod", None)
    module = importlib.import_module("gradmod")
    try:
        set_mutant_under_test("")
        assert module.grad_on(torch.ones(2)) is False
        set_mutant_under_test(records[0]["id"])
        assert module.grad_on(torch.ones(2)) is True
    finally:
        set_mutant_under_test(None)
        monkeypatch.delenv("MUTANT_UNDER_TEST", raising=False)
        sys.modules.pop("gradmod", None)


def test_no_axis_twins_and_no_generic_mutation_of_managed_arguments():
    records = mutants("def f(torch, x):\n    return torch.softmax(x, dim=-1).sum(dim=1)\n", "all")
    added = [c[2] for c in changes(records)]
    assert "return torch.softmax(x, dim=-2).sum(dim=1)" in added
    for text in added:
        assert "dim=+1" not in text and "dim=1)" not in text.split(".sum")[0]  # the twin of -1
        assert "dim=2).sum" not in text  # mutmut's +1 on the literal
    assert all(r["operator"] != "mutmut_number" for r in records)


def test_enum_like_strings_and_none_injection_are_pruned_unless_noisy():
    source = "def f(F, x, y):\n    return F.interpolate(x, mode='bilinear', align_corners=y)\n"
    quiet = changes(mutants(source, "mutmut"))
    assert not any("XXbilinearXX" in c[2] or "BILINEAR" in c[2] or "None" in c[2] for c in quiet)
    noisy = changes(mutants(source, "mutmut", noisy=True))
    assert any("XXbilinearXX" in c[2] for c in noisy)
    assert any("None" in c[2] for c in noisy)


def test_removing_an_argument_set_to_its_default_is_not_a_mutant():
    records = changes(mutants("def f(x):\n    return x.sum(1, keepdim=False)\n", "mutmut_arg_removal"))
    assert ("mutmut_arg_removal", "return x.sum(1, keepdim=False)", "return x.sum(1)") not in records
    assert ("mutmut_arg_removal", "return x.sum(1, keepdim=False)", "return x.sum(keepdim=False)") in records


def test_transpose_argument_swap_is_never_produced():
    for r in changes(mutants("def f(x):\n    return x.transpose(0, 1)\n", "all")):
        assert r[2] != "return x.transpose(1, 0)"


def test_python_builtins_are_not_taken_for_torch_reductions():
    assert mutants("def f(a):\n    return max(a, 1) + sum([a])\n", "change_dim,flip_keepdim") == []


def test_since_filter_keeps_only_allowed_lines():
    source = "def f(model):\n    model.eval()\n    model.train()\n    return 1\n"
    lines = {r["line"] for r in mutants(source, "drop_eval,drop_train", allowed={3})}
    assert lines == {3}


def test_records_name_the_function_and_a_diff_with_real_line_numbers():
    source = "class M:\n    def forward(self, x):\n        return x.softmax(dim=1)\n"
    (record,) = mutants(source, "change_dim")
    assert record["function"] == "M.forward"
    assert record["id"] == "mod.xǁMǁforward__mutmut_1"
    assert "@@ -2,2 +2,2 @@" in record["diff"]


def test_select_groups_names_and_errors():
    assert [o.name for o in registry.select("ml")] == SHARED_NAMES
    assert all(not o.ml for o in registry.select("mutmut"))
    assert len(registry.select("all")) == len(registry.all_operators())
    assert [o.name for o in registry.select("drop_eval, mutmut_string")] == ["drop_eval", "mutmut_string"]
    with pytest.raises(AuditError, match="unknown mutation operator 'drop_evall'.*drop_eval"):
        registry.select("drop_evall")
    with pytest.raises(AuditError, match="no mutation operator"):
        registry.select(" , ")

