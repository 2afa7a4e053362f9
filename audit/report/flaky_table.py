"""The terminal table of ``audit flaky``: flaky and failing tests, rates, repro commands."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_ORDER = {"flaky": 0, "fail": 1, "error": 2, "not run": 3, "skip": 4, "pass": 5}
_STYLE = {"flaky": "bold yellow", "fail": "bold red", "error": "red", "not run": "magenta", "skip": "dim",
          "pass": "green"}


def verdict_text(test) -> str:
    """``pass (weak evidence)`` for a pass whose executions do not bound its failure rate, ``fail (weak
    evidence)`` for a test that failed every time but too few times to rule out a flake."""
    return f"{test.verdict} (weak evidence)" if test.evidence_strength == "weak" else test.verdict


def what_happened(test) -> str:
    """How executions that never finished ended: 'timeout: still running after 3s (2 of 2)'."""
    parts = []
    for outcome in ("timeout", "crashed"):
        count = test.outcomes.get(outcome, 0)
        digest = next((s.digest for s in test.failing_settings if s.outcome == outcome), outcome)
        if count:
            parts.append(f"{digest} ({count} of {test.executions})")
    return "; ".join(parts)


def plan_lines(plan: dict) -> list[str]:
    """The plan in words: what each kind of test will get, and what that can prove."""
    lines = [f"plan: one pass of the suite takes {plan['pass_seconds']:.1f}s; {plan['seconds_left']:.0f}s of budget "
             f"left on {plan['workers']} workers"]
    fast, slow, alone = plan["fast"], plan["slow"], plan["alone"]
    if fast["tests"]:
        drawing = (f" (the {fast['drawing']} that draw randomness: about {fast['drawing_executions_each']}, "
                   f"bounding it below {fast['drawing_rate_bound']:.1%})" if fast["drawing"] else "")
        lines.append(f"  {fast['tests']} fast tests (under {plan['slow_threshold']:g}s): about {fast['executions_each']} "
                     f"executions each{drawing}; a clean record bounds the failure rate below {fast['rate_bound']:.1%}")
    for part, name in ((slow, "slow tests, in turns of their own"), (alone, "tests run alone (memory)")):
        if part["tests"]:
            weak = " (too few to call them not flaky)" if part["rate_bound"] > 0.05 else ""
            lines.append(f"  {part['tests']} {name}, {part['seconds']:.1f}s a pass: about {part['executions_each']} "
                         f"executions each; a clean record bounds the failure rate below {part['rate_bound']:.0%}{weak}")
    return lines


def _settings_summary(test) -> str:
    """The settings the failures share, e.g. 'threads=1; deterministic=on (4/4)'."""
    fails = test.failing_settings
    happened = what_happened(test)
    if happened:
        return happened
    if not fails:
        return ""
    parts = []
    for key in ("threads", "deterministic", "hashseed", "order"):
        values = {str(getattr(f, key)) for f in fails if getattr(f, key) is not None}
        if len(values) == 1:
            value = values.pop()
            if key == "order":
                value = value.split(":")[0]
            parts.append(f"{key}={value}")
    shared = "; ".join(parts)
    return f"{shared} ({len(fails)} shown)" if shared else f"varied ({len(fails)} shown)"


def build_table(result, show_all: bool = False) -> Table:
    table = Table(title=f"audit flaky: {result.project}", show_lines=False)
    for col, kw in (("test", {"overflow": "fold"}), ("verdict", {}), ("failed/ran", {"justify": "right"}),
                    ("rate [95% CI]", {"justify": "right"}), ("failing settings", {"overflow": "fold"})):
        table.add_column(col, **kw)
    rows = sorted(result.tests, key=lambda t: (_ORDER.get(t.verdict, 9), t.nodeid))
    for t in rows:
        if t.verdict == "pass" and not show_all:
            continue
        ci = f"{t.rate:.1%} [{t.interval[0]:.1%}, {t.interval[1]:.1%}]" if t.executions else "-"
        detail = t.not_run_reason if t.verdict == "not run" else _settings_summary(t)
        table.add_row(escape(t.nodeid), f"[{_STYLE.get(t.verdict, '')}]{verdict_text(t)}[/]",
                      f"{t.failures}/{t.executions}", ci, escape(detail or ""))
    return table


def _print_causes(test, console: Console) -> None:
    """Why (source, p-value, evidence), where (draw sites, call path) and the fix, per cause."""
    for cause in test.causes:
        p = cause.p_value
        console.print(f"  why: [bold]{escape(cause.source)}[/] ({cause.status})" + (f" (p={p:.1e})" if p is not None else "")
                      + f": {escape(cause.evidence)}", highlight=False, soft_wrap=True)
        sites = ", ".join(f"{s} ({s.function})" for s in cause.sites)
        if sites:
            console.print(f"  where: {escape(sites)}", highlight=False, soft_wrap=True)
        elif cause.trace_error:
            console.print(f"  where: not traced: {escape(cause.trace_error)}", highlight=False, soft_wrap=True)
        if cause.call_path:
            console.print(f"  path: {escape(' -> '.join(cause.call_path))}", highlight=False, soft_wrap=True)
        if cause.polluter:
            console.print(f"  polluter: {escape(cause.polluter)}", highlight=False, soft_wrap=True)
        if cause.hint:
            console.print(f"  fix: {escape(cause.hint)}", highlight=False, soft_wrap=True)


def fix_line(test, result) -> str | None:
    """The ``--fix`` outcome of a test: its patch and whether it helped, or why it got none."""
    fix = test.fix
    if fix is not None:
        what = f"{fix.kind}: {fix.note}" if fix.note else fix.kind
        return f"{fix.words()} ({what}): {fix.path}"
    reason = (result.fixes.get("unfixed") or {}).get(test.nodeid)
    return f"none: {reason}" if reason else None


def print_result(result, console: Console | None = None, show_all: bool = False) -> None:
    console = console or Console()
    counts = {}
    for t in result.tests:
        counts[t.verdict] = counts.get(t.verdict, 0) + 1
    if any(t.verdict != "pass" for t in result.tests) or show_all:
        console.print(build_table(result, show_all))
    for t in result.tests:
        if t.repro and t.verdict in ("flaky", "fail", "error"):
            mark = {True: "fails again when run", False: "did not fail when re-run",
                    None: "not re-run"}[t.repro_verified]
            if t.repro_runs:
                mark = f"failed {t.repro_runs[0]}/{t.repro_runs[1]} runs"
            console.print(f"[bold]{escape(t.nodeid)}[/] repro ({mark}):", highlight=False)
            console.print(f"  {escape(t.repro)}", highlight=False, soft_wrap=True)
            if t.counterfactual and t.counterfactual_runs:
                cf, cn = t.counterfactual_runs
                console.print(f"  counterfactual, the cause pinned (failed {cf}/{cn} runs):", highlight=False)
                console.print(f"  {escape(t.counterfactual)}", highlight=False, soft_wrap=True)
            if t.masked:
                console.print(f"  [yellow]{escape(t.evidence)}[/]", highlight=False)
            if what_happened(t):
                console.print(f"  what happened: {escape(what_happened(t))}", highlight=False, soft_wrap=True)
            _print_causes(t, console)
            patch = fix_line(t, result)
            if patch:
                console.print(f"  patch: {escape(patch)}", highlight=False, soft_wrap=True)
    writers = [t for t in result.tests if t.writes]
    if writers:
        console.print("tests that write into the project (a classic source of order dependence; the audit ran "
                      "them in a mirror, so your tree is unchanged):", highlight=False, soft_wrap=True)
        for t in writers:
            console.print(f"  {escape(t.nodeid)}: {escape(', '.join(t.writes))}", highlight=False, soft_wrap=True)
    weak = result.evidence.get("weak", 0)
    summary = ", ".join(f"{n} {v}" + (f" ({weak} with weak evidence)" if v == "pass" and weak else "")
                        for v, n in sorted(counts.items(), key=lambda kv: _ORDER.get(kv[0], 9)))
    settings = result.settings
    console.print(
        f"{len(result.tests)} tests: {summary}. {result.executions} executions in "
        f"{result.interpreters} interpreters, {result.seconds:.0f}s ({result.stopped}).", highlight=False,
        soft_wrap=True)
    console.print(
        f"varied: rng {','.join(settings['rng_varied']) or 'none'}; hash seed "
        f"{settings['hashseed']}; threads {settings['threads']}; orders {','.join(settings['orders'])}; "
        f"determinism {settings['determinism']}; CUDA {settings['cuda']}; plan seed "
        f"{settings['master_seed']}", highlight=False)
    forks = settings.get("fork_server") or {}
    if forks.get("used"):
        console.print(f"interpreters: {forks['forked_units']} forked from zygotes that had imported pytest and "
                      f"torch, {forks['fresh_units']} started fresh; {forks['hashseeds']} hash seeds",
                      highlight=False, soft_wrap=True)
    for note in forks.get("notes") or ():
        console.print(f"[yellow]fork server[/]: {escape(note)}", highlight=False, soft_wrap=True)
    if forks.get("fallback") and (forks.get("used") or "turned off" not in forks["fallback"]):
        console.print(f"[yellow]fork server[/]: fresh interpreters from then on: {escape(forks['fallback'])}",
                      highlight=False, soft_wrap=True)
    if result.flaky and not any(t.causes for t in result.tests) and not result.interrupted:
        console.print("to find why and where each flaky test fails: audit flaky without --no-attribute",
                      highlight=False)
    if result.attribution:
        att = result.attribution
        console.print(f"attribution: {att.get('executions', 0)} executions in {att.get('interpreters', 0)} "
                      f"interpreters, {att.get('seconds', 0):.0f}s of the {settings.get('budget', 0):.0f}s budget "
                      f"(its share: {att.get('budget', 0):.0f}s)", highlight=False, soft_wrap=True)
    if result.fixes:
        fixed = [t.fix for t in result.tests if t.fix]
        console.print(f"patches: {len(fixed)} written to {escape(result.fixes['dir'])}, "
                      f"{sum(f.verified for f in fixed)} verified against their repro "
                      f"({result.fixes.get('seconds', 0):.0f}s); apply one with patch -p1 from the project root",
                      highlight=False, soft_wrap=True)
    passes = [t for t in result.tests if t.verdict == "pass"]
    if passes:
        weakest = min(passes, key=lambda t: t.executions)
        console.print(f"least sampled passing test: {escape(weakest.nodeid)}: {escape(weakest.confidence)}",
                      highlight=False)
    if weak:
        ev = result.evidence
        console.print(
            f"weak evidence: {weak} passing tests ran too few times to bound their failure rate below "
            f"{ev['rate']:.0%} ({ev['confidence']:.0%} confidence); about {ev['more_executions']} more executions, "
            f"at least {ev['more_seconds']:.0f}s more budget on this machine, would bound them all "
            f"(audit flaky --resume --budget ...)", highlight=False, soft_wrap=True)
