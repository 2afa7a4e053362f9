"""Verdicts in words: a cause in one line, how to fix a flaky test, what test kills a mutant.

Shared by the weekly report and the review so that both say the same thing about the same
verdict. Everything here reads the results model's fields; nothing is parsed back from prose.
"""

from __future__ import annotations

from audit.history import operator_info
from audit.model.flaky import Cause, Setting, TestVerdict
from audit.model.mutate import Mutant

# What a test that kills a surviving mutant of each ML operator asserts; the kind of test
# (shape, gradient-flow, overfit, golden value, eval-mode, determinism) is the mutant's own.
ASSERTS: dict[str, str] = {
    "drop_detach": "assert no gradient reaches what the detach cut off (its .grad stays None)",
    "drop_no_grad": "assert evaluation outputs have requires_grad False (no graph is built)",
    "drop_zero_grad": "train a few steps on one tiny batch; gradients must not accumulate across steps",
    "drop_backward": "train a few steps on one tiny batch and assert the loss falls",
    "drop_optimizer_step": "assert the parameters change after one training step",
    "drop_scheduler_step": "assert the learning rate after N steps equals the schedule's value",
    "flip_requires_grad": "assert frozen parameters stay unchanged and trainable ones move",
    "drop_item": "assert the accumulated loss is a Python float and matches a known value",
    "drop_eval": "assert two evaluation passes on the same input are identical (dropout off)",
    "drop_train": "assert training mode is restored after evaluation (dropout active again)",
    "swap_train_eval": "assert the model's .training flag in each phase, and that eval outputs repeat",
    "change_dim": "assert output shapes and that probabilities sum to 1 along the class axis",
    "change_axes": "assert the exact output shape, with distinct sizes on every axis",
    "flip_keepdim": "assert the reduced tensor's exact shape",
    "swap_reduction": "assert the loss of a fixed batch against a hand-computed value",
    "softmax_before_cross_entropy": "assert the loss of a fixed batch against F.cross_entropy on logits",
    "change_seed": "assert a seeded run reproduces a recorded golden output",
    "drop_seed": "assert two runs with the same seed give identical results",
    "flip_shuffle": "assert the loader's batch order (shuffled for training, fixed for evaluation)",
    "flip_drop_last": "assert the number and sizes of batches for a dataset that does not divide evenly",
    "lower_precision": "assert the dtype and a golden value at float32 tolerance",
    "scale_hyperparam": "train a few steps on a fixed batch and assert the loss against a recorded curve",
}
GOLDEN_ASSERT = "assert the exact result of this function on a small fixed input"

# How to fix a flaky test, by the source the attribution names.
FIX_HINTS: dict[str, str] = {
    "torch": "seed torch in the test or fixture (torch.manual_seed), or pass a torch.Generator to "
             "DataLoader/random_split/dropout-using code; put modules in eval() for evaluation tests",
    "numpy": "use a seeded np.random.default_rng(seed) instead of the global np.random functions",
    "random": "use a seeded random.Random(seed) instead of the module-level random functions",
    "hashseed": "do not depend on set or dict-of-str iteration order: sort before iterating or comparing",
    "threads": "compare floats with torch.testing.assert_close (tolerances) instead of ==, or record "
               "golden values at the thread count CI uses and pin it",
    "determinism": "do not read torch.empty memory before writing it: use torch.zeros / torch.full",
    "order": "restore global state the polluting test changes (default dtype, RNG, caches) in a fixture "
             "teardown, or set it explicitly in the test that depends on it",
}
GENERIC_HINT = ("re-run the repro line to see it fail; look for unseeded randomness (torch, numpy, random), "
                "exact float comparisons across thread counts, and state left behind by earlier tests")
BROKEN_HINT = "fails under every setting tried: a broken test or broken code, not flakiness; fix it or mark it xfail"


def killing_test(m: Mutant) -> tuple[str, str]:
    """(kind of test that would kill mutant *m*, what that test asserts)."""
    return m.killer, ASSERTS.get(m.operator, GOLDEN_ASSERT)


def bug_of(operator: str) -> str | None:
    """The real bug an operator models, in one line (from the operator catalog)."""
    known = operator_info(operator)
    return known.bug if known else None


def counts_text(cause: Cause) -> str:
    """The experiment's numbers: '9/20 executions failed with torch released, 0/20 pinned', and
    the confirmation where it ran: ', 0/30 with only torch pinned'."""
    c = cause.counts
    if c is None:
        return ""
    text = (f"{c.released[0]}/{c.released[1]} {c.unit} failed with {cause.source} released, "
            f"{c.pinned[0]}/{c.pinned[1]} pinned")
    if c.confirmation is not None:
        text += f", {c.confirmation[0]}/{c.confirmation[1]} with only {cause.source} pinned"
    return text


def cause_head(cause: Cause) -> str:
    """'torch (confirmed, p = 0.0003)': the source, whether it is confirmed, its p-value where it has one."""
    p = f", p = {cause.p_value:.2g}" if cause.p_value is not None else ""
    return f"{cause.source} ({cause.status}{p})"


def cause_details(cause: Cause) -> list[str]:
    """What backs a cause: the experiment's numbers, the polluter, where it draws, the evidence."""
    parts = []
    if cause.counts is not None:
        parts.append(counts_text(cause))
    if cause.polluter:
        parts.append(f"polluted by {cause.polluter}")
    if cause.sites:
        parts.append("drawn at " + ", ".join(f"{s} ({s.function})" if s.function else str(s) for s in cause.sites[:3]))
    elif cause.trace_error:
        parts.append(f"draw site not traced: {cause.trace_error}")
    if cause.evidence:
        parts.append(cause.evidence)
    return parts


def cause_text(cause: Cause) -> str:
    """A cause in one line: its head, then its details."""
    return "; ".join([cause_head(cause), *cause_details(cause)])


def cause_hint(cause: Cause) -> str | None:
    """How to fix what *cause* names: the attribution's own hint, else the source's usual fix."""
    if cause.status == "unknown":
        return cause.hint or None
    return cause.hint or FIX_HINTS.get(cause.source)


# Per-process settings a test that draws no randomness can only fail through, and what to say.
_SETTING_SOURCES = (("threads", "threads", "at {v} torch thread(s)"),
                    ("deterministic", "determinism", "with deterministic algorithms {v}"),
                    ("order", "order", "in {v} order"))
_UNREMARKABLE = (("order", "file"), ("deterministic", "off"))


def fix_hints(test: TestVerdict) -> list[str]:
    """How to fix a flaky test: from its causes, else from the RNG families it drew from, else
    from a setting every failure shared (for a test that draws no randomness)."""
    hints = list(dict.fromkeys(h for c in test.causes if (h := cause_hint(c))))
    if not hints:
        hints = [f"it draws from the {d} RNG: {FIX_HINTS[d]}" for d in test.draws if d in FIX_HINTS]
    if not hints and not test.draws:
        hints = setting_hints(test.failing_settings)
    return hints or [GENERIC_HINT]


def setting_hints(failing: list[Setting]) -> list[str]:
    """For a test that draws no randomness: a setting every failure shared points at the source."""
    hints = []
    for key, source, where in _SETTING_SOURCES:
        values = [getattr(s, key) for s in failing]
        if not failing or any(v is None for v in values) or len(set(map(str, values))) != 1:
            continue
        value = str(values[0])
        if (key, value) in _UNREMARKABLE:
            continue
        hints.append(f"it draws no randomness and its {len(failing)} failure(s) all ran {where.format(v=value)}: "
                     f"{FIX_HINTS[source]}")
    return hints if len(failing) > 1 else hints[:1]  # one failure shares every setting: name the likeliest


def setting_text(setting: Setting) -> str:
    """One failing execution in a line: the settings that vary per process, then how it failed."""
    shown = [f"{k}={getattr(setting, k)}" for k in ("threads", "hashseed", "deterministic", "order")
             if getattr(setting, k) is not None]
    digest = setting.digest.strip()
    return " ".join(shown) + (f": {digest}" if digest else "")


