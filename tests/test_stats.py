"""audit.stats against values published for the Wilson, Clopper-Pearson and Fisher methods."""

import math

import pytest

from audit import stats


@pytest.mark.parametrize("k, n, lo, hi", [
    (0, 10, 0.0, 0.308497),      # Clopper-Pearson tables
    (5, 10, 0.187086, 0.812914),
    (10, 10, 0.691503, 1.0),
    (3, 100, 0.006229, 0.085176),
    (1, 1000, 0.0000253, 0.005558),
])
def test_clopper_pearson_matches_tables(k, n, lo, hi):
    got = stats.clopper_pearson(k, n)
    assert got[0] == pytest.approx(lo, abs=2e-6) and got[1] == pytest.approx(hi, abs=2e-6)


def test_wilson_known_values_and_bounds():
    assert stats.wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert stats.wilson(0, 0) == (0.0, 1.0)
    lo, hi = stats.wilson(0, 50)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.0 < hi < 0.08


def test_interval_contains_rate_and_narrows_with_more_runs():
    for k, n in [(1, 20), (7, 40), (20, 20)]:
        lo, hi = stats.clopper_pearson(k, n)
        assert lo <= stats.rate(k, n) <= hi
    assert stats.clopper_pearson(10, 1000)[1] - stats.clopper_pearson(10, 1000)[0] < \
        stats.clopper_pearson(1, 100)[1] - stats.clopper_pearson(1, 100)[0]


def test_fisher_exact_known_values():
    assert stats.fisher_exact(3, 1, 1, 3) == pytest.approx(0.485714, abs=1e-6)   # tea tasting
    assert stats.fisher_exact(0, 40, 11, 29) == pytest.approx(0.000441, abs=2e-6)
    assert stats.fisher_exact(5, 5, 5, 5) == pytest.approx(1.0)
    assert stats.fisher_exact(0, 0, 0, 0) == 1.0


def test_runs_needed_and_bound_agree_with_the_design_note():
    assert [stats.runs_to_detect(p) for p in (0.1, 0.05, 0.01)] == [29, 59, 299]
    assert stats.upper_bound_no_failures(100) == pytest.approx(1 - 0.05 ** 0.01)
    assert stats.upper_bound_no_failures(300) < 0.01 < stats.upper_bound_no_failures(290)


def test_binomial_cdf_sums_to_one_and_rejects_bad_counts():
    assert sum(math.exp(stats._log_binom_pmf(i, 30, 0.2)) for i in range(31)) == pytest.approx(1.0)
    assert stats.binom_cdf(30, 30, 0.2) == 1.0 and stats.binom_cdf(-1, 30, 0.2) == 0.0
    with pytest.raises(ValueError):
        stats.wilson(3, 2)
    with pytest.raises(ValueError):
        stats.fisher_exact(-1, 0, 0, 0)
    with pytest.raises(ValueError):
        stats.runs_to_detect(0.0)


def test_runs_to_decide_says_how_far_a_lead_is_from_significance():
    from audit.stats import fisher_exact, runs_to_decide

    assert runs_to_decide((30, 60), (0, 60)) == 0                      # decided already
    assert runs_to_decide((0, 60), (0, 40)) is None                     # nothing to decide on
    assert runs_to_decide((2, 60), (3, 40)) is None                     # released fails less often
    more = runs_to_decide((20, 400), (0, 120))                          # the undecided torch flake
    assert 0 < more < 400
    # at the observed rates, that many more runs (balancing the arms) do reach p < 0.001, fewer do not
    total = 520 + more
    m1 = max(400, total // 2)
    m0 = total - m1
    g1 = round(0.05 * m1)
    assert fisher_exact(g1, m1 - g1, 0, m0) < 1e-3
    assert runs_to_decide((5, 60), (0, 40)) > runs_to_decide((10, 60), (0, 40))
