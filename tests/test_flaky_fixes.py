"""`audit flaky --fix`: each mechanical rewrite on small sources (libcst only), and one run on a
tiny project whose patches are applied with `patch -p1` and checked against their repros."""

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from audit.flaky.fixes import generator, propose, setenv, slug, tolerance, zeros
from audit.flaky.fixes.source import Patch, ensure_import, unified
from audit.model.flaky import Cause, Fix, Site, StateChange, TestVerdict


def _src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _cause(source, sites=(), call_path=(), polluter=None, state=()):
    return Cause(source=source, status="confirmed", p_value=1e-6, evidence="", sites=list(sites),
                 call_path=list(call_path), polluter=polluter, state=list(state))


def _verdict(nodeid, digests=()):
    return TestVerdict(nodeid=nodeid, verdict="flaky", executions=10, failures=3, skips=0, rate=0.3,
                       interval=(0.1, 0.6), failure_digests=list(digests))


# ---------------------------------------------------------------- generator

def test_a_dataloader_on_the_site_line_gets_a_seeded_generator_and_torch_is_imported():
    old = _src("""
        from torch.utils.data import DataLoader

        def test_batches(ds):
            loader = DataLoader(ds, batch_size=4,
                                shuffle=True,)  # keep
            assert next(iter(loader))
    """)
    new = generator.seed_calls(old, range(4, 5))
    assert "import torch\n" in new
    assert "shuffle=True, generator=torch.Generator().manual_seed(0),)  # keep" in new
    assert generator.seed_calls(new, range(4, 5)) == new     # already seeded: nothing to do


def test_random_split_in_library_code_named_by_the_site_is_seeded():
    root_text = _src("""
        import torch
        from torch.utils.data import random_split

        def split(ds):
            return random_split(ds, [8, 2])
    """)
    cause = _cause("torch", [Site("lib/data.py", 5, "split")], ["tests/test_x.py::test_x", "fixture:holdout"])
    with _tree({"lib/data.py": root_text}) as root:
        patch = generator.propose(root, cause, "tests/test_x.py::test_x")
    assert list(patch.files) == ["lib/data.py"]
    assert "random_split(ds, [8, 2], generator=torch.Generator().manual_seed(0))" in patch.files["lib/data.py"][1]


def test_a_loader_helper_that_forwards_generator_is_given_one_by_the_test():
    files = {
        "pkg/data.py": _src("""
            from torch.utils.data import DataLoader

            def make_loader(ds, shuffle=True, generator=None):
                return DataLoader(ds, shuffle=shuffle, generator=generator)
        """),
        "tests/test_data.py": _src("""
            from pkg.data import make_loader

            def test_first(ds):
                loader = make_loader(ds, shuffle=True)
                _, y = next(iter(loader))
        """),
    }
    cause = _cause("torch", [Site("tests/test_data.py", 5, "test_first")])
    with _tree(files) as root:
        patch = generator.propose(root, cause, "tests/test_data.py::test_first")
    assert list(patch.files) == ["tests/test_data.py"]     # the test, not the library, changes
    new = patch.files["tests/test_data.py"][1]
    assert "make_loader(ds, shuffle=True, generator=torch.Generator().manual_seed(0))" in new
    assert new.startswith("from pkg.data import make_loader\nimport torch\n")


def test_a_helper_without_a_generator_parameter_is_fixed_where_it_builds_the_loader():
    files = {
        "pkg/data.py": ("from torch.utils.data import DataLoader\n\n"
                        "def loader(ds):\n    return DataLoader(ds, shuffle=True)\n"),
        "tests/test_data.py": "from pkg.data import loader\n\ndef test_first(ds):\n    next(iter(loader(ds)))\n",
    }
    cause = _cause("torch", [Site("tests/test_data.py", 4, "test_first")])
    with _tree(files) as root:
        patch = generator.propose(root, cause, "tests/test_data.py::test_first")
    assert list(patch.files) == ["pkg/data.py"]
    assert "DataLoader(ds, shuffle=True, generator=torch.Generator().manual_seed(0))" in patch.files["pkg/data.py"][1]


def test_a_torch_draw_that_is_no_loader_or_split_has_no_mechanical_fix():
    cause = _cause("torch", [Site("tests/test_n.py", 4, "test_noise")])
    with _tree({"tests/test_n.py": "import torch\n\ndef test_noise():\n    assert torch.randn(3).max() < 2\n"}) as root:
        assert generator.propose(root, cause, "tests/test_n.py::test_noise") is None


# ---------------------------------------------------------------- zeros

def test_empty_calls_on_the_site_line_become_their_zeroing_twins():
    old = _src("""
        import torch

        def pad(x, n):
            a = torch.empty(n, 3); b = x.new_empty((n,)); c = torch.empty_like(x)
            d = torch.empty(2)
            return a, b, c, d
    """)
    new = zeros.zero_calls(old, range(4, 5))
    assert "a = torch.zeros(n, 3); b = x.new_zeros((n,)); c = torch.zeros_like(x)" in new
    assert "d = torch.empty(2)" in new                       # not on a traced line


# ---------------------------------------------------------------- tolerance

@pytest.mark.parametrize("assertion, operands", [
    ("assert stats(x) == GOLDEN", "stats(x), GOLDEN"),
    ("assert torch.equal(a, b)", "a, b"),
    ("assert (a == b).all()", "a, b"),
])
def test_exact_comparisons_become_assert_close_with_the_tolerance(assertion, operands):
    old = f"import torch\n\ndef test_golden():\n    {assertion}\n"
    new = tolerance.close_asserts(old, "test_golden", 1e-9)
    assert f"    torch.testing.assert_close({operands}, rtol=0, atol=1e-09)\n" in new


def test_the_failing_line_picks_the_comparison_and_approx_is_left_alone():
    old = _src("""
        def test_golden():
            assert len(xs) == 3
            assert mean(xs) == GOLDEN
            assert std(xs) == pytest.approx(1.0)
    """)
    new = tolerance.close_asserts(old, "test_golden", 1e-9, line=3)
    assert "assert len(xs) == 3" in new and "assert_close(mean(xs), GOLDEN" in new and "pytest.approx(1.0)" in new
    assert tolerance.close_asserts(old, "test_golden", 1e-9) == old      # two candidates, no pointer: no guess


def test_the_tolerance_is_ten_times_the_deviation_rounded_up_with_a_floor():
    assert tolerance.tolerance(3.2e-11) == pytest.approx(1e-9)
    assert tolerance.tolerance(1e-20) == 1e-12
    digests = ["call: AssertionError: assert 0.0016842 == 0.0016841 (test_stats.py:17)"]
    assert tolerance.failing_line(digests, "tests/test_stats.py") == 17
    with _tree({"tests/test_stats.py": "def test_mean():\n    assert m() == G\n"}) as root:
        patch = tolerance.propose(root, _cause("threads"), "tests/test_stats.py::test_mean", digests)
    assert "atol=1e-06" in patch.files["tests/test_stats.py"][1] and "1e-07" in patch.note
    assert "1e-05" not in patch.files["tests/test_stats.py"][1]


# ---------------------------------------------------------------- setenv

def test_the_polluter_sets_its_variable_through_monkeypatch():
    old = _src("""
        import os

        def test_polluter(dataset):
            os.environ["EPOCHS"] = "2"  # quick
            os.environ["OTHER"] = "1"
            assert run(dataset)
    """)
    new = setenv.use_setenv(old, "test_polluter", "EPOCHS")
    assert "def test_polluter(dataset, monkeypatch):" in new
    assert '    monkeypatch.setenv("EPOCHS", "2")  # quick\n' in new and 'os.environ["OTHER"] = "1"' in new


def test_a_variable_set_elsewhere_gets_an_autouse_fixture_that_restores_it():
    old = "import os\n\ndef test_polluter():\n    os.environ.update(EPOCHS='2')\n"
    state = [StateChange("env", "EPOCHS", None, "2")]
    cause = _cause("order", polluter="tests/test_p.py::test_polluter", state=state)
    with _tree({"tests/test_p.py": old}) as root:
        patch = setenv.propose(root, cause, "tests/test_v.py::test_victim")
    new = patch.files["tests/test_p.py"][1]
    assert "@pytest.fixture(autouse=True)\ndef _restore_epochs_env():" in new and "import pytest" in new
    compile(new, "test_p.py", "exec")
    assert "autouse fixture" in patch.note


def test_sources_without_a_mechanical_fix_get_none():
    with _tree({}) as root:
        assert propose(root, _verdict("t.py::t"), _cause("hashseed")) is None
        dtype = [StateChange("dtype", "default", "f32", "f64")]
        assert propose(root, _verdict("t.py::t"), _cause("order", polluter="t.py::p", state=dtype)) is None


# ---------------------------------------------------------------- shared pieces

def test_diffs_are_relative_to_the_project_root_and_imports_go_after_the_docstring():
    assert unified("pkg/a.py", "x = 1\n", "x = 2\n").startswith("--- a/pkg/a.py\n+++ b/pkg/a.py\n")
    import libcst as cst

    code = ensure_import(cst.parse_module('"""Doc."""\n\nx = 1\n'), "torch").code
    assert code == '"""Doc."""\n\nimport torch\n\nx = 1\n'
    patch = Patch("zeros")
    patch.edit("a.py", "old\n", "old\n")
    assert not patch
    assert slug("tests/test_a.py::TestX::test_b[1-x]") == "tests_test_a.py__TestX__test_b_1-x_"


def test_a_fix_says_whether_it_helped_and_round_trips_through_json():
    fix = Fix(path="/f/t.diff", kind="zeros", files=["a.py"], before=(6, 6), after=(0, 6))
    assert fix.verified and fix.words() == "verified: 0/6 failures after the patch (6/6 before)"
    assert Fix.from_json(fix.to_json()) == fix and fix.to_json()["verified"] is True
    assert Fix(path="p", kind="zeros", before=(3, 3), after=(2, 3)).words().startswith("did not help: 2/3")


def test_the_table_says_how_each_patch_did_and_why_a_test_got_none():
    from types import SimpleNamespace

    from audit.report.flaky_table import fix_line

    result = SimpleNamespace(fixes={"dir": "/f", "unfixed": {"t.py::noise": "no mechanical fix for this torch cause"}})
    fixed = _verdict("t.py::loader")
    fixed.fix = Fix(path="/f/t.diff", kind="generator", before=(3, 3), after=(0, 3), note="pass generator=...")
    assert fix_line(fixed, result) == ("verified: 0/3 failures after the patch (3/3 before) "
                                       "(generator: pass generator=...): /f/t.diff")
    assert fix_line(_verdict("t.py::noise"), result) == "none: no mechanical fix for this torch cause"
    assert fix_line(_verdict("t.py::other"), result) is None
    assert fix_line(_verdict("t.py::other"), SimpleNamespace(fixes={})) is None


def test_a_patch_is_checked_against_the_minimal_repro_else_the_tests_own_verified_one():
    from audit.flaky.fixes import _repro_for
    from audit.flaky.repro import Repro

    own = Repro("tests/t.py::v", {"PYTHONHASHSEED": "7", "OMP_NUM_THREADS": "2"},
                ["-p", "no:randomly", "tests/t.py::p", "tests/t.py::v", "--audit-enable", "--audit-seed-torch=fresh"])
    parsed = Repro.parse("tests/t.py::v", own.command())
    assert (parsed.env, parsed.args, parsed.preceding) == (own.env, own.args, ["tests/t.py::p"])
    minimal = Repro("tests/t.py::v", {}, ["tests/t.py::v", "--audit-seed-torch=3"])
    test = _verdict("tests/t.py::v")
    test.repro, test.repro_verified = own.command(), True
    assert _repro_for(test, minimal) is minimal
    assert _repro_for(test, None).args == own.args
    test.repro_verified = False
    assert _repro_for(test, None) is None


class _tree:
    """A throwaway project holding *files* (relative path -> text)."""

    def __init__(self, files):
        self.files = files

    def __enter__(self) -> Path:
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="fix-unit-"))
        for rel, text in self.files.items():
            (self.dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.dir / rel).write_text(text)
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- end to end

# attribution stops once both causes are confirmed (about 25 s idle); the rest is room for a loaded machine
BUDGET = 60.0


def _tiny_project(root: Path) -> Path:
    files = {
        "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["."]\n',
        "mylib/__init__.py": "",
        "mylib/pad.py": _src("""
            import torch


            def pad(x, size):
                \"\"\"x [n] padded with zeros to [size].\"\"\"
                out = torch.empty(size)
                out[: len(x)] = x
                return out * (torch.arange(size) < len(x))
        """),
        "tests/test_loader.py": _src("""
            from torch.utils.data import DataLoader


            def test_first_batch_skips_the_smallest():
                loader = DataLoader(list(range(10)), batch_size=3, shuffle=True)
                first = next(iter(loader))
                assert min(first.tolist()) >= 2
        """),
        "tests/test_pad.py": _src("""
            import torch

            from mylib.pad import pad


            def test_pad_keeps_values_and_zeros_the_rest():
                assert pad(torch.ones(2), 4).tolist() == [1.0, 1.0, 0.0, 0.0]
        """),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_fix_writes_verified_patches_that_apply_with_patch_p1_and_leaves_the_tree_alone(tmp_path, monkeypatch):
    from audit import api
    from audit.model.schema import validate

    monkeypatch.setenv("ML_AUDIT_STATE", str(tmp_path / "state"))
    root = _tiny_project(tmp_path / "proj")
    before = {p: p.read_text() for p in root.rglob("*") if p.is_file()}
    out = tmp_path / "fixes"
    result = api.flaky(root, budget=BUDGET, seed=7, threads=[1], rng=["torch"], orders=["file"], hashseed=False,
                       record=False, fix=out, json=tmp_path / "flaky.json", junit=tmp_path / "junit.xml")
    assert {p: p.read_text() for p in root.rglob("*") if p.is_file()} == before      # the user's tree is untouched
    tests = {t.nodeid: t for t in result.tests}
    loader, padded = tests["tests/test_loader.py::test_first_batch_skips_the_smallest"], \
        tests["tests/test_pad.py::test_pad_keeps_values_and_zeros_the_rest"]
    assert [c.source for c in loader.causes[:1]] == ["torch"] and loader.causes[0].confirmed
    assert [c.source for c in padded.causes[:1]] == ["determinism"] and padded.causes[0].confirmed
    for test, kind, changed in ((loader, "generator", "tests/test_loader.py"), (padded, "zeros", "mylib/pad.py")):
        fix = test.fix
        assert fix.kind == kind and fix.files == [changed] and fix.verified
        runs = fix.before[1]
        assert runs in (3, 6) and fix.before == (runs, runs) and fix.after == (0, runs)   # the repros are deterministic
        applied = tmp_path / f"applied-{kind}"
        shutil.copytree(root, applied)
        done = subprocess.run(["patch", "-p1", "-i", fix.path], cwd=applied, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (applied / changed).read_text() != before[root / changed]
    seeded = (tmp_path / "applied-generator" / "tests/test_loader.py").read_text()
    assert "generator=torch.Generator().manual_seed(0)" in seeded
    assert "out = torch.zeros(size)" in (tmp_path / "applied-zeros" / "mylib/pad.py").read_text()
    data = json.loads((tmp_path / "flaky.json").read_text())
    validate(data)
    fixes = {t["nodeid"]: t["fix"] for t in data["tests"] if t["fix"]}
    assert fixes[padded.nodeid]["verified"] is True and data["fixes"]["dir"] == str(out)
    _the_patch_reaches_junit_and_the_weekly_report(tmp_path / "junit.xml", loader)


def _the_patch_reaches_junit_and_the_weekly_report(junit: Path, test) -> None:
    import xml.etree.ElementTree as ET

    from audit.report import html, markdown
    from audit.report.weekly import _test_entry

    suite = next(s for s in ET.parse(junit).getroot() if s.get("name") == test.nodeid)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["fix"] == test.fix.path and props["fix.kind"] == "generator" and props["fix.verified"] == "true"
    assert props["fix.result"].startswith("verified: 0/")
    entry = _test_entry(test, [], None)
    assert entry["patch"]["verified"] and entry["patch"]["path"] == test.fix.path
    row = markdown._flaky_rows([entry])[-1]
    assert f"patch (generator): `{test.fix.path}`, verified: 0/" in row
    assert "patch (generator): <code>" in html._flaky_table([entry], "Flaky", "none")
