"""A dated, several-week history of flaky and mutate results, and checks that the store keeps it.

``build_history`` is shared by the store, report and review tests: four weekly audits of a
sample_project-like suite in which flaky tests appear, persist and get fixed and the mutation
score moves, so every report section has something true to say. ``EXPECTED`` states what the
report must conclude for the last week.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from audit.store import FLAKY_SCHEMA, MUTATE_SCHEMA, Store

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)

NOISE = "tests/test_augment.py::test_noise_keeps_label_signal"
SHUFFLE = "tests/test_data.py::test_loader_first_batch"
HASH = "tests/test_stats.py::test_vocab_order"
THREADS = "tests/test_stats.py::test_sum_matches_golden"
ORDER = "tests/test_model.py::test_forward_float32"
BROKEN = "tests/test_train.py::test_lr_schedule_broken"
STEADY = ["tests/test_model.py::test_output_shape", "tests/test_train.py::test_overfits_one_batch",
          "tests/test_evaluate.py::test_eval_deterministic", "tests/test_seeding.py::test_seeded_split"]
# A hostile node id: the reports must escape it everywhere.
HOSTILE = 'tests/test_evil.py::test_x[<script>alert("x")</script>|`pipe`]'

CAUSES = {
    NOISE: [{"source": "torch", "site": "tinyclf/augment.py::add_noise"}],
    SHUFFLE: [{"source": "torch", "site": "tinyclf/data.py::make_loader"}],
    HASH: [{"source": "hashseed", "site": "tinyclf/functional.py::vocab"}],
    THREADS: [{"source": "threads", "site": "tinyclf/functional.py::total"}],
    ORDER: [{"source": "order", "site": "tests/test_model.py::test_forward_float32",
             "polluter": "tests/test_config.py::test_double_precision"}],
}

# Which tests are flaky in each weekly flaky run (oldest first), with their failure rates.
WEEKS_FLAKY = [
    {NOISE: 0.30, SHUFFLE: 0.50},
    {NOISE: 0.25, SHUFFLE: 0.45, HASH: 0.50},
    {NOISE: 0.35, HASH: 0.50},                       # the reference run for the last week
    {NOISE: 0.30, THREADS: 0.33, ORDER: 0.50, HOSTILE: 0.10},  # the last week
]
EXPECTED = {"new": {THREADS, ORDER, HOSTILE}, "still": {NOISE}, "fixed": {HASH}, "failing": {BROKEN}}

DIFFS = {
    "drop_detach": ("tinyclf/model.py", "embed", 14, "-    h = h.detach()\n+    h = h"),
    "drop_eval": ("tinyclf/evaluate.py", "accuracy", 9, "-    model.eval()\n+    pass"),
    "change_dim": ("tinyclf/model.py", "predict_proba", 31, "-    return torch.softmax(logits, dim=1)\n"
                                                            "+    return torch.softmax(logits, dim=0)"),
    "swap_reduction": ("tinyclf/train.py", "loss_fn", 12, "-    return F.cross_entropy(x, y, reduction='mean')\n"
                                                         "+    return F.cross_entropy(x, y, reduction='sum')"),
    "drop_zero_grad": ("tinyclf/train.py", "train_epoch", 22, "-        opt.zero_grad()\n+        pass"),
    "scale_hyperparam": ("tinyclf/config.py", "default_lr", 5, "-    return 1e-2\n+    return 1e-1"),
    "flip_shuffle": ("tinyclf/data.py", "make_loader", 18, "-    return DataLoader(ds, shuffle=True)\n"
                                                          "+    return DataLoader(ds, shuffle=False)"),
    "lower_precision": ("tinyclf/functional.py", "total", 7, "-    x = x.float()\n+    x = x.half()"),
    "mutmut_number": ("tinyclf/functional.py", "clip", 3, "-    return x.clamp(0, 1)\n+    return x.clamp(1, 1)"),
}
# Operators whose mutant survives, per week (the rest are killed).
WEEKS_SURVIVING = [
    {"drop_detach", "drop_eval", "mutmut_number"},
    {"drop_detach", "drop_eval"},
    {"drop_detach", "mutmut_number"},
    {"drop_detach", "drop_eval", "swap_reduction", "change_dim"},
]
KILLER = {"drop_zero_grad": STEADY[1], "swap_reduction": STEADY[1], "change_dim": STEADY[0],
          "drop_eval": STEADY[2]}


def flaky_result(rates: dict[str, float], executions: int = 40) -> dict:
    """A flaky result (schema ml-audit.flaky/1) where the tests in *rates* are flaky."""
    tests = []
    for nodeid in [NOISE, SHUFFLE, HASH, THREADS, ORDER, BROKEN, *STEADY, HOSTILE]:
        rate = rates.get(nodeid, 0.0)
        if nodeid == BROKEN:
            verdict, failures, n = "fail", 6, 6
        elif rate:
            verdict, n = "flaky", executions
            failures = max(1, round(rate * n))
        else:
            verdict, failures, n = "pass", 0, executions
        r = failures / n
        tests.append({
            "nodeid": nodeid, "verdict": verdict, "executions": n, "failures": failures, "rate": r,
            "interval": ([max(0.0, r - 0.15), min(1.0, r + 0.15)] if verdict == "flaky"
                         else [0.0, 3.0 / n] if verdict == "pass" else [0.6, 1.0]),
            "failing_settings": [{"seed_torch": "fresh", "threads": 1}] if verdict == "flaky" else [],
            "repro": (f"python -m pytest -p audit.flaky.plugin --audit-enable --audit-seed-torch=1234 '{nodeid}'"
                      if verdict != "pass" else None),
            "causes": copy.deepcopy(CAUSES.get(nodeid, [])) if verdict == "flaky" else [],
            "duration": 0.05 + 0.01 * len(nodeid) % 7 + (1.5 if nodeid == STEADY[1] else 0.0),
            # fields the flaky engine adds beyond the contract
            "draws": ["numpy"] if nodeid == HOSTILE else ["torch"] if nodeid in CAUSES else [],
            "repro_verified": verdict == "flaky", "masked_by_reruns": 2 if nodeid == NOISE else 0,
            "evidence": f"failed {failures} of {n} executions" + (" and passed the others" if verdict == "flaky" else ""),
        })
    return {"schema": FLAKY_SCHEMA, "project": "sample_project", "settings": {"budget": 60}, "tests": tests}


def mutate_result(surviving: set[str]) -> dict:
    mutants = []
    for n, (op, (path, fn, line, diff)) in enumerate(sorted(DIFFS.items())):
        status = "survived" if op in surviving else "killed"
        mutants.append({"id": f"{path.replace('/', '.')[:-3]}.x_{fn}__mutmut_{n + 1}", "operator": op, "path": path,
                        "line": line, "function": fn, "status": status,
                        "diff": f"--- a/{path}\n+++ b/{path}\n@@ -{line} +{line} @@\n{diff}",
                        "killed_by": [KILLER.get(op, STEADY[3])] if status == "killed" else []})
    # Padding mutants so that module scores are not all 0 or 100.
    for i in range(12):
        mutants.append({"id": f"tinyclf.model.x_forward__mutmut_{100 + i}", "operator": "mutmut_number",
                        "path": "tinyclf/model.py", "line": 40 + i, "function": "forward",
                        "status": "killed" if i < 10 else "no_coverage", "diff": f"-    a = {i}\n+    a = {i + 1}",
                        "killed_by": [STEADY[0]] if i < 10 else []})
    return {"schema": MUTATE_SCHEMA, "project": "sample_project", "score": 0.0, "by_operator": {}, "mutants": mutants}


def week_start(week: int) -> datetime:
    """When week *week* (0 = oldest of four) was audited: the last one two days before NOW."""
    return NOW - timedelta(days=2 + 7 * (3 - week))


COMMITS = [f"{c * 40}" for c in "abcd"]


def build_history(path) -> Store:
    """Record four weekly flaky + mutate runs into a store at *path*; returns the open store."""
    store = Store(path)
    for week in range(4):
        at = week_start(week)
        meta = {"project": "sample_project", "commit": COMMITS[week], "branch": "main"}
        store.record_flaky(flaky_result(WEEKS_FLAKY[week]), started_at=at, duration=61.0, settings={"budget": 60}, **meta)
        store.record_mutate(mutate_result(WEEKS_SURVIVING[week]), started_at=at + timedelta(hours=1), duration=90.0,
                            settings={"operators": "all"}, **meta)
    return store


def test_history_is_recorded_in_order(tmp_path):
    store = build_history(tmp_path / "audit.sqlite")
    runs = store.runs()
    assert [r.kind for r in runs] == ["flaky", "mutate"] * 4
    assert [r.commit for r in runs[::2]] == COMMITS
    assert all(a.started_at < b.started_at for a, b in zip(runs, runs[1:]))
    last_flaky = store.latest("flaky")
    flaky_now = {t["nodeid"] for t in store.tests(last_flaky.id) if t["verdict"] == "flaky"}
    assert flaky_now == set(WEEKS_FLAKY[3])
    assert store.latest("flaky", before=week_start(3)).commit == COMMITS[2]


def test_mutate_score_is_computed_from_the_mutants(tmp_path):
    store = build_history(tmp_path / "audit.sqlite")
    last = store.latest("mutate")
    mutants = store.mutants(last.id)
    detected = sum(m["status"] in ("killed", "timeout") for m in mutants)
    scored = sum(m["status"] in ("killed", "timeout", "survived", "no_coverage") for m in mutants)
    assert last.score == pytest.approx(100.0 * detected / scored)
    assert {m["operator"] for m in store.mutants(last.id, status="survived")} == WEEKS_SURVIVING[3]
