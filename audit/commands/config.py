"""``audit config``: show every setting, its value for a project, and where it came from."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from audit.commands import add_project_argument
from audit.config import documented_keys, load_config

NAME = "config"
HELP = "show the [tool.audit] settings in force for a project"


def add_arguments(parser):
    add_project_argument(parser)


def run(args) -> int:
    from audit.project import project_root

    cfg = load_config(project_root(args.path))
    table = Table(title=f"settings for {cfg.root}  ({cfg.source or 'no pyproject.toml: defaults'})")
    for col in ("key", "type", "value", "default", "meaning"):
        table.add_column(col)
    for dotted, kind, default, doc in documented_keys():
        section, _, name = dotted.rpartition(".")
        value = getattr(cfg.section(section), name)
        table.add_row(dotted, kind, repr(value), repr(default), doc)
    Console().print(table)
    return 0
