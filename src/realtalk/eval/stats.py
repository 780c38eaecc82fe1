"""The significance tests ``realtalk eval --compare`` runs, in the standard library only (no scipy).

- ``mann_whitney_u(a, b)``: two independent samples (two-sided). Exact distribution of U when there
  are no ties and neither sample is larger than ``EXACT_MAX_N``; otherwise the normal approximation
  with the tie correction and a continuity correction of 0.5 (scipy's ``mannwhitneyu`` defaults).
- ``wilcoxon_signed_rank(differences)``: paired samples (two-sided). Zero differences are dropped
  (Wilcoxon's method); exact distribution of T+ when no ties remain and n <= ``EXACT_MAX_N``,
  otherwise the normal approximation with the tie correction and no continuity correction
  (scipy's ``wilcoxon`` defaults), so numbers can be checked against scipy by anyone who has it.
- ``fisher_exact(a_passed, a_failed, b_passed, b_failed)``: two pass rates (two-sided; the
  probabilities of every table no more likely than the one observed, as R and scipy do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["EXACT_MAX_N", "TestResult", "fisher_exact", "mann_whitney_u", "ranks", "wilcoxon_signed_rank"]

EXACT_MAX_N = 25  # exact distributions up to this many values a side (DP, well under a millisecond)


Method = Literal["auto", "exact", "normal"]


@dataclass(frozen=True)
class TestResult:
    """A test's name, its statistic, its two-sided p-value and how the p-value was computed."""

    test: str  # "Mann-Whitney U", "Wilcoxon signed-rank", "Fisher's exact"
    statistic: float
    p_value: float
    method: Literal["exact", "normal"]


def ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks from 1, ties given their average rank, and the sizes of the groups of ties (> 1)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    ties: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            out[order[k]] = (start + end) / 2 + 1
        if end > start:
            ties.append(end - start + 1)
        start = end + 1
    return out, ties


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _u_counts(m: int, n: int) -> list[int]:
    """How many arrangements of m + n distinct values give each U (0..m*n) for the first sample:
    the coefficients of the Gaussian binomial [m+n choose m], by f(m, n) = f(m-1, n)·q^n + f(m, n-1)."""
    # row[j] holds f(i, j) for the current i.
    row = [[1] for _ in range(n + 1)]  # f(0, j) = 1
    for i in range(1, m + 1):
        new = [[1]]  # f(i, 0) = 1
        for j in range(1, n + 1):
            up, left = row[j], new[j - 1]  # f(i-1, j) shifted by j, f(i, j-1)
            poly = [0] * (i * j + 1)
            for u, count in enumerate(up):
                poly[u + j] += count
            for u, count in enumerate(left):
                poly[u] += count
            new.append(poly)
        row = new
    return row[n]


def mann_whitney_u(a: Sequence[float], b: Sequence[float], *, method: Method = "auto") -> TestResult:
    """Two-sided Mann-Whitney U test of ``a`` against ``b``; the statistic is U of ``a``.
    ``method="auto"``: exact when there are no ties and both samples are small, else normal."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs at least one value in each sample")
    ranked, ties = ranks([*a, *b])
    u1 = sum(ranked[:n1]) - n1 * (n1 + 1) / 2
    u_high = max(u1, n1 * n2 - u1)
    if method == "exact" or (method == "auto" and not ties and max(n1, n2) <= EXACT_MAX_N):
        counts = _u_counts(n1, n2)
        at_least = sum(counts[math.ceil(u_high - 1e-9) :])
        p = min(1.0, 2 * at_least / math.comb(n1 + n2, n1))
        return TestResult("Mann-Whitney U", u1, p, "exact")
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
    if sigma == 0:  # every value the same
        return TestResult("Mann-Whitney U", u1, 1.0, "normal")
    z = (u_high - n1 * n2 / 2 - 0.5) / sigma
    return TestResult("Mann-Whitney U", u1, min(1.0, 2 * _normal_sf(z)), "normal")


def wilcoxon_signed_rank(differences: Sequence[float], *, method: Method = "auto") -> TestResult:
    """Two-sided Wilcoxon signed-rank test of paired differences (B - A); the statistic is
    min(T+, T-). Zero differences are dropped; with none left the p-value is 1."""
    nonzero = [d for d in differences if d != 0]
    n = len(nonzero)
    if n == 0:
        return TestResult("Wilcoxon signed-rank", 0.0, 1.0, "exact")
    ranked, ties = ranks([abs(d) for d in nonzero])
    t_plus = sum(r for r, d in zip(ranked, nonzero, strict=True) if d > 0)
    total = n * (n + 1) / 2
    t_low = min(t_plus, total - t_plus)
    if method == "exact" or (method == "auto" and not ties and n <= EXACT_MAX_N):
        # counts[s]: sign assignments whose positive ranks sum to s.
        counts = [1] + [0] * int(total)
        for rank in range(1, n + 1):
            for s in range(int(total), rank - 1, -1):
                counts[s] += counts[s - rank]
        at_most = sum(counts[: int(t_low) + 1])
        return TestResult("Wilcoxon signed-rank", t_low, min(1.0, 2 * at_most / 2**n), "exact")
    variance = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in ties) / 48
    if variance <= 0:
        return TestResult("Wilcoxon signed-rank", t_low, 1.0, "normal")
    z = (t_low - total / 2) / math.sqrt(variance)
    return TestResult("Wilcoxon signed-rank", t_low, min(1.0, 2 * _normal_sf(abs(z))), "normal")


def fisher_exact(a_passed: int, a_failed: int, b_passed: int, b_failed: int) -> TestResult:
    """Two-sided Fisher's exact test of the table [[a_passed, a_failed], [b_passed, b_failed]];
    the statistic is the odds ratio (``inf`` or ``nan`` where a cell is 0)."""
    if min(a_passed, a_failed, b_passed, b_failed) < 0:
        raise ValueError("fisher_exact needs counts >= 0")
    row_a, passed, total = a_passed + a_failed, a_passed + b_passed, a_passed + a_failed + b_passed + b_failed
    if a_failed * b_passed:
        odds = a_passed * b_failed / (a_failed * b_passed)
    else:
        odds = math.nan if a_passed * b_failed == 0 else math.inf
    if total == 0:
        return TestResult("Fisher's exact", odds, 1.0, "exact")
    # Integer weights, so "no more likely than observed" is exact (no rounding tolerance needed).
    # The cell a_passed follows the hypergeometric distribution with the margins fixed.
    low, high = max(0, passed - (total - row_a)), min(row_a, passed)
    weights = {x: math.comb(row_a, x) * math.comb(total - row_a, passed - x) for x in range(low, high + 1)}
    observed = weights[a_passed]
    as_extreme = sum(w for w in weights.values() if w <= observed)
    p = as_extreme / math.comb(total, passed)
    return TestResult("Fisher's exact", odds, min(1.0, p), "exact")
