"""One module per ``audit`` subcommand (see ``audit.cli``)."""

import argparse

from rich.markup import escape


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    """The PATH argument every command takes: the project to audit."""
    parser.add_argument("path", nargs="?", default=".", metavar="PATH",
                        help="the project folder (default: the current directory)")


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """--db and --no-record: every flaky and mutate run is recorded in the history store by default."""
    parser.add_argument("--db", metavar="FILE", help="history store (default: [tool.audit] db, reports/audit.sqlite)")
    parser.add_argument("--no-record", action="store_true", help="do not record this run in the history store")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor and --address: run on this machine's cores or on a Ray cluster."""
    parser.add_argument("--executor", choices=["local", "ray"],
                        help="where the work runs: local cores or a Ray cluster (default: [tool.audit] executor, "
                             "local); ray needs pip install 'ml-audit[ray]'")
    parser.add_argument("--address", metavar="ADDR",
                        help="the Ray cluster to use (default: [tool.audit] address, $RAY_ADDRESS, "
                             "else a local Ray instance)")


def print_recorded(recorded, console) -> None:
    """One line saying where the run went in the history store, or why it could not go there."""
    if recorded is None:
        return
    if recorded.error:
        console.print(f"[yellow]not recorded in the history store:[/] {escape(recorded.error)}", highlight=False)
    elif not recorded.again:
        console.print(f"nothing new since it was recorded as run {recorded.run_id} in {escape(str(recorded.path))}",
                      highlight=False)
    else:
        console.print(f"recorded as run {recorded.run_id} in {escape(str(recorded.path))}", highlight=False)
