"""Add the surviving mutants of a real ``audit mutate`` run to the hand-labelled survivor sample.

    python tests/data/make_survivors.py RESULT.json PROJECT_ROOT --project NAME --commit SHA

For each survivor of RESULT.json (``ml-audit.mutate/2``) not yet in ``survivors.json``, it stores
the mutated function's source, the operator and the lines the mutant removes and adds, with
``label`` empty: a person then reads each one and sets ``label`` to ``equivalent`` (no test could
tell the mutant from the original) or ``real``, with ``why``. ``tests/test_mutate_equivalents.py``
regenerates every entry from its source and measures the equivalent share of what is still made.
"""

from __future__ import annotations

import argparse
import ast
import json
import textwrap
from pathlib import Path

SAMPLE = Path(__file__).with_name("survivors.json")


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The lines a diff removes and adds, stripped; blank ones left out (dedenting blanks them)."""
    def side(mark: str) -> list[str]:
        return [line[1:].strip() for line in diff.splitlines()
                if line.startswith(mark) and not line.startswith(mark * 3) and line[1:].strip()]
    return side("-"), side("+")


def function_source(path: Path, qualname: str) -> str | None:
    """The source of ``Class.method`` or ``function`` in *path*, dedented."""
    text = path.read_text()
    tree = ast.parse(text)
    scope: list = tree.body
    node = None
    for part in qualname.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return None
        scope = node.body
    lines = text.splitlines()
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return textwrap.dedent("\n".join(lines[start - 1:node.end_lineno])) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("root", type=Path)
    parser.add_argument("--project", required=True)
    parser.add_argument("--commit", required=True)
    args = parser.parse_args(argv)
    sample = json.loads(SAMPLE.read_text()) if SAMPLE.exists() else []
    known = {(e["project"], e["path"], e["function"], e["operator"], tuple(e["removed"]), tuple(e["added"]))
             for e in sample}
    added = 0
    for mutant in json.loads(args.result.read_text())["mutants"]:
        if mutant["status"] != "survived":
            continue
        removed, plus = changed_lines(mutant["diff"])
        key = (args.project, mutant["path"], mutant["function"], mutant["operator"], tuple(removed), tuple(plus))
        source = function_source(args.root / mutant["path"], mutant["function"])
        if key in known or source is None:
            continue
        known.add(key)
        sample.append({"project": args.project, "commit": args.commit, "path": mutant["path"],
                       "function": mutant["function"], "operator": mutant["operator"], "removed": removed,
                       "added": plus, "source": source, "label": "", "why": ""})
        added += 1
    SAMPLE.write_text(json.dumps(sample, indent=1) + "\n")
    print(f"{added} survivors added; {len(sample)} in {SAMPLE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
