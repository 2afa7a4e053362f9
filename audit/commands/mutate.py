"""``audit mutate``: how well does the suite catch the bugs ML code really has?"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audit.commands import add_history_arguments, add_project_argument, record_history

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
    add_history_arguments(parser)


def run(args) -> int:
    console = Console()
    from audit.report.mutate_table import operators_table, render

    if args.list_operators:
        console.print(operators_table())
        return 0
    from audit import api
    from audit.mutate.engine import run_mutate
    from audit.report import mutate_json, stryker

    cfg = api.configure(args.path, "mutate", operators=args.operators, since=args.since,
                        fail_under=args.fail_under, max_children=args.max_children)
    try:
        with Progress(TextColumn("mutating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("mutants", total=None)
            result = run_mutate(cfg, progress=lambda done, total: bar.update(task, completed=done, total=total))
    except KeyboardInterrupt:  # stopped before any mutant ran
        console.print("interrupted before any mutant was checked: nothing to report")
        return INTERRUPTED
    render(result, console)
    data = result.to_json()
    if args.json:
        console.print(f"wrote {mutate_json.write(result, args.json)}")
    if args.stryker:
        console.print(f"wrote {stryker.write(result, args.stryker)}")
    record_history(cfg, args, data, duration=result.elapsed, console=console,
                   settings={"operators": cfg.mutate.operators, "since": cfg.mutate.since or None})
    return INTERRUPTED if result.interrupted else result.exit_code
