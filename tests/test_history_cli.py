"""`audit flaky` and `audit mutate` record every run in the history store unless told not to."""

import textwrap

from audit.cli import main
from audit.store import Store


def _project(root):
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_ok.py").write_text(textwrap.dedent("""
        import random

        def test_coin():
            assert random.random() < 0.5

        def test_fine():
            assert 1 + 1 == 2
    """))
    return root


def test_flaky_run_is_recorded_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = _project(tmp_path / "proj")
    code = main(["flaky", str(root), "--no-attribute", "--budget", "20", "--seed", "3", "--rng", "random", "--no-hashseed",
                 "--no-determinism", "--orders", "file", "--threads", "1"])
    assert code == 1  # test_coin is flaky
    with Store(root / "reports" / "audit.sqlite", create=False) as store:
        (run,) = store.runs("flaky")
        verdicts = {t["nodeid"]: t["verdict"] for t in store.tests(run.id)}
    assert verdicts == {"tests/test_ok.py::test_coin": "flaky", "tests/test_ok.py::test_fine": "pass"}
    assert f"recorded as run {run.id}" in capsys.readouterr().out


def test_no_record_leaves_no_store(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = _project(tmp_path / "proj")
    db = tmp_path / "elsewhere.sqlite"
    assert main(["flaky", str(root), "--no-attribute", "--budget", "20", "--seed", "3", "--rng", "random", "--no-hashseed",
                 "--no-determinism", "--orders", "file", "--threads", "1", "--no-record", "--db", str(db)]) == 1
    assert not (root / "reports").exists() and not db.exists()


def test_a_foreign_store_is_refused_and_the_audit_still_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = _project(tmp_path / "proj")
    foreign = tmp_path / "notes.sqlite"
    foreign.write_bytes(b"not a database at all" * 10)
    before = foreign.read_bytes()
    out = tmp_path / "result.json"
    code = main(["flaky", str(root), "--no-attribute", "--budget", "20", "--seed", "3", "--rng", "random", "--no-hashseed",
                 "--no-determinism", "--orders", "file", "--threads", "1", "--db", str(foreign), "--json", str(out)])
    assert code == 1 and out.exists()
    assert foreign.read_bytes() == before
    assert "not recorded in the history store" in capsys.readouterr().out
