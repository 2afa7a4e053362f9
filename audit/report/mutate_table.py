"""The terminal view of ``audit mutate``: score tables and the surviving ML mutants as diffs."""

from __future__ import annotations

from rich.console import Console, Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from audit.model.mutate import MutateResult, Tally
from audit.mutate import catalog

COLUMNS = ("killed", "seed_dependent", "survived", "timeout", "no_coverage", "unchecked", "harness_error", "error")
HEADERS = ("killed", "seed", "surv", "t/o", "no cov", "unchk", "harn", "err")


def _score_text(score: float | None) -> Text:
    if score is None:
        return Text("-", style="dim")
    style = "green" if score >= 80 else "yellow" if score >= 60 else "red"
    return Text(f"{score:.1f}%", style=style)


def score_table(title: str, rows: dict[str, Tally], first: str, total: Tally | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first, no_wrap=True)
    for header in HEADERS:
        table.add_column(header, justify="right")
    table.add_column("score", justify="right")
    for name, tally in rows.items():
        table.add_row(name, *(str(getattr(tally, c)) for c in COLUMNS), _score_text(tally.score))
    if total is not None:
        table.add_row(Text("all", style="bold"), *(str(getattr(total, c)) for c in COLUMNS), _score_text(total.score),
                      end_section=True)
    return table


def survivor(mutant) -> Group:
    op = catalog.info(mutant.operator)
    head = Text.assemble((f"{mutant.path}:{mutant.line}", "bold"), f"  {mutant.function}  ",
                         (mutant.operator, "magenta"), "  ", (f"[{mutant.id}]", "dim"))
    bug = Text(f"  bug: {op.bug}" if op else "", style="dim")
    article = "an" if mutant.killer[0] in "aeiou" else "a"
    kill = Text.assemble(f"  would be killed by {article} ", (mutant.killer, "cyan"), " test")
    return Group(head, bug, kill, Syntax(mutant.diff.rstrip("\n"), "diff", theme="ansi_dark", background_color="default"))


def render(result: MutateResult, console: Console | None = None, functions: int = 15, survivors: int = 40) -> None:
    console = console or Console()
    overall = result.overall
    if not result.mutants:
        if result.interrupted:
            console.print("interrupted before any mutant was checked")
        else:
            console.print("no mutants were generated"
                          + (f" on lines changed since {result.since}" if result.since else ""))
        return
    console.print(score_table("mutation score by operator", result.by_operator(), "operator", overall))
    console.print(score_table("by module", result.by_module(), "module"))
    worst = sorted(result.by_function().items(), key=lambda kv: (kv[1].score if kv[1].score is not None else 101,
                                                                kv[0]))[:functions]
    console.print(score_table(f"weakest functions (up to {functions})", dict(worst), "function"))
    ml = result.survivors(ml_only=True)
    if ml:
        console.print(Text(f"\n{len(ml)} surviving ML mutants", style="bold"))
        for mutant in ml[:survivors]:
            console.print(survivor(mutant))
        if len(ml) > survivors:
            console.print(Text(f"... and {len(ml) - survivors} more (see --json)", style="dim"))
    seeded = [m for m in result.mutants if m.status == "seed_dependent"]
    if seeded:
        console.print(Text(f"\n{len(seeded)} seed-dependent kills (not counted as detected)", style="bold"))
        for mutant in seeded:
            console.print(Text.assemble(f"  {mutant.path}:{mutant.line}  {mutant.function}  ",
                                        (mutant.operator, "magenta"), f"  {mutant.verdict}  ",
                                        (", ".join(mutant.killed_by), "dim")))
    broken = [m for m in result.mutants if m.status == "harness_error"]
    if broken:
        console.print(Text(f"\n{len(broken)} mutants without a verdict (the test run itself failed; "
                           f"not counted as kills)", style="bold yellow"))
        for mutant in broken[:survivors]:
            reason = mutant.reason.splitlines()[0] if mutant.reason else "no reason recorded"
            console.print(Text(f"  {mutant.id}: {reason}"), highlight=False)
    for note in result.notes:
        console.print(Text("note: " + note, style="yellow"), highlight=False)
    score = result.score
    line = Text.assemble("mutation score ", _score_text(score),
                         f"  ({overall.killed + overall.timeout} detected of {overall.scored}"
                         + (f", {overall.seed_dependent} seed-dependent kills apart" if overall.seed_dependent else "")
                         + f"; {len(result.mutants)} mutants in {result.elapsed:.0f}s)")
    if result.partial:
        line.append(f"  PARTIAL: {overall.unchecked} of {len(result.mutants)} mutants not checked", style="bold yellow")
        line.append(" (interrupted)" if result.interrupted else "", style="bold yellow")
    if result.fail_under is not None:
        line.append(f"  fail_under {result.fail_under:g}: ")
        line.append("pass" if result.passed else "FAIL", style="green" if result.passed else "bold red")
    console.print(line)


def operators_table() -> Table:
    from audit.mutate.registry import all_operators

    table = Table(title="mutation operators (--operators ml|mutmut|all|NAME,...)", title_justify="left")
    for col in ("name", "bug it models", "example", "killed by a"):
        table.add_column(col)
    for op in all_operators().values():
        table.add_row(op.name, op.bug, op.example if op.ml else "", op.killer)
    return table
