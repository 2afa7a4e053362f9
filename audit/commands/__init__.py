"""One module per ``audit`` subcommand (see ``audit.cli``)."""

import argparse


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    """The PATH argument every command takes: the project to audit."""
    parser.add_argument("path", nargs="?", default=".", metavar="PATH",
                        help="the project folder (default: the current directory)")
