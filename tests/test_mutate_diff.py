"""Printed diffs are patches: ``patch -p1`` applies every mutant's diff to the source file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from audit.mutate import registry
from audit.mutate.bridge import generate

SOURCE = '''import torch


class Scorer(torch.nn.Module):
    def forward(self, x):
        """Score each row.

        The docstring's second line keeps its own indentation.
        """
        total = x.sum(dim=1)
        return total * 2


def mean_of(x):
    return x.mean(dim=0)
'''


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs the patch tool")
def test_every_diff_applies_with_patch_p1_methods_included(tmp_path):
    _, records = generate("pkg/mod.py", SOURCE, registry.select("all"))
    assert any(r["function"] == "Scorer.forward" for r in records)
    for record in records:
        tree = tmp_path / record["id"]
        (tree / "pkg").mkdir(parents=True)
        (tree / "pkg" / "mod.py").write_text(SOURCE)
        done = subprocess.run(["patch", "-p1", "--dry-run"], input=record["diff"], cwd=tree, text=True,
                              capture_output=True)
        assert done.returncode == 0, (record["diff"], done.stdout, done.stderr)
        assert "fuzz" not in done.stdout and "offset" not in done.stdout.lower(), done.stdout
