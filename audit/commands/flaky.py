"""``audit flaky``: rerun the suite under varied seeds, threads, order and determinism.

Exit 0 when no test is flaky, 1 when some are, 2 on usage or project errors, 130 when
interrupted (the partial result is printed and saved; ``--resume`` carries on).
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from audit.commands import add_executor_arguments, add_history_arguments, add_project_argument, print_recorded

NAME = "flaky"
HELP = "find flaky tests: rerun the suite under varied RNG seeds, threads, hash seeds, order and determinism"


def _csv(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if text.strip() in ("none", ""):
            return []
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def add_arguments(parser):
    add_project_argument(parser)
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="wall-clock seconds to spend at most (default 150)")
    parser.add_argument("--runs", type=int, metavar="N",
                        help="stop after about N executions per test (default: adaptive)")
    parser.add_argument("--json", metavar="FILE", help="write the ml-audit.flaky/4 JSON report to FILE")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="seconds one test execution may take before it counts as hung (default 60)")
    parser.add_argument("--workers", type=int, metavar="N", help="parallel pytest sessions (default: CPU cores)")
    parser.add_argument("--seed", type=int, metavar="N", help="master seed of the plan (repeat an audit)")
    parser.add_argument("--rng", type=_csv(str), metavar="FAMILIES",
                        help="RNG families to vary: torch,numpy,random or 'none'")
    parser.add_argument("--threads", type=_csv(int), metavar="COUNTS",
                        help="torch thread counts to try, e.g. 1,2,4 (default: 1, 2 and the default)")
    parser.add_argument("--orders", type=_csv(str), metavar="ORDERS",
                        help="test orders: file,reversed,shuffle")
    parser.add_argument("--hashseed", action=argparse.BooleanOptionalAction, default=None,
                        help="vary PYTHONHASHSEED between interpreters (default on)")
    parser.add_argument("--determinism", action=argparse.BooleanOptionalAction, default=None,
                        help="toggle torch.use_deterministic_algorithms (default on)")
    parser.add_argument("--fork-server", action=argparse.BooleanOptionalAction, default=None,
                        help="fork new interpreters from zygotes that have imported pytest and torch "
                             "(default on where the platform allows; --no-fork-server: start each fresh)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the last audit of this project after Ctrl-C; --budget counts the "
                             "time already spent, so raise it (or --runs) to go further after a full run")
    parser.add_argument("--attribute", action=argparse.BooleanOptionalAction, default=None,
                        help="find why and where each flaky test fails, within the same --budget: sequential "
                             "one-factor experiments, the polluter of order-dependent tests, RNG call sites and "
                             "fix hints (default on; --no-attribute: detection only)")
    parser.add_argument("--attribute-share", type=float, metavar="FRACTION",
                        help="the part of --budget kept for attribution while detection runs (default 0.6)")
    parser.add_argument("--attribute-budget", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    parser.add_argument("--junit", metavar="FILE",
                        help="write a JUnit XML file: one testcase per test, verdict, rate and cause as properties")
    parser.add_argument("--quarantine", metavar="FILE",
                        help="write the flaky tests to FILE for pytest's --audit-quarantine option")
    parser.add_argument("--fix", metavar="DIR",
                        help="write a unified diff to DIR for each flaky test whose confirmed cause has a mechanical "
                             "fix (seeded generator, zeros for empty, a tolerance, monkeypatch.setenv), each checked "
                             "against the cause's minimal repro in a mirror of the project; your tree is not touched")
    parser.add_argument("--all", action="store_true", help="list every test in the table, not only the bad ones")
    add_executor_arguments(parser)
    add_history_arguments(parser)


def run(args) -> int:
    from audit import api
    from audit.report import flaky_table

    orders = args.orders
    if orders is not None and not orders:
        orders = ["file"]
    console = Console()
    with Progress(TextColumn("[bold]audit flaky[/]"), BarColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("collecting tests", total=None)

        def progress(executions, interpreters, flaky, elapsed, budget, pending, **_):
            bar.update(task, completed=min(elapsed, budget), total=budget,
                       description=f"{executions} executions, {interpreters} interpreters, "
                                   f"{flaky} flaky, {pending} tests still sampled")

        def on_plan(plan):
            for line in flaky_table.plan_lines(plan):
                bar.console.print(escape(line), highlight=False, soft_wrap=True)

        result = api.flaky(args.path, progress=progress, on_plan=on_plan, resume=args.resume, json=args.json,
                           junit=args.junit, quarantine=args.quarantine, fix=args.fix, record=not args.no_record, db=args.db,
                           attribution_progress=lambda phase, **_: bar.update(task, description=f"attribution: {phase}"),
                           budget=args.budget, runs=args.runs, timeout=args.timeout, workers=args.workers,
                           seed=args.seed, rng=args.rng, threads=args.threads, orders=orders,
                           hashseed=args.hashseed, determinism=args.determinism, attribute=args.attribute,
                           fork_server=args.fork_server,
                           attribute_share=args.attribute_share, attribute_budget=args.attribute_budget,
                           executor=args.executor, address=args.address)
    for note in result.deprecations:
        console.print(f"[yellow]deprecated[/]: {escape(note)}", highlight=False, soft_wrap=True)
    flaky_table.print_result(result, console, show_all=args.all)
    for what, path in (("JSON report", args.json), ("JUnit XML", args.junit), ("quarantine list", args.quarantine)):
        if path:
            console.print(f"{what}: {escape(path)}", highlight=False)
    print_recorded(result.recorded, console)
    if result.error:
        console.print(f"[bold red]audit flaky: error:[/] {escape(result.error)}; partial results above; "
                      f"continue with: audit flaky {escape(args.path)} --resume", highlight=False)
        return 2
    if result.interrupted:
        console.print("[yellow]interrupted[/]: partial results above; "
                      f"continue with: audit flaky {escape(args.path)} --resume", highlight=False)
        return 130
    return 1 if result.flaky else 0
