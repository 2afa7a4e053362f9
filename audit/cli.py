"""The ``audit`` command line: a thin layer that parses arguments and calls the API.

Each subcommand is one module in ``audit/commands/`` defining ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; adding a command means adding a module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading

from rich.console import Console
from rich.markup import escape

import audit
import audit.commands
from audit.errors import AuditError


def _command_modules():
    for info in sorted(pkgutil.iter_modules(audit.commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"audit.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audit",
        description="Find flaky tests and measure how well a PyTorch project's pytest suite catches ML bugs.",
    )
    parser.add_argument("--version", action="version", version=f"ml-audit {audit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _terminate(signum, frame):
    raise KeyboardInterrupt   # a plain `kill` (a CI timeout) stops a run the way Ctrl-C does: cleanly


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        Console(stderr=True).print(f"audit {args.command}: interrupted", highlight=False)
        return 130
    except AuditError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]audit {args.command}: error:[/] {escape(str(exc))}", highlight=False)
        return exc.exit_code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
