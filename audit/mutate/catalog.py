"""What each mutation operator means: its name, the bug it models, an example and its killer.

Readers of stored results (the weekly report, ``audit review``) need only this metadata, so
this module imports neither libcst nor mutmut; the operators themselves (``audit.mutate.operators``
and the ``ml_audit.operators`` entry points) carry the same fields plus the code that mutates.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

ENTRY_POINT_GROUP = "ml_audit.operators"

# Kinds of test that kill a mutant (shown next to surviving mutants).
SHAPE, GRADIENT, OVERFIT, GOLDEN, EVAL_MODE, DETERMINISM = (
    "shape", "gradient-flow", "overfit", "golden value", "eval-mode", "determinism")
KILLERS = (SHAPE, GRADIENT, OVERFIT, GOLDEN, EVAL_MODE, DETERMINISM)


@dataclass(frozen=True)
class OperatorInfo:
    name: str
    bug: str
    example: str
    killer: str
    ml: bool = True


def _ml(name: str, bug: str, example: str, killer: str) -> tuple[str, OperatorInfo]:
    return name, OperatorInfo(name, bug, example, killer)


ML_CATALOG: dict[str, OperatorInfo] = dict([
    _ml("drop_detach",
        "a target or statistic that should be a constant keeps its autograd graph and leaks gradient",
        "teacher.detach() -> teacher", GRADIENT),
    _ml("drop_no_grad",
        "evaluation or a weight update runs with autograd on: memory grows, in-place updates get tracked",
        "with torch.no_grad(): ... -> ... (also @torch.no_grad() removed)", GRADIENT),
    _ml("drop_zero_grad", "gradients accumulate across steps", "optimizer.zero_grad() -> pass", OVERFIT),
    _ml("drop_backward", "no gradient is computed, so training silently does nothing",
        "loss.backward() -> pass", OVERFIT),
    _ml("drop_optimizer_step", "the weights are never updated", "optimizer.step() -> pass", OVERFIT),
    _ml("drop_scheduler_step", "the learning-rate schedule never advances", "scheduler.step() -> pass", GOLDEN),
    _ml("flip_requires_grad", "a parameter is frozen (or a constant is trained)",
        "requires_grad=True -> requires_grad=False", GRADIENT),
    _ml("drop_item", "a running loss keeps every batch's graph alive (memory leak, tensor instead of float)",
        "total += loss.item() -> total += loss", GOLDEN),
    _ml("drop_eval", "inference runs in training mode: dropout on, batch-norm statistics updated",
        "model.eval() -> pass", EVAL_MODE),
    _ml("drop_train", "training runs in eval mode after an evaluation: dropout off, batch-norm frozen",
        "model.train() -> pass", EVAL_MODE),
    _ml("swap_train_eval", "the wrong mode is set", "model.eval() -> model.train()", EVAL_MODE),
    _ml("change_dim", "a reduction or softmax runs over the wrong axis",
        "torch.softmax(x, dim=-1) -> torch.softmax(x, dim=-2)", SHAPE),
    _ml("change_axes", "a transpose/permute/squeeze/unsqueeze uses the wrong axis",
        "k.transpose(-2, -1) -> k.transpose(-3, -1)", SHAPE),
    _ml("flip_keepdim", "a reduced axis is kept or dropped by mistake, so broadcasting changes",
        "x.mean(dim=0, keepdim=True) -> x.mean(dim=0, keepdim=False)", SHAPE),
    _ml("swap_reduction", "a loss is summed instead of averaged (or the reverse): scale depends on batch size",
        "F.cross_entropy(x, y, reduction='mean') -> reduction='sum'", GOLDEN),
    _ml("softmax_before_cross_entropy", "cross_entropy gets probabilities instead of logits (double softmax)",
        "F.cross_entropy(logits, y) -> F.cross_entropy(F.softmax(logits, dim=1), y)", GOLDEN),
    _ml("change_seed", "a different seed: results that were only reproducible by luck change",
        "torch.manual_seed(0) -> torch.manual_seed(1)", DETERMINISM),
    _ml("drop_seed", "a seeding call is lost, so runs are no longer reproducible",
        "torch.manual_seed(seed) -> pass; torch.Generator().manual_seed(s) -> torch.Generator()", DETERMINISM),
    _ml("flip_shuffle", "training data is not shuffled (or evaluation data is)",
        "DataLoader(ds, shuffle=True) -> DataLoader(ds, shuffle=False)", DETERMINISM),
    _ml("flip_drop_last", "a short last batch is dropped or kept by mistake",
        "DataLoader(ds, drop_last=False) -> DataLoader(ds, drop_last=True)", SHAPE),
    _ml("lower_precision", "float32 computed in float16/bfloat16: precision loss, overflow",
        "dtype=torch.float32 -> dtype=torch.bfloat16", GOLDEN),
    _ml("scale_hyperparam", "a learning rate, eps or weight decay off by a factor of 10",
        "AdamW(params, lr=cfg.lr) -> AdamW(params, lr=cfg.lr * 10)", OVERFIT),
])


def info(name: str) -> OperatorInfo | None:
    """The metadata of operator *name*: a built-in ML one or one a package registers; else None.

    Only the entry point with that name is loaded (a third-party operator's module may import
    libcst); mutmut's own operators (``mutmut_*``) have no entry here.
    """
    if name in ML_CATALOG:
        return ML_CATALOG[name]
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            try:
                obj = entry.load()
            except Exception:
                return None
            return OperatorInfo(name, str(getattr(obj, "bug", "")), str(getattr(obj, "example", "")),
                                str(getattr(obj, "killer", GOLDEN)), bool(getattr(obj, "ml", True)))
    return None
