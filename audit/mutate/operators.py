"""The built-in ML-aware mutation operators.

Each operator models one bug that ML code really has. It is a function from a libcst node to
the replacement nodes (mutmut's operator protocol), with a name used everywhere (expected.toml,
``--operators``, reports); its bug, example and killer come from ``audit.mutate.catalog``. They
register through the ``ml_audit.operators`` entry points, like a third-party package's operators
(``audit.mutate.registry``).

Axis rules (no certainly-equivalent mutants): an axis literal only moves to a neighbour with the
same sign, so ``dim=-1`` never becomes its positive twin; arguments are never set to their
default; ``transpose(a, b)`` never becomes ``transpose(b, a)``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import libcst as cst

from audit.mutate.catalog import ML_CATALOG


@dataclass(frozen=True)
class Operator:
    name: str
    node_type: type | tuple[type, ...]
    mutate: Callable[[cst.CSTNode], Iterable[cst.CSTNode]]
    bug: str
    example: str
    killer: str
    ml: bool = True

    def __call__(self, node):
        return self.mutate(node)


def ml_operator(node_type: type | tuple[type, ...]):
    """Make the decorated function a built-in ML operator, its bug, example and killer from the catalog."""
    def make(fn) -> Operator:
        meta = ML_CATALOG[fn.__name__]
        return Operator(meta.name, node_type, fn, meta.bug, meta.example, meta.killer)
    return make


# --------------------------------------------------------------------------- node helpers

def dotted(node) -> str | None:
    """``torch.nn.functional.softmax`` for the matching Name/Attribute chain, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


def callee_name(call: cst.Call) -> str | None:
    """The last name of what is called: ``softmax`` for ``torch.softmax(...)``."""
    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    if isinstance(call.func, cst.Name):
        return call.func.value
    return None


def receiver(call: cst.Call):
    return call.func.value if isinstance(call.func, cst.Attribute) else None


FUNCTION_NAMESPACES = {"torch", "F", "nn.functional", "torch.nn.functional", "functional", "np", "numpy",
                       "torch.linalg", "linalg", "special", "torch.special"}


def is_function_form(call: cst.Call) -> bool:
    """``torch.sum(x, 1)`` (tensor is the first argument) rather than ``x.sum(1)``."""
    if isinstance(call.func, cst.Name):
        return True
    return dotted(receiver(call)) in FUNCTION_NAMESPACES


def is_python_builtin(call: cst.Call) -> bool:
    """``max(a, 1)``, ``sum(xs)``: Python's, not torch's (no axis there)."""
    return isinstance(call.func, cst.Name) and hasattr(builtins, call.func.value)


def keyword_arg(call: cst.Call, *names: str) -> tuple[int, cst.Arg] | None:
    for i, arg in enumerate(call.args):
        if arg.keyword is not None and arg.keyword.value in names:
            return i, arg
    return None


def positional_arg(call: cst.Call, index: int) -> tuple[int, cst.Arg] | None:
    pos = [(i, a) for i, a in enumerate(call.args) if a.keyword is None and not a.star]
    if any(a.star for a in call.args[: pos[index][0] if index < len(pos) else len(call.args)]):
        return None
    return pos[index] if index < len(pos) else None


def int_value(node) -> int | None:
    """The value of an int literal, ``-1`` included."""
    if isinstance(node, cst.Integer):
        return int(node.evaluated_value)
    if (isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus)
            and isinstance(node.expression, cst.Integer)):
        return -int(node.expression.evaluated_value)
    return None


def int_node(value: int) -> cst.BaseExpression:
    if value < 0:
        return cst.UnaryOperation(operator=cst.Minus(), expression=cst.Integer(str(-value)))
    return cst.Integer(str(value))


def bool_value(node) -> bool | None:
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return node.value == "True"
    return None


def negated(node: cst.BaseExpression) -> cst.BaseExpression:
    """``not x`` for a bool literal flip or an expression (parenthesised when compound)."""
    value = bool_value(node)
    if value is not None:
        return cst.Name("False" if value else "True")
    if not isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):
        node = node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return cst.UnaryOperation(operator=cst.Not(), expression=node)


def string_value(node) -> str | None:
    if isinstance(node, cst.SimpleString) and not node.value.lstrip("rbuRBU").startswith(('"""', "'''")):
        try:
            value = node.evaluated_value
        except Exception:  # pragma: no cover - exotic literal
            return None
        return value if isinstance(value, str) else None
    return None


def with_arg_value(call: cst.Call, index: int, value: cst.BaseExpression) -> cst.Call:
    args = list(call.args)
    args[index] = args[index].with_changes(value=value)
    return call.with_changes(args=args)


def with_keyword_added(call: cst.Call, name: str, value: cst.BaseExpression) -> cst.Call:
    args = list(call.args)
    if args and args[-1].comma is cst.MaybeSentinel.DEFAULT:
        args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    new = cst.Arg(value=value, keyword=cst.Name(name),
                  equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
    # keep a trailing comma style intact: insert before the closing paren
    return call.with_changes(args=[*args, new])


def neighbour_axes(k: int) -> list[int]:
    """Other axes with the same sign as *k*, nearest first (never the sign twin of *k*)."""
    if k >= 0:
        return [k - 1, k + 1] if k > 0 else [k + 1]
    return [k + 1, k - 1] if k < -1 else [k - 1]


def statement_call(node: cst.Expr) -> cst.Call | None:
    return node.value if isinstance(node, cst.Expr) and isinstance(node.value, cst.Call) else None


# --------------------------------------------------------------------------- autograd

GRAD_CONTEXTS = {"no_grad", "inference_mode"}


def is_grad_off(expr) -> bool:
    """``torch.no_grad()``, ``torch.inference_mode()``, ``torch.set_grad_enabled(False)`` (called or bare)."""
    call = expr if isinstance(expr, cst.Call) else None
    name = dotted(call.func if call else expr)
    if not name:
        return False
    last = name.rsplit(".", 1)[-1]
    if last in GRAD_CONTEXTS:
        return True
    return (last == "set_grad_enabled" and call is not None and len(call.args) == 1
            and bool_value(call.args[0].value) is False)


def is_grad_decorator(decorator: cst.Decorator) -> bool:
    """Grad-mode decorators wrap a function without changing its signature: safe to copy."""
    expr = decorator.decorator
    name = dotted(expr.func if isinstance(expr, cst.Call) else expr) or ""
    return is_grad_off(expr) or name.rsplit(".", 1)[-1] in ("enable_grad", "set_grad_enabled")


@ml_operator(cst.Call)
def drop_detach(node: cst.Call) -> Iterator[cst.CSTNode]:
    if callee_name(node) == "detach" and isinstance(node.func, cst.Attribute) and not node.args:
        yield node.func.value


@ml_operator((cst.With, cst.FunctionDef))
def drop_no_grad(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    if isinstance(node, cst.With) and isinstance(node.body, cst.IndentedBlock):
        off = [i for i, item in enumerate(node.items) if is_grad_off(item.item)]
        for i in off:
            items = [it for j, it in enumerate(node.items) if j != i]
            if not items:
                first, *rest = node.body.body
                first = first.with_changes(leading_lines=[*node.leading_lines, *first.leading_lines])
                yield cst.FlattenSentinel([first, *rest])
            else:
                items[-1] = items[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                yield node.with_changes(items=items)
    elif isinstance(node, cst.FunctionDef):
        for i, deco in enumerate(node.decorators):
            if is_grad_off(deco.decorator):
                yield node.with_changes(decorators=[d for j, d in enumerate(node.decorators) if j != i])


def _drop_statement_call(node: cst.Expr, accept: Callable[[cst.Call], bool]) -> Iterator[cst.CSTNode]:
    call = statement_call(node)
    if call is not None and isinstance(call.func, cst.Attribute) and accept(call):
        yield cst.Pass()


def _receiver_text(call: cst.Call) -> str:
    rec = receiver(call)
    if isinstance(rec, cst.Call):  # scaler.scale(loss).backward()
        rec = rec.func
    return (dotted(rec) or "").rsplit(".", 1)[-1].lower()


@ml_operator(cst.Expr)
def drop_zero_grad(node):
    yield from _drop_statement_call(node, lambda c: callee_name(c) == "zero_grad")


@ml_operator(cst.Expr)
def drop_backward(node):
    yield from _drop_statement_call(node, lambda c: callee_name(c) == "backward")


def _is_scheduler(call) -> bool:
    return "sched" in _receiver_text(call)


def _is_optimizer(call) -> bool:
    text = _receiver_text(call)
    return not _is_scheduler(call) and ("opt" in text or "scaler" in text)


@ml_operator(cst.Expr)
def drop_optimizer_step(node):
    yield from _drop_statement_call(node, lambda c: callee_name(c) == "step" and _is_optimizer(c))


@ml_operator(cst.Expr)
def drop_scheduler_step(node):
    yield from _drop_statement_call(node, lambda c: callee_name(c) == "step" and _is_scheduler(c))


@ml_operator((cst.Call, cst.Assign))
def flip_requires_grad(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    if isinstance(node, cst.Call):
        found = keyword_arg(node, "requires_grad")
        if found:
            i, arg = found
            yield with_arg_value(node, i, negated(arg.value))
        elif callee_name(node) == "requires_grad_" and isinstance(node.func, cst.Attribute):
            if not node.args:
                yield node.with_changes(args=[cst.Arg(cst.Name("False"))])
            elif len(node.args) == 1:
                yield with_arg_value(node, 0, negated(node.args[0].value))
    elif isinstance(node, cst.Assign) and len(node.targets) == 1:
        target = node.targets[0].target
        if isinstance(target, cst.Attribute) and target.attr.value == "requires_grad":
            yield node.with_changes(value=negated(node.value))


@ml_operator(cst.AugAssign)
def drop_item(node: cst.AugAssign) -> Iterator[cst.CSTNode]:
    """``total += loss.item()`` -> ``total += loss``: the accumulator now keeps every graph."""
    for sub in _walk(node.value):
        if (isinstance(sub, cst.Call) and callee_name(sub) == "item" and isinstance(sub.func, cst.Attribute)
                and not sub.args):
            yield node.deep_replace(sub, sub.func.value)


def _walk(node) -> Iterator[cst.CSTNode]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


# --------------------------------------------------------------------------- modes

def _is_eval_call(call: cst.Call) -> bool:
    return isinstance(call.func, cst.Attribute) and callee_name(call) == "eval" and not call.args


def _is_train_call(call: cst.Call) -> bool:
    if not (isinstance(call.func, cst.Attribute) and callee_name(call) == "train"):
        return False
    return not call.args or (len(call.args) == 1 and bool_value(call.args[0].value) is True)


@ml_operator(cst.Expr)
def drop_eval(node):
    yield from _drop_statement_call(node, _is_eval_call)


@ml_operator(cst.Expr)
def drop_train(node):
    yield from _drop_statement_call(node, _is_train_call)


@ml_operator(cst.Call)
def swap_train_eval(node: cst.Call) -> Iterator[cst.CSTNode]:
    if _is_eval_call(node):
        yield node.with_changes(func=node.func.with_changes(attr=cst.Name("train")))
    elif _is_train_call(node):
        yield node.with_changes(func=node.func.with_changes(attr=cst.Name("eval")), args=[])


# --------------------------------------------------------------------------- tensor axes

DIM_FUNCS = {"softmax", "log_softmax", "softmin", "sum", "mean", "max", "min", "argmax", "argmin", "cat",
             "concat", "concatenate", "stack", "norm", "prod", "std", "var", "logsumexp", "cumsum", "cumprod",
             "topk", "any", "all", "median", "amax", "amin", "nansum", "nanmean", "count_nonzero", "chunk",
             "split", "unbind", "flip", "normalize"}
DIM_CLASSES = {"Softmax", "LogSoftmax", "Softmin"}
REDUCE_FUNCS = {"sum", "mean", "max", "min", "norm", "prod", "std", "var", "logsumexp", "amax", "amin",
                "median", "any", "all", "nansum", "nanmean", "argmax", "argmin"}
# positional index of the axis in method form (x.f(...)) and function form (torch.f(x, ...))
DIM_POSITION = {"topk": (1, 2), "chunk": (1, 2), "split": (1, 2), "norm": (None, None), "normalize": (None, 2)}
AXES_FUNCS = {"transpose": 2, "swapaxes": 2, "swapdims": 2, "permute": -1, "squeeze": 1, "unsqueeze": 1,
              "movedim": 2}


def dim_argument(call: cst.Call) -> tuple[int, cst.Arg] | None:
    """Where the axis of a dim-taking call is (keyword ``dim``/``axis`` or its positional slot)."""
    name = callee_name(call)
    if is_python_builtin(call):
        return None
    if name in DIM_CLASSES:
        return keyword_arg(call, "dim") or positional_arg(call, 0)
    if name not in DIM_FUNCS:
        return None
    found = keyword_arg(call, "dim", "axis")
    if found:
        return found
    method_pos, function_pos = DIM_POSITION.get(name, (0, 1))
    pos = function_pos if is_function_form(call) else method_pos
    if name in ("cat", "concat", "concatenate", "stack") and not is_function_form(call):
        return None
    return positional_arg(call, pos) if pos is not None else None


@ml_operator(cst.Call)
def change_dim(node: cst.Call) -> Iterator[cst.CSTNode]:
    found = dim_argument(node)
    if found is None:
        return
    i, arg = found
    k = int_value(arg.value)
    if k is None:
        return
    yield with_arg_value(node, i, int_node(neighbour_axes(k)[0]))


def axes_arguments(call: cst.Call) -> list[int] | None:
    """Indexes into call.args of the axis literals of transpose/permute/squeeze/unsqueeze."""
    name = callee_name(call)
    if name not in AXES_FUNCS or any(a.star for a in call.args) or is_python_builtin(call):
        return None
    offset = 1 if is_function_form(call) else 0
    positional = [i for i, a in enumerate(call.args) if a.keyword is None][offset:]
    keywords = [i for i, a in enumerate(call.args) if a.keyword is not None
                and a.keyword.value in ("dim", "dim0", "dim1", "dims", "axis", "axis0", "axis1", "source",
                                        "destination")]
    idx = positional + keywords
    if AXES_FUNCS[name] > 0:
        idx = idx[: AXES_FUNCS[name]]
    return idx or None


@ml_operator(cst.Call)
def change_axes(node: cst.Call) -> Iterator[cst.CSTNode]:
    idx = axes_arguments(node)
    if not idx:
        return
    name = callee_name(node)
    if name == "permute":
        values = [int_value(node.args[i].value) for i in idx]
        if len(idx) == 1 and isinstance(node.args[idx[0]].value, (cst.Tuple, cst.List)):
            seq = node.args[idx[0]].value
            values = [int_value(e.value) for e in seq.elements]
            if None in values or len(values) < 2:
                return
            elems = list(seq.elements)
            j = next((j for j in range(len(values) - 1) if values[j] != values[j + 1]), None)
            if j is None:
                return
            elems[j], elems[j + 1] = (elems[j].with_changes(value=elems[j + 1].value),
                                      elems[j + 1].with_changes(value=elems[j].value))
            yield with_arg_value(node, idx[0], seq.with_changes(elements=elems))
            return
        if None in values or len(values) < 2:
            return
        j = next((j for j in range(len(values) - 1) if values[j] != values[j + 1]), None)
        if j is None:
            return
        swapped = with_arg_value(node, idx[j], node.args[idx[j + 1]].value)
        yield with_arg_value(swapped, idx[j + 1], node.args[idx[j]].value)
        return
    values = [int_value(node.args[i].value) for i in idx]
    for pos, (i, k) in enumerate(zip(idx, values)):
        if k is None:
            continue
        others = {v for p, v in enumerate(values) if p != pos}
        for candidate in neighbour_axes(k) + [k - 2 if k < 0 else k + 2]:
            if candidate not in others and candidate != k and (candidate >= 0) == (k >= 0):
                yield with_arg_value(node, i, int_node(candidate))
                return


@ml_operator(cst.Call)
def flip_keepdim(node: cst.Call) -> Iterator[cst.CSTNode]:
    found = keyword_arg(node, "keepdim", "keepdims")
    if found:
        i, arg = found
        if bool_value(arg.value) is not None:
            yield with_arg_value(node, i, negated(arg.value))
    elif callee_name(node) in REDUCE_FUNCS and dim_argument(node) is not None:
        yield with_keyword_added(node, "keepdim", cst.Name("True"))


# --------------------------------------------------------------------------- losses

LOSS_FUNCS = {"cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
              "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "CrossEntropyLoss",
              "NLLLoss", "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss",
              "KLDivLoss"}
REDUCTION_SWAP = {"mean": "sum", "sum": "mean", "none": "mean", "batchmean": "sum"}


def _string_like(original: cst.SimpleString, value: str) -> cst.SimpleString:
    quote = original.value[-1]
    prefix = original.value[: original.value.index(quote)]
    return cst.SimpleString(f"{prefix}{quote}{value}{quote}")


@ml_operator((cst.Call, cst.Param))
def swap_reduction(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    if isinstance(node, cst.Param):
        if node.name.value == "reduction" and node.default is not None:
            value = string_value(node.default)
            if value in REDUCTION_SWAP:
                yield node.with_changes(default=_string_like(node.default, REDUCTION_SWAP[value]))
        return
    found = keyword_arg(node, "reduction")
    if found:
        i, arg = found
        value = string_value(arg.value)
        if value in REDUCTION_SWAP:
            yield with_arg_value(node, i, _string_like(arg.value, REDUCTION_SWAP[value]))
    elif callee_name(node) in LOSS_FUNCS and not any(a.star for a in node.args):
        yield with_keyword_added(node, "reduction", cst.SimpleString('"sum"'))


def _softmax_of(call: cst.Call, logits: cst.BaseExpression) -> cst.Call:
    name = dotted(call.func) or ""
    if isinstance(call.func, cst.Call):  # nn.CrossEntropyLoss()(logits, y)
        base = (dotted(call.func.func) or "").rpartition(".")[0]
        func = f"{base}.functional.softmax" if base.endswith("nn") else "__import__('torch').softmax"
    else:
        base = name.rpartition(".")[0]
        func = f"{base}.softmax" if base else "__import__('torch').softmax"
    dim = cst.Arg(int_node(1), keyword=cst.Name("dim"),
                  equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
    return cst.Call(func=cst.parse_expression(func),
                    args=[cst.Arg(logits, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))), dim])


@ml_operator(cst.Call)
def softmax_before_cross_entropy(node: cst.Call) -> Iterator[cst.CSTNode]:
    is_ce = callee_name(node) == "cross_entropy" or (
        isinstance(node.func, cst.Call) and callee_name(node.func) == "CrossEntropyLoss")
    if not is_ce:
        return
    found = keyword_arg(node, "input") or positional_arg(node, 0)
    if found:
        i, arg = found
        yield with_arg_value(node, i, _softmax_of(node, arg.value))


# --------------------------------------------------------------------------- seeds and data

SEED_CALLS = {"manual_seed", "manual_seed_all", "seed_everything", "set_seed"}
SEED_DOTTED = {"random.seed", "np.random.seed", "numpy.random.seed"}
RNG_CONSTRUCTORS = {"default_rng", "RandomState", "Random"}


def is_seed_call(call: cst.Call) -> bool:
    name = dotted(call.func) or ""
    return callee_name(call) in SEED_CALLS or name in SEED_DOTTED


@ml_operator((cst.Call, cst.Param))
def change_seed(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    if isinstance(node, cst.Param):
        if node.name.value == "seed" and int_value(node.default) is not None:
            yield node.with_changes(default=int_node(int_value(node.default) + 1))
        return
    target = None
    if is_seed_call(node) or callee_name(node) in RNG_CONSTRUCTORS:
        target = keyword_arg(node, "seed") or positional_arg(node, 0)
    else:
        target = keyword_arg(node, "seed", "random_state")
    if target is None:
        return
    i, arg = target
    k = int_value(arg.value)
    if k is not None:
        yield with_arg_value(node, i, int_node(k + 1))
    elif bool_value(arg.value) is None and not (isinstance(arg.value, cst.Name) and arg.value.value == "None"):
        value = arg.value
        if not isinstance(value, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):
            value = value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        yield with_arg_value(node, i, cst.BinaryOperation(
            left=value, operator=cst.Add(cst.SimpleWhitespace(" "), cst.SimpleWhitespace(" ")),
            right=cst.Integer("1")))


@ml_operator((cst.Expr, cst.Call))
def drop_seed(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    if isinstance(node, cst.Expr):
        call = statement_call(node)
        if call is not None and is_seed_call(call):
            yield cst.Pass()
    elif isinstance(node, cst.Call):
        if callee_name(node) == "manual_seed" and isinstance(receiver(node), cst.Call):
            yield receiver(node)  # torch.Generator().manual_seed(s) -> torch.Generator()
        elif callee_name(node) in RNG_CONSTRUCTORS and node.args and not any(a.star for a in node.args):
            yield node.with_changes(args=[])


def _flip_flag(node: cst.CSTNode, flag: str) -> Iterator[cst.CSTNode]:
    if isinstance(node, cst.Param):
        if node.name.value == flag and bool_value(node.default) is not None:
            yield node.with_changes(default=negated(node.default))
        return
    found = keyword_arg(node, flag)
    if found:
        i, arg = found
        if not (isinstance(arg.value, cst.Name) and arg.value.value == "None"):
            yield with_arg_value(node, i, negated(arg.value))
    elif callee_name(node) == "DataLoader" and not any(a.star for a in node.args):
        positional = [a for a in node.args if a.keyword is None]
        slot = {"shuffle": 2, "drop_last": 9}[flag]  # DataLoader(dataset, batch_size, shuffle, ...)
        if len(positional) <= slot:
            yield with_keyword_added(node, flag, cst.Name("True"))


@ml_operator((cst.Call, cst.Param))
def flip_shuffle(node):
    yield from _flip_flag(node, "shuffle")


@ml_operator((cst.Call, cst.Param))
def flip_drop_last(node):
    yield from _flip_flag(node, "drop_last")


# --------------------------------------------------------------------------- numerics

@ml_operator((cst.Attribute, cst.Call))
def lower_precision(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    if isinstance(node, cst.Attribute):
        name = dotted(node)
        if name in ("torch.float32", "torch.float"):
            yield cst.parse_expression("torch.float16")
            yield cst.parse_expression("torch.bfloat16")
        elif name in ("np.float32", "numpy.float32"):
            yield node.with_changes(attr=cst.Name("float16"))
    elif isinstance(node, cst.Call):
        if callee_name(node) == "float" and isinstance(node.func, cst.Attribute) and not node.args:
            yield node.with_changes(func=node.func.with_changes(attr=cst.Name("half")))
            yield node.with_changes(func=node.func.with_changes(attr=cst.Name("bfloat16")))


HYPERPARAMS = {"lr", "learning_rate", "eps", "weight_decay", "momentum", "epsilon"}
# calls whose eps is a step or tolerance of a numerical check, not a model's hyperparameter
NUMERIC_CHECKS = {"gradcheck", "gradgradcheck", "allclose", "isclose", "assert_close", "assert_allclose"}


def _scaled(value: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    number = value if isinstance(value, (cst.Integer, cst.Float)) else None
    if number is not None:
        v = float(number.evaluated_value)
        if v == 0:
            return
        for factor in (10.0, 0.1):
            yield cst.Float(repr(float(f"{v * factor:.12g}")))
        return
    if isinstance(value, (cst.Name, cst.Attribute, cst.Subscript, cst.Call)):
        for op in (cst.Multiply, cst.Divide):
            yield cst.BinaryOperation(left=value, operator=op(cst.SimpleWhitespace(" "), cst.SimpleWhitespace(" ")),
                                      right=cst.Integer("10"))


@ml_operator((cst.Param, cst.Call, cst.Assign))
def scale_hyperparam(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    if isinstance(node, cst.Param):
        if node.name.value in HYPERPARAMS and node.default is not None and isinstance(
                node.default, (cst.Integer, cst.Float)):
            for v in _scaled(node.default):
                yield node.with_changes(default=v)
    elif isinstance(node, cst.Call) and callee_name(node) not in NUMERIC_CHECKS:
        for i, arg in enumerate(node.args):
            if arg.keyword is not None and arg.keyword.value in HYPERPARAMS:
                for v in _scaled(arg.value):
                    yield with_arg_value(node, i, v)
    elif isinstance(node, cst.Assign) and len(node.targets) == 1:
        target = node.targets[0].target
        name = target.value if isinstance(target, cst.Name) else (
            target.attr.value if isinstance(target, cst.Attribute) else None)
        if name in HYPERPARAMS and isinstance(node.value, (cst.Integer, cst.Float)):
            for v in _scaled(node.value):
                yield node.with_changes(value=v)


# --------------------------------------------------------------------------- the built-in set

ML_OPERATORS: dict[str, Operator] = {name: globals()[name] for name in ML_CATALOG}
