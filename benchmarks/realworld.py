"""audit flaky and audit mutate on public PyTorch projects, as a new user would run them.

For each project of ``benchmarks/realworld.toml`` found checked out (at its commit) under
``--checkouts DIR/<name>``: one plain ``pytest`` pass (its time), ``audit flaky`` with default
settings, a plain-pytest rerun check of every test it calls flaky (``--reruns`` fresh
interpreters each, the way a user would confirm it), and ``audit mutate``. Prints one Markdown
table per project and writes the raw numbers with ``--json``. Not run in CI: it takes tens of
minutes and needs the projects installed in the running environment (``deps`` with --no-deps,
so that the installed torch stays the only torch).

    python benchmarks/realworld.py --checkouts /tmp/rw [--only einops] [--budget 150] [--reruns 20]
        [--results DIR] [--no-flaky] [--no-mutate]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).resolve().parent


def _timed(cmd: list[str], cwd: Path, timeout: float) -> tuple[float, subprocess.CompletedProcess | None]:
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    except subprocess.TimeoutExpired:
        return time.monotonic() - started, None
    return time.monotonic() - started, proc


def _config_args(repo: dict) -> list[str]:
    return [*repo.get("pytest_args", []), *repo.get("test_paths", [])]


def plain_pass(root: Path, repo: dict) -> dict:
    seconds, proc = _timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_config_args(repo)],
                           root, 3600)
    tail = (proc.stdout.strip().splitlines() or [""])[-1] if proc else "timed out"
    return {"seconds": round(seconds, 1), "summary": tail}


def rerun_check(root: Path, nodeid: str, reruns: int) -> dict:
    """Failures of *nodeid* over *reruns* plain ``python -m pytest NODEID`` processes."""
    failures = 0
    for _ in range(reruns):
        _, proc = _timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                          nodeid], root, 900)
        failures += proc is None or proc.returncode != 0
    return {"reruns": reruns, "failures": failures}


def audit(root: Path, command: str, out: Path, extra: list[str]) -> tuple[float, dict | None, str]:
    """``audit COMMAND`` on *root* as a user types it; its wall time, JSON result and last lines."""
    seconds, proc = _timed([sys.executable, "-m", "audit", command, str(root), "--no-record", "--json", str(out),
                            *extra], root, 7200)
    data = json.loads(out.read_text()) if out.is_file() else None
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:]) if proc else "timed out"
    return seconds, data, tail


def configure(root: Path, repo: dict) -> list[str]:
    """[tool.audit] keys a user would set for this project (appended to its pyproject.toml in the
    checkout, which is a scratch copy): returns them as text lines, for the table."""
    lines = []
    if repo.get("test_paths"):
        lines.append(f"test_paths = {json.dumps(repo['test_paths'])}")
    if repo.get("pytest_args"):
        lines.append(f"pytest_args = {json.dumps(repo['pytest_args'])}")
    mutate = [f"paths_to_mutate = {json.dumps(repo['mutate_paths'])}"] if repo.get("mutate_paths") else []
    if repo.get("deselect"):
        mutate.append(f"deselect = {json.dumps(repo['deselect'])}")
    text = (root / "pyproject.toml").read_text() if (root / "pyproject.toml").is_file() else ""
    if "[tool.audit]" not in text and (lines or mutate):
        block = "\n[tool.audit]\n" + "\n".join(lines) + "\n"
        if mutate:
            block += "\n[tool.audit.mutate]\n" + "\n".join(mutate) + "\n"
        (root / "pyproject.toml").write_text(text + block)
    return lines + mutate


def run_flaky(root: Path, keep: Path, repo: dict, args) -> dict:
    """``audit flaky`` with the default settings but *args*' budget, and a plain-pytest rerun
    check of every test it calls flaky."""
    seconds, data, tail = audit(root, "flaky", keep / f"{repo['name']}-flaky.json", ["--budget", str(args.budget)])
    flaky = {"seconds": round(seconds, 1), "tail": tail}
    if data:
        counts: dict[str, int] = {}
        for t in data["tests"]:
            counts[t["verdict"]] = counts.get(t["verdict"], 0) + 1
        flaky.update(tests=len(data["tests"]), executions=data["executions"], verdicts=counts,
                     weak=data.get("evidence", {}).get("weak", 0), plan=data.get("plan", {}),
                     flaky_tests={t["nodeid"]: {"rate": t["rate"], "failures": t["failures"],
                                                "executions": t["executions"],
                                                "repro_verified": t["repro_verified"],
                                                "rerun": rerun_check(root, t["nodeid"], args.reruns)}
                                  for t in data["tests"] if t["verdict"] == "flaky"})
    return flaky


def run_repo(root: Path, repo: dict, args) -> dict:
    os.environ.update(repo.get("env", {}))   # what the project's own CI sets before pytest
    settings = configure(root, repo)
    out: dict = {"name": repo["name"], "commit": repo["commit"], "configured": settings,
                 "mutate_args": repo.get("mutate_args", []), "env": repo.get("env", {}),
                 "plain": None if args.no_flaky else plain_pass(root, repo)}
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.results or Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        if not args.no_flaky:
            out["flaky"] = run_flaky(root, keep, repo, args)
        if not args.no_mutate:
            seconds, data, tail = audit(root, "mutate", keep / f"{repo['name']}-mutate.json", repo.get("mutate_args", []))
            out["mutate"] = {"seconds": round(seconds, 1), "tail": tail}
            if data:
                out["mutate"].update(mutants=len(data["mutants"]), score=data["score"], partial=data["partial"],
                                     counts=data["counts"])
    return out


def table(r: dict) -> str:
    f, m = r.get("flaky", {}), r.get("mutate", {})
    plain = f"{r['plain']['seconds']}s ({r['plain']['summary']})" if r.get("plain") else "-"
    rows = [("tests", f.get("tests", "-")), ("plain pytest pass", plain),
            ("audit flaky", f"{f.get('executions', '-')} executions in {f.get('seconds')}s"),
            ("verdicts", ", ".join(f"{n} {v}" for v, n in sorted(f.get("verdicts", {}).items()))),
            ("weak evidence", f.get("weak", "-"))]
    for nodeid, t in f.get("flaky_tests", {}).items():
        rerun = t["rerun"]
        rows.append((f"flaky: {nodeid}", f"{t['failures']}/{t['executions']} in the audit; plain reruns "
                                         f"{rerun['failures']}/{rerun['reruns']}; repro verified {t['repro_verified']}"))
    if m:
        rows.append(("audit mutate", f"{m.get('mutants', '-')} mutants, score {m.get('score')}, {m.get('seconds')}s"
                                     + (" (partial)" if m.get("partial") else "")))
    env = [f"{k}={v}" for k, v in r.get("env", {}).items()]
    rows.append(("configured", "; ".join(env + r["configured"] + r.get("mutate_args", [])) or "nothing"))
    lines = [f"### {r['name']} @ {r['commit'][:10]}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkouts", required=True, type=Path, help="folder holding one checkout per project")
    parser.add_argument("--only", help="comma-separated project names")
    parser.add_argument("--budget", type=float, default=150.0)
    parser.add_argument("--reruns", type=int, default=20)
    parser.add_argument("--no-mutate", action="store_true")
    parser.add_argument("--no-flaky", action="store_true")
    parser.add_argument("--json", type=Path, help="write the table's numbers here")
    parser.add_argument("--results", type=Path, help="keep each audit's full JSON result in this folder")
    args = parser.parse_args(argv)
    repos = tomllib.loads((HERE / "realworld.toml").read_text())["repo"]
    chosen = set(args.only.split(",")) if args.only else None
    results = []
    for repo in repos:
        root = args.checkouts / repo["name"]
        if (chosen and repo["name"] not in chosen) or not root.is_dir():
            continue
        results.append(run_repo(root, repo, args))
        print(table(results[-1]) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
