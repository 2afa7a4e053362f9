"""Small exact statistics for pass/fail counts: flake rate, 95% intervals, Fisher's exact test.

Pure Python (no scipy): the counts are small and exactness matters more than speed. Shared by
``audit flaky`` (verdicts, confidence reached) and the reporters.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def rate(failures: int, executions: int) -> float:
    """Observed failure rate; 0.0 when nothing ran."""
    return failures / executions if executions else 0.0


def wilson(failures: int, executions: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for the failure rate (95% by default); (0, 1) when nothing ran."""
    _check(failures, executions)
    if executions == 0:
        return (0.0, 1.0)
    n, p = executions, failures / executions
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, sum(math.exp(_log_binom_pmf(i, n, p)) for i in range(k + 1)))


def _bisect(f, lo: float = 0.0, hi: float = 1.0, steps: int = 60) -> float:
    """The root of a function decreasing in p on [lo, hi]."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(failures: int, executions: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for the failure rate."""
    _check(failures, executions)
    k, n = failures, executions
    if n == 0:
        return (0.0, 1.0)
    # P(X >= k) grows with p and P(X <= k) falls: bisect each against alpha / 2.
    lower = 0.0 if k == 0 else _bisect(lambda p: alpha / 2 - (1 - binom_cdf(k - 1, n, p)))
    upper = 1.0 if k == n else _bisect(lambda p: binom_cdf(k, n, p) - alpha / 2)
    return (lower, upper)


def upper_bound_no_failures(executions: int, confidence: float = 0.95) -> float:
    """One-sided bound on the rate after 0 failures in *executions* runs (about 3/n at 95%)."""
    if executions <= 0:
        return 1.0
    return 1.0 - (1.0 - confidence) ** (1.0 / executions)


def runs_to_bound(rate_: float, confidence: float = 0.95) -> int:
    """Failure-free executions needed to bound the rate below *rate_* with *confidence*."""
    if not 0 < rate_ < 1:
        raise ValueError("rate must be strictly between 0 and 1")
    return math.floor(math.log(1 - confidence) / math.log1p(-rate_)) + 1


def runs_to_detect(rate_: float, confidence: float = 0.95) -> int:
    """Executions needed to see at least one failure of a *rate_* flake with *confidence*."""
    if not 0 < rate_ < 1:
        raise ValueError("rate must be strictly between 0 and 1")
    return math.ceil(math.log(1 - confidence) / math.log1p(-rate_))


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test for the table [[a, b], [c, d]].

    Rows are conditions (e.g. pinned / released), columns failed / passed. Sums the
    probabilities of all tables with the same margins that are no more likely than this one.
    """
    for v in (a, b, c, d):
        if not isinstance(v, int) or v < 0:
            raise ValueError("counts must be non-negative integers")
    row1, row2, col1 = a + b, c + d, a + c
    n = row1 + row2
    if n == 0:
        return 1.0

    def logp(x: int) -> float:
        return (_lcomb(row1, x) + _lcomb(row2, col1 - x) - _lcomb(n, col1))

    lo, hi = max(0, col1 - row2), min(row1, col1)
    observed = logp(a)
    total = sum(math.exp(lp) for x in range(lo, hi + 1) if (lp := logp(x)) <= observed + 1e-9)
    return min(1.0, total)


def runs_to_decide(released: tuple[int, int], pinned: tuple[int, int], alpha: float = 1e-3,
                   most: int = 100_000) -> int | None:
    """About how many more executions, shared between the two arms so as to balance them, would
    bring Fisher's p below *alpha* if each arm kept its observed rate (0 more: decided already).

    None when the observed rates could never get there (the released arm fails no more often than
    the pinned one) or it would take more than *most*.
    """
    (f1, n1), (f0, n0) = released, pinned
    r1, r0 = rate(f1, n1), rate(f0, n0)
    if fisher_exact(f1, n1 - f1, f0, n0 - f0) < alpha:
        return 0
    if not n1 or r1 <= r0:
        return None
    extra = 8
    while extra <= most:
        m1 = max(n1, (n1 + n0 + extra) // 2)
        m0 = n1 + n0 + extra - m1
        g1, g0 = min(m1, max(f1, round(r1 * m1))), min(m0, max(f0, round(r0 * m0)))
        if fisher_exact(g1, m1 - g1, g0, m0 - g0) < alpha:
            return extra
        extra = int(extra * 1.25) + 1
    return None


def _lcomb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _check(failures: int, executions: int) -> None:
    if executions < 0 or failures < 0 or failures > executions:
        raise ValueError(f"need 0 <= failures <= executions, got {failures}/{executions}")
