"""``audit review``: the pre-release gate. Exit 0 when clear, 1 on a regression, 2 on usage errors."""

from __future__ import annotations

from audit.commands import add_project_argument

NAME = "review"
HELP = "compare the current audit results with a baseline and fail on regressions (pre-release gate)"


def add_arguments(parser):
    add_project_argument(parser)
    parser.add_argument("--baseline", action="append", required=True, metavar="REF|FILE|RUN_ID",
                        help="what to compare with: a recorded run id (12 or run:12), a git ref (the latest runs "
                             "recorded at that commit) or a flaky/mutate result JSON file; a file may be given "
                             "twice (one flaky, one mutate result)")
    parser.add_argument("--current", action="append", metavar="FILE|RUN_ID",
                        help="the state to judge (default: the latest flaky and mutate runs in the store)")
    parser.add_argument("--changed-since", metavar="REF",
                        help="git ref for the changed-lines check (default: the baseline's commit)")
    parser.add_argument("--out", metavar="DIR", help="where review.md and review.json go "
                        "(default: [tool.audit] reports_dir)")
    parser.add_argument("--db", metavar="FILE", help="history store (default: [tool.audit] db)")
    parser.add_argument("--max-score-drop", type=float, metavar="POINTS",
                        help="largest allowed fall of the mutation score (default: [tool.audit.review])")


def run(args) -> int:
    from rich.console import Console
    from rich.markup import escape

    from audit import api

    review = api.review(args.path, baseline=args.baseline, current=args.current, db=args.db,
                        changed_since=args.changed_since, out=args.out, max_score_drop=args.max_score_drop)
    console = Console(highlight=False)
    b, c = review.baseline, review.current
    console.print(f"baseline: {escape(b.flaky_source or '–')} / {escape(b.mutate_source or '–')}")
    console.print(f"current:  {escape(c.flaky_source or '–')} / {escape(c.mutate_source or '–')}")
    for reason in review.reasons:
        console.print(f"[bold red]FAIL[/] {reason.check}: {escape(reason.message)}")
        for line in reason.evidence:
            console.print("    " + escape(line).replace("\n", "\n      "))
    for line in review.passed:
        console.print(f"[green]ok[/]   {escape(line)}")
    for line in review.skipped:
        console.print(f"[yellow]skip[/] {escape(line)}")
    for path in review.written:
        console.print(f"wrote {escape(str(path))}")
    verdict = "[bold red]release blocked[/]" if review.reasons else "[bold green]clear to release[/]"
    console.print(verdict)
    return review.exit_code
