"""OS entropy under the plugin: os.urandom, uuid4/uuid1, secrets, SystemRandom, numpy's
default_rng()/Generator(PCG64()) and torch.Generator().seed() are pinned by the unit's seed,
vary when released, are recorded as draws of their family, and are untouched without it."""

import json
import subprocess
import sys
import textwrap

import pytest

from audit.flaky.sources import FAMILIES, get

TESTS = textwrap.dedent('''
    import json, os, random, secrets, uuid
    import numpy as np
    import torch

    def _log(**kw):
        with open(os.environ["ENTROPY_LOG"], "a") as f:
            f.write(json.dumps(kw) + "\\n")

    def test_entropy():
        _log(kind="entropy", urandom=os.urandom(8).hex(), uuid4=str(uuid.uuid4()), uuid1=str(uuid.uuid1()),
             token=secrets.token_hex(8), sysrand=random.SystemRandom().random(),
             torch_seed=torch.Generator().seed())

    def test_numpy_entropy():
        _log(kind="numpy", rng=float(np.random.default_rng().random()),
             gen=float(np.random.Generator(np.random.PCG64()).random()))

    def test_nothing():
        assert isinstance(torch.default_generator, torch.Generator)
''')


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_e.py").write_text(TESTS)
    return root


def _run(project, tmp_path, name, *options):
    log, rows = tmp_path / f"{name}.log", tmp_path / f"{name}.rows"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           *options, *([f"--audit-rows={rows}"] if options else [])], cwd=project,
                          env={**__import__("os").environ, "ENTROPY_LOG": str(log)}, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logged = {r["kind"]: r for r in map(json.loads, log.read_text().splitlines())}
    drawn = {}
    if rows.exists():
        for r in map(json.loads, rows.read_text().splitlines()):
            if r.get("event") == "row":
                drawn[r["nodeid"].split("::")[1]] = sorted(f for f, used in r["draws"].items() if used)
    return logged, drawn


def test_entropy_is_a_registered_rng_family():
    assert "entropy" in FAMILIES and get("entropy").arm == "rng" and get("entropy").label == "OS entropy"


def test_pinned_entropy_repeats_released_varies_and_is_recorded(project, tmp_path):
    pinned = ["--audit-enable", "--audit-seed-entropy=7", "--audit-seed-numpy=7"]
    first, drawn = _run(project, tmp_path, "a", *pinned)
    second, _ = _run(project, tmp_path, "b", *pinned)
    assert first == second                                # every entry point repeats under a pin
    assert drawn == {"test_entropy": ["entropy"], "test_numpy_entropy": ["numpy"], "test_nothing": []}
    other, _ = _run(project, tmp_path, "c", "--audit-enable", "--audit-seed-entropy=8", "--audit-seed-numpy=8")
    for kind, values in first.items():
        for key, value in values.items():
            if key != "kind":
                assert other[kind][key] != value, key     # another seed, other values (2^-32 odds of a tie)
    fresh1, _ = _run(project, tmp_path, "d", "--audit-enable", "--audit-seed-entropy=fresh", "--audit-seed-base=1")
    fresh2, _ = _run(project, tmp_path, "e", "--audit-enable", "--audit-seed-entropy=fresh", "--audit-seed-base=2")
    assert fresh1["entropy"]["urandom"] != fresh2["entropy"]["urandom"]
    assert fresh1["entropy"]["uuid4"][14] == "4"          # still a version-4 uuid


def test_without_the_plugin_entropy_is_the_systems(project, tmp_path):
    first, _ = _run(project, tmp_path, "plain1")
    second, _ = _run(project, tmp_path, "plain2")
    assert first["entropy"]["urandom"] != second["entropy"]["urandom"]
    assert first["numpy"]["rng"] != second["numpy"]["rng"]


def test_the_tracer_names_the_project_lines_that_read_os_entropy(tmp_path):
    root = tmp_path / "traced"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_t.py").write_text(textwrap.dedent('''
        import random, secrets, uuid

        def make_id():
            return uuid.uuid4().hex

        def token():
            return secrets.token_hex(4)

        def test_ids():
            assert make_id() and token() and random.SystemRandom().random() < 2
    '''))
    out = tmp_path / "trace.jsonl"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "audit.flaky.trace",
                    f"--audit-trace={out}", "tests"], cwd=root, check=True, capture_output=True, timeout=120)
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    sites = [(s["line"], s["function"]) for s in record["draws"]["entropy"]["sites"]]
    assert sites == [(5, "make_id"), (8, "token"), (11, "test_ids")]
