"""The weekly report: its content checked against the store, in all three formats, and the CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from audit.cli import main
from audit.errors import AuditError
from audit.explain import FIX_HINTS, cause_text, setting_hints
from audit.model.flaky import FlakyResult, Setting
from audit.report.html import render_html
from audit.report.markdown import render_markdown
from audit.report.report_json import render_json
from audit.report.weekly import build_weekly, parse_since
from audit.store import Store
from test_store_history import (EXPECTED, FIXED, HOSTILE, NOW, build_history, flaky_ids, load, run_of,
                                survivors)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "audit.sqlite"
    store = build_history(path)
    yield store
    store.close()


@pytest.fixture(scope="module")
def report(history):
    return build_weekly(history, since="7d", until=NOW)


def _ids(tests):
    return {t["nodeid"] for t in tests}


def _verdicts(name: str) -> dict:
    return {t.nodeid: t for t in FlakyResult.from_json(load(name)).tests}


def test_flaky_tests_are_sorted_into_new_still_fixed_and_failing(report, history):
    flaky = report.flaky
    assert {k: _ids(flaky[k]) for k in EXPECTED} == EXPECTED
    assert flaky["new"] and flaky["still"] and flaky["fixed"]
    assert flaky["current_run"] == run_of(history, "flaky-C").id
    assert flaky["reference_run"] == run_of(history, "flaky-A").id
    assert not flaky["first_audit"]
    now = _verdicts("flaky-C")
    for entry in flaky["new"] + flaky["still"]:
        t = now[entry["nodeid"]]
        assert (entry["rate"], entry["failures"], entry["executions"], entry["repro"]) == \
               (t.rate, t.failures, t.executions, t.repro)
        assert entry["masked_by_reruns"] == t.masked and entry["draws"] == t.draws and entry["hints"]


def test_causes_are_the_models_records_with_their_words(report):
    """Each cause is the model's Cause (source, status, p-value, sites, evidence...) plus one
    line made from those fields: never a key=value dump of whatever the dict held."""
    now, before = _verdicts("flaky-C"), _verdicts("flaky-A")
    entries = report.flaky["new"] + report.flaky["still"]
    assert any(e["causes"] for e in entries)
    for entry in entries:
        model = now[entry["nodeid"]].causes
        assert [{k: v for k, v in c.items() if k not in ("text", "details")} for c in entry["causes"]] == \
               [c.to_json() for c in model]
        assert [c["text"] for c in entry["causes"]] == [cause_text(c) for c in model]
        for cause, text in zip(model, (c["text"] for c in entry["causes"])):
            assert text.startswith(f"{cause.source} ({cause.status}")
            assert "=" not in text.split(";")[0].replace("p = ", "")  # no key=value dump
            assert all(str(site) in text for site in cause.sites[:3])
    (fixed,) = report.flaky["fixed"]
    was = before[FIXED].causes
    assert [c["source"] for c in fixed["causes"]] == [c.source for c in was]
    for cause in fixed["causes"]:
        if cause["status"] == "unknown":  # an unknown cause carries no p-value, and says none
            assert cause["p_value"] is None and "p =" not in cause["text"]


def test_cause_words_cover_counts_a_tracing_failure_and_an_unknown_source():
    causes = [c for name in ("flaky-A", "flaky-C") for t in _verdicts(name).values() for c in t.causes]
    confirmed = next(c for c in causes if c.status == "confirmed" and c.sites and c.counts)
    text = cause_text(confirmed)
    assert text.startswith(f"{confirmed.source} (confirmed, p = ") and f"drawn at {confirmed.sites[0]}" in text
    (failed, runs), (pinned, pinned_runs) = confirmed.counts.released, confirmed.counts.pinned
    assert f"{failed}/{runs} {confirmed.counts.unit} failed with {confirmed.source} released, " \
           f"{pinned}/{pinned_runs} pinned" in text
    if confirmed.counts.confirmation is not None:
        vanished, tried = confirmed.counts.confirmation
        assert f"{vanished}/{tried} with only {confirmed.source} pinned" in text
    confirmed.sites, confirmed.trace_error = [], "the tracer found no frame in the project"
    untraced = cause_text(confirmed)
    assert "draw site not traced: the tracer found no frame in the project" in untraced and "drawn at" not in untraced
    unknown = next(c for c in causes if c.status == "unknown")
    assert unknown.p_value is None and "p =" not in cause_text(unknown)
    assert cause_text(unknown).startswith(f"{unknown.source} (unknown)")


def test_rate_trend_per_test_follows_every_run_in_the_history(report):
    before, now = _verdicts("flaky-A"), _verdicts("flaky-C")
    for entry in report.flaky["still"]:
        assert [p["rate"] for p in entry["trend"]] == [before[entry["nodeid"]].rate, now[entry["nodeid"]].rate]
    assert [p["flaky"] for p in report.flaky["trend"]] == [len(flaky_ids("flaky-A")), len(flaky_ids("flaky-C"))]
    (hostile,) = report.flaky["new"]
    assert hostile["nodeid"] == HOSTILE and hostile["previous"] is None
    source = now[HOSTILE].causes[0].source
    assert hostile["hints"][0] == (now[HOSTILE].causes[0].hint or FIX_HINTS[source])
    (fixed,) = report.flaky["fixed"]
    assert fixed["previous"]["verdict"] == "flaky" and fixed["verdict"] == "pass" and fixed["hints"] == []


def test_a_test_that_draws_nothing_gets_a_hint_from_the_settings_its_failures_share():
    failing = [Setting(threads=2, deterministic="on", order="file"), Setting(threads=2, deterministic="off", order="file")]
    (hint,) = setting_hints(failing)
    assert "2 failure(s) all ran at 2 torch thread(s)" in hint and "assert_close" in hint
    assert "determinism" not in hint
    assert setting_hints([]) == []


def test_mutation_scores_by_operator_and_module_match_the_store(report, history):
    mutation = report.mutation
    full = [run_of(history, "mutate-A"), run_of(history, "mutate-B")]
    assert [p["run"] for p in mutation["trend"]] == [r.id for r in full]  # the --since run is left out
    assert [p["score"] for p in mutation["trend"]] == pytest.approx([r.score for r in full])
    assert mutation["current_run"] == full[1].id and mutation["reference_run"] == full[0].id
    assert mutation["score"] == pytest.approx(load("mutate-B")["score"], abs=0.01)
    assert mutation["previous_score"] == pytest.approx(load("mutate-A")["score"], abs=0.01)
    assert any(f"mutate run {run_of(history, 'mutate-D-since').id} is partial" in n for n in report.notes)
    mutants = history.mutants(full[1].id)
    by_operator = load("mutate-B")["by_operator"]
    for row in mutation["by_operator"]:
        mine = [m for m in mutants if m.operator == row["operator"]]
        assert row["killed"] == sum(m.status == "killed" for m in mine) == by_operator[row["operator"]]["killed"]
        assert row["survived"] == sum(m.status == "survived" for m in mine)
        assert row["ml"] == all(m.ml for m in mine)
    assert sum(r["killed"] + r["survived"] + r["no_coverage"] for r in mutation["by_module"]) == len(mutants)
    assert {r["module"] for r in mutation["by_module"]} == {m.path for m in mutants}


def test_surviving_mutants_most_worth_a_test(report):
    worth = report.mutation["worth_a_test"]
    assert report.mutation["survivors"] == len(survivors("mutate-B"))
    assert {(w["operator"], w["function"]) for w in worth} <= {(m.operator, m.function) for m in survivors("mutate-B")}
    assert len(worth) == 10  # [tool.audit.report] top
    # Survived both full runs, and a gradient-flow / eval-mode bug: the most worth a test.
    first = worth[0]
    assert first["runs_survived"] == 2 and first["test_kind"] in ("gradient-flow", "eval-mode", "overfit")
    order = [(w["operator"], w["function"]) for w in worth]
    old_leak, weakened = ("drop_detach", "distillation_loss"), ("drop_detach", "consistency_loss")
    assert worth[order.index(old_leak)]["runs_survived"] == 2
    assert worth[order.index(weakened)]["runs_survived"] == 1  # killed in A by the test B weakened
    assert order.index(old_leak) < order.index(weakened)
    assert all(w["diff"].strip() and w["why"] and w["bug"] and w["ml"] for w in worth)
    per_function = {}
    for w in worth:
        per_function[(w["path"], w["function"])] = per_function.get((w["path"], w["function"]), 0) + 1
    assert max(per_function.values()) <= 2


def test_slowest_tests_and_the_cost_of_flakiness(report, history):
    now = _verdicts("flaky-C")
    slowest = max(now.values(), key=lambda t: t.mean_duration)
    assert report.slowest[0]["nodeid"] == slowest.nodeid
    means = [t["mean_duration"] for t in report.slowest]
    assert means == sorted(means, reverse=True)
    flaky_now = [t for t in now.values() if t.verdict == "flaky"]
    green = 1.0
    for t in flaky_now:
        green *= 1 - t.rate
    assert report.flaky_cost["red_ci_runs_per_100_without_reruns"] == pytest.approx(100 * (1 - green), abs=0.01)
    low, high = report.flaky_cost["red_ci_runs_per_100_interval"]   # the estimate carries its range
    green_low = green_high = 1.0
    for t in flaky_now:
        green_low, green_high = green_low * (1 - t.interval[0]), green_high * (1 - t.interval[1])
    assert (low, high) == (pytest.approx(100 * (1 - green_low), abs=0.01), pytest.approx(100 * (1 - green_high), abs=0.01))
    assert low < report.flaky_cost["red_ci_runs_per_100_without_reruns"] < high
    assert report.flaky_cost["rerun_seconds_per_100_ci_runs"] == pytest.approx(
        sum(100 * t.rate * t.mean_duration for t in flaky_now))


def test_a_period_without_runs_says_so(history):
    quiet = build_weekly(history, since="12h", until=NOW)
    assert quiet.flaky["current_run"] is None and quiet.mutation["current_run"] is None
    assert any("no run was recorded" in n for n in quiet.notes)
    assert len(quiet.flaky["trend"]) == 2  # the history is still charted
    render_html(quiet), render_markdown(quiet)


def test_first_audit_counts_every_flaky_test_as_new(tmp_path):
    with Store(tmp_path / "a.sqlite") as store:
        store.record(load("flaky-A"), started_at=NOW - timedelta(days=1))
        first = build_weekly(store, since="7d", until=NOW)
    assert first.flaky["first_audit"] and _ids(first.flaky["new"]) == flaky_ids("flaky-A")
    assert any("no full `audit mutate` run" in n for n in first.notes)


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href", "action") and v]

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_self_contained_and_escapes_test_names(report):
    page = render_html(report)
    parsed = _Elements()
    parsed.feed(page)
    assert "script" not in parsed.tags and "iframe" not in parsed.tags and "img" not in parsed.tags
    assert parsed.urls == []
    assert not re.search(r"(?i)(https?:)?//[a-z0-9]", page.replace("http://www.w3.org/2000/svg", ""))
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    text = "".join(parsed.text)
    for nodeid in set().union(*EXPECTED.values()):
        assert nodeid in text
    for entry in report.flaky["new"] + report.flaky["still"] + report.flaky["fixed"]:
        for cause in entry["causes"]:
            assert cause["status"] in text and all(d in text for d in cause["details"])
    assert "status=" not in text and "p_value=" not in text and "evidence=" not in text
    assert parsed.tags.count("svg") >= 3 + len(report.flaky["new"]) + len(report.flaky["still"])
    assert f"{report.mutation['score']:.1f}" in text
    for w in report.mutation["worth_a_test"]:
        assert w["diff"].splitlines()[-1] in text


def _table_cells(line: str) -> int:
    """Columns of a Markdown table row: pipes not escaped with a backslash."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_markdown_has_the_same_content_and_survives_hostile_names(report):
    md = render_markdown(report)
    for nodeid in set().union(*EXPECTED.values()) - {HOSTILE}:
        assert f"`{nodeid}`" in md
    hostile_rows = [ln for ln in md.splitlines() if "test_frame_dropout_labels_are_kept" in ln and ln.startswith("|")]
    assert hostile_rows and all("\\|`pipe`" in ln for ln in hostile_rows)
    for line in md.splitlines():
        if line.startswith("|"):
            assert _table_cells(line) == _table_cells(_header_of(md, line)), line
    # Outside code spans nothing is raw HTML.
    outside = re.sub(r"(`+).*?\1", "", md)
    assert "<script" not in outside
    assert f"**{report.mutation['score']:.1f}**" in md
    for w in report.mutation["worth_a_test"]:
        assert "```diff\n" + w["diff"].rstrip() + "\n```" in md
    for entry in report.flaky["new"] + report.flaky["still"]:
        for cause in entry["causes"]:
            assert cause["source"] in md and cause["status"] in md
    assert "status=" not in md and "p_value=" not in md


def _header_of(md: str, row: str) -> str:
    lines = md.splitlines()
    i = lines.index(row)
    while i > 0 and lines[i - 1].startswith("|"):
        i -= 1
    return lines[i]


def test_json_is_the_report_model(report):
    data = json.loads(render_json(report))
    assert data == json.loads(json.dumps(report.as_dict(), default=str))
    assert data["schema"] == "ml-audit.report/2"
    assert {k: {t["nodeid"] for t in data["flaky"][k]} for k in EXPECTED} == EXPECTED


@pytest.mark.parametrize("span, days", [("7d", 7), ("2w", 14), ("36h", 1.5), ("90m", 90 / 1440)])
def test_since_spans(span, days):
    assert NOW - parse_since(span, NOW) == timedelta(days=days)


def test_since_as_a_date_and_a_bad_one():
    assert parse_since("2026-11-01", NOW).day == 1
    with pytest.raises(AuditError, match="--since"):
        parse_since("last tuesday", NOW)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.audit.report]\nsince = '7d'\n")
    return root


def test_cli_writes_every_format(project, tmp_path, history, capsys):
    out = tmp_path / "out"
    code = main(["report", str(project), "--db", str(history.path), "--until", NOW.isoformat(),
                 "--format", "html,md,json", "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["weekly.html", "weekly.json", "weekly.md"]
    data = json.loads((out / "weekly.json").read_text())
    assert {k: {t["nodeid"] for t in data["flaky"][k]} for k in EXPECTED} == EXPECTED
    assert sorted(p.name for p in project.iterdir()) == ["pyproject.toml"]  # nothing written into the project


def test_cli_defaults_write_into_the_projects_reports_folder(project, history):
    assert main(["report", str(project), "--db", str(history.path), "--until", NOW.isoformat()]) == 0
    assert sorted(p.name for p in (project / "reports").iterdir()) == ["weekly.html", "weekly.json", "weekly.md"]


@pytest.mark.parametrize("args, message", [
    (["--format", "pdf"], "unknown format pdf"),
    (["--since", "soon"], "--since"),
    (["--db", "missing.sqlite"], "no history store"),
])
def test_cli_usage_errors_exit_2(project, history, capsys, args, message):
    argv = ["report", str(project), "--until", NOW.isoformat(), "--out", str(project / "out")]
    if "--db" not in args:
        argv += ["--db", str(history.path)]
    assert main(argv + args) == 2
    assert message in capsys.readouterr().err
    assert not (project / "missing.sqlite").exists() and not (project / "out").exists()


def test_cli_empty_store_exits_2(project, capsys):
    Store(project / "empty.sqlite").close()
    assert main(["report", str(project), "--db", str(project / "empty.sqlite")]) == 2
    assert "holds no runs" in capsys.readouterr().err


def _read_only_mount_works(folder) -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{folder}" "{folder}" && '
                            f'! touch "{folder}/probe" 2>/dev/null'], capture_output=True)
    return probe.returncode == 0


def test_cli_reads_a_store_in_a_read_only_folder(tmp_path):
    """A reader never writes, so a store on a read-only mount (a CI cache, a shared drive) still reports."""
    if not shutil.which("unshare") or not _read_only_mount_works(tmp_path):
        pytest.skip("needs a private mount namespace (unshare -m) to make a folder read-only")
    project = tmp_path / "proj"
    (project / "reports").mkdir(parents=True)
    build_history(project / "reports" / "audit.sqlite").close()   # WAL mode, as every written store is
    before = sorted(p.name for p in (project / "reports").iterdir())
    out = tmp_path / "out"
    audit = Path(sys.executable).with_name("audit")
    done = subprocess.run(["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{project}" "{project}" && '
                           f'"{audit}" report "{project}" --until {NOW.isoformat()} --out "{out}"'],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "weekly.json").read_text())
    assert {k: {t["nodeid"] for t in data["flaky"][k]} for k in EXPECTED} == EXPECTED
    assert sorted(p.name for p in (project / "reports").iterdir()) == before
