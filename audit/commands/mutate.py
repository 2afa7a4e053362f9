"""``audit mutate``: how well does the suite catch the bugs ML code really has?"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audit.commands import add_executor_arguments, add_history_arguments, add_project_argument, print_recorded

NAME = "mutate"
INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
HELP = "mutation-test the suite with ML-aware operators on mutmut; score by operator, module, function"


def add_arguments(parser):
    add_project_argument(parser)
    parser.add_argument("--operators", metavar="SET",
                        help="ml, mutmut, all, or a comma-separated list of operator names (default: all)")
    parser.add_argument("--since", metavar="GIT_REF", help="mutate only lines changed since GIT_REF")
    parser.add_argument("--json", metavar="FILE", help="write the result as ml-audit.mutate/2 JSON")
    parser.add_argument("--stryker", metavar="FILE", help="write Stryker mutation-testing-report-schema JSON")
    parser.add_argument("--fail-under", type=float, metavar="SCORE", help="exit 1 when the score (0-100) is lower")
    parser.add_argument("--max-children", type=int, metavar="N", help="parallel mutant workers (default: CPU cores)")
    parser.add_argument("--list-operators", action="store_true", help="print the operators and exit")
    add_executor_arguments(parser)
    add_history_arguments(parser)


def run(args) -> int:
    console = Console()
    from audit.report.mutate_table import operators_table, render

    if args.list_operators:
        console.print(operators_table())
        return 0
    from audit import api

    try:
        with Progress(TextColumn("mutating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("mutants", total=None)
            result = api.mutate(args.path, progress=lambda done, total: bar.update(task, completed=done, total=total),
                                json=args.json, stryker=args.stryker, record=not args.no_record, db=args.db,
                                operators=args.operators, since=args.since, fail_under=args.fail_under,
                                max_children=args.max_children,
                                executor=args.executor, address=args.address)
    except KeyboardInterrupt:  # stopped before any mutant ran
        console.print("interrupted before any mutant was checked: nothing to report")
        return INTERRUPTED
    render(result, console)
    for path in (args.json, args.stryker):
        if path:
            console.print(f"wrote {escape(path)}", highlight=False)
    print_recorded(result.recorded, console)
    return INTERRUPTED if result.interrupted else result.exit_code
