"""Uninitialised memory read before it is written: ``torch.empty`` becomes ``torch.zeros``.

Deterministic mode NaN-fills ``torch.empty``; code that relied on whatever the allocator handed
back (padding multiplied by a mask, an accumulator never cleared) then fails. Zeros is what such
code assumed. Every empty call on a traced site's line is rewritten: the trace names the calls
the test made, and zeros is a valid value for any of them.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst

from audit.flaky.fixes.source import Patch, dotted, positions, read

KIND = "zeros"
RENAMES = {"empty": "zeros", "new_empty": "new_zeros", "empty_like": "zeros_like"}


def zero_calls(text: str, lines: range) -> str:
    """*text* with ``torch.empty``/``torch.empty_like``/``x.new_empty`` calls on *lines* renamed
    to their zeroing twins (the arguments are the same)."""
    module, spans = positions(cst.parse_module(text))

    class Zero(cst.CSTTransformer):
        def leave_Call(self, original, updated):
            first, last = spans.get(original, (0, -1))
            func = updated.func
            if not any(first <= n <= last for n in lines) or not isinstance(func, cst.Attribute):
                return updated
            name = func.attr.value
            if name not in RENAMES or (name != "new_empty" and dotted(func.value) != "torch"):
                return updated
            return updated.with_changes(func=func.with_changes(attr=cst.Name(RENAMES[name])))

    return module.visit(Zero()).code


def propose(root: Path, cause, nodeid: str) -> Patch | None:
    """The patch zeroing the memory a determinism cause's traced ``torch.empty`` sites made."""
    patch = Patch(KIND, "torch.empty -> torch.zeros (new_empty -> new_zeros, empty_like -> zeros_like)")
    for site in cause.sites:
        text = patch.text(site.path, root)
        if text is None:
            continue
        patch.edit(site.path, text, zero_calls(text, range(site.line, site.line + 1)))
    return patch or None
