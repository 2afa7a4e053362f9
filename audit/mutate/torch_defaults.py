"""Keyword defaults of the torch (and numpy) callables ML code passes them to, per callee.

Removing ``keepdim=False`` from ``x.sum(1, keepdim=False)`` changes nothing, but removing
``requires_grad=False`` from ``nn.Parameter(w, requires_grad=False)`` unfreezes a weight: a
default belongs to a callee, not to a keyword name. Callees are matched by the last name of what
is called (``nn.Linear``, ``torch.nn.Linear`` and ``Linear`` alike); an unknown callee has no
known default, so nothing is pruned there.
"""

from __future__ import annotations

REDUCTIONS = ("sum", "mean", "max", "min", "amax", "amin", "prod", "norm", "logsumexp", "any", "all",
              "median", "nansum", "nanmean", "argmax", "argmin", "count_nonzero", "std", "var")
FACTORIES = ("zeros", "ones", "empty", "full", "rand", "randn", "randint", "arange", "linspace", "logspace",
             "eye", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "tensor",
             "as_tensor")
INPLACE = ("ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "Hardtanh", "Hardswish", "Hardsigmoid", "SiLU",
           "Mish", "Threshold", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "relu", "relu6",
           "leaky_relu", "elu", "selu", "celu", "hardtanh", "silu", "mish", "dropout", "dropout1d", "dropout2d",
           "dropout3d", "alpha_dropout")
WITH_BIAS = ("Linear", "Bilinear", "LazyLinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
             "ConvTranspose2d", "ConvTranspose3d", "LazyConv1d", "LazyConv2d", "LazyConv3d", "LayerNorm")
RECURRENT = ("RNN", "LSTM", "GRU")
LOSSES = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
          "binary_cross_entropy", "binary_cross_entropy_with_logits", "CrossEntropyLoss", "NLLLoss", "MSELoss",
          "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss")
MOVES = ("to", "cuda", "copy_")


def _table() -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}

    def add(callees, **defaults):
        for callee in callees:
            table.setdefault(callee, {}).update(defaults)

    add(REDUCTIONS, keepdim="False", keepdims="False")
    add(("std", "var"), unbiased="True")
    add(FACTORIES, requires_grad="False", pin_memory="False")
    add(("Parameter",), requires_grad="True")
    add(INPLACE, inplace="False")
    add(WITH_BIAS, bias="True")
    add(RECURRENT, bias="True", batch_first="False", bidirectional="False")
    add(("MultiheadAttention",), bias="True", batch_first="False")
    add(("TransformerEncoderLayer", "TransformerDecoderLayer", "Transformer"), batch_first="False")
    add(LOSSES, reduction="mean")
    add(("kl_div", "KLDivLoss"), reduction="mean", log_target="False")
    add(("cross_entropy", "CrossEntropyLoss"), label_smoothing="0.0")
    add(("DataLoader",), shuffle="False", drop_last="False", pin_memory="False", num_workers="0")
    add(MOVES, non_blocking="False")
    add(("interpolate", "grid_sample", "Upsample"), align_corners="None")
    add(("sort", "argsort"), descending="False", stable="False")
    add(("topk",), largest="True", sorted="True")
    return table


DEFAULTS: dict[str, dict[str, str]] = _table()


def default_of(callee: str | None, keyword: str) -> str | None:
    """The source text of *keyword*'s default for *callee* (``"False"``, ``"mean"``), or None if unknown."""
    return DEFAULTS.get(callee or "", {}).get(keyword)
