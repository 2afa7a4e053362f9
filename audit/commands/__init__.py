"""One module per ``audit`` subcommand (see ``audit.cli``)."""

import argparse


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    """The PATH argument every command takes: the project to audit."""
    parser.add_argument("path", nargs="?", default=".", metavar="PATH",
                        help="the project folder (default: the current directory)")


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """--db and --no-record: every flaky and mutate run is recorded in the history store by default."""
    parser.add_argument("--db", metavar="FILE", help="history store (default: [tool.audit] db, reports/audit.sqlite)")
    parser.add_argument("--no-record", action="store_true", help="do not record this run in the history store")


def record_history(cfg, args, result: dict, *, duration: float | None, settings: dict, console) -> int | None:
    """Record *result* in the history store unless --no-record; returns the run id.

    A store that cannot take the run (damaged, foreign, locked) is reported and the result is kept
    in the files the user asked for: the audit itself is not lost.
    """
    if args.no_record:
        return None
    from audit import vcs
    from audit.errors import AuditError
    from audit.store import Store, store_path

    path = store_path(cfg, args.db)
    try:
        with Store(path) as store:
            run_id = store.record(result, project=str(cfg.root), commit=vcs.head_commit(cfg.root),
                                  branch=vcs.branch(cfg.root), duration=duration, settings=settings)
    except AuditError as exc:
        console.print(f"[yellow]not recorded in the history store:[/] {exc}", highlight=False)
        return None
    console.print(f"recorded as run {run_id} in {path}", highlight=False)
    return run_id
