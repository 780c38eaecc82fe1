"""``realtalk.eval.stats``: the tests ``eval --compare`` runs, against published values (scipy's
documentation examples, Fisher's tea tasting and plant heights) and against brute-force enumeration
of every arrangement, which shares no code with the module's dynamic programming."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from realtalk.eval.stats import fisher_exact, mann_whitney_u, ranks, wilcoxon_signed_rank

MALES = [19, 22, 16, 29, 24]  # scipy.stats.mannwhitneyu's documented example
FEMALES = [20, 11, 17, 12]
# Darwin's Zea mays, cross- minus self-fertilised heights (Fisher 1935; scipy.stats.wilcoxon's example)
PLANT_DIFFERENCES = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]


def test_ranks_share_the_average_rank_between_ties() -> None:
    assert ranks([10, 20, 20, 5]) == ([2.0, 3.5, 3.5, 1.0], [2])


def test_mann_whitney_exact_matches_the_published_example() -> None:
    result = mann_whitney_u(MALES, FEMALES)
    assert (result.statistic, result.method) == (17.0, "exact")
    assert result.p_value == pytest.approx(1 / 9, rel=1e-12)  # scipy: 0.1111111111111111


def test_mann_whitney_normal_matches_the_published_example() -> None:
    result = mann_whitney_u(MALES, FEMALES, method="normal")
    assert result.p_value == pytest.approx(0.11134688653314041, rel=1e-9)  # scipy, asymptotic


def _brute_force_u_p(a: list[float], b: list[float]) -> float:
    pooled = [*a, *b]
    n1, n2 = len(a), len(b)
    u_observed = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    extreme = max(u_observed, n1 * n2 - u_observed)
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), n1):
        rest = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        u = sum((pooled[i] > y) + 0.5 * (pooled[i] == y) for i in chosen for y in rest)
        total += 1
        hits += max(u, n1 * n2 - u) >= extreme
    return hits / total


@pytest.mark.parametrize("seed", range(6))
def test_mann_whitney_exact_agrees_with_enumerating_every_split(seed: int) -> None:
    rng = random.Random(seed)
    a = [rng.uniform(0, 100) for _ in range(rng.randint(3, 6))]
    b = [rng.uniform(20, 120) for _ in range(rng.randint(3, 6))]
    result = mann_whitney_u(a, b)
    assert result.method == "exact"
    assert result.p_value == pytest.approx(min(1.0, _brute_force_u_p(a, b)), rel=1e-12)


def test_mann_whitney_uses_the_normal_approximation_when_values_tie() -> None:
    result = mann_whitney_u([0.0, 0.0, 0.1, 0.2], [0.0, 0.3, 0.4, 0.5])
    assert result.method == "normal"
    assert 0 < result.p_value < 1


def test_mann_whitney_of_identical_samples_is_not_significant() -> None:
    assert mann_whitney_u([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]).p_value == 1.0
    assert mann_whitney_u([1.0, 2.0, 3.0], [1.5, 2.5, 3.5]).p_value > 0.5


def test_wilcoxon_exact_matches_the_published_example() -> None:
    result = wilcoxon_signed_rank(PLANT_DIFFERENCES)
    assert (result.statistic, result.method) == (24.0, "exact")
    assert result.p_value == pytest.approx(0.041259765625, rel=1e-12)  # scipy: 676 * 2 / 2**15


def test_wilcoxon_normal_matches_the_published_example() -> None:
    result = wilcoxon_signed_rank(PLANT_DIFFERENCES, method="normal")
    assert result.p_value == pytest.approx(0.04088813291185591, rel=1e-9)  # scipy, method="approx"


@pytest.mark.parametrize("seed", range(6))
def test_wilcoxon_exact_agrees_with_enumerating_every_sign(seed: int) -> None:
    rng = random.Random(seed)
    differences = [rng.uniform(-40, 60) for _ in range(rng.randint(5, 10))]
    magnitudes = sorted(abs(d) for d in differences)
    rank = {m: i + 1 for i, m in enumerate(magnitudes)}
    observed = sum(rank[abs(d)] for d in differences if d > 0)
    total = len(differences) * (len(differences) + 1) / 2
    extreme = min(observed, total - observed)
    hits = 0
    for signs in itertools.product((1, -1), repeat=len(differences)):
        t = sum(rank[m] for m, s in zip(magnitudes, signs, strict=True) if s > 0)
        hits += min(t, total - t) <= extreme
    assert wilcoxon_signed_rank(differences).p_value == pytest.approx(
        min(1.0, hits / 2 ** len(differences)), rel=1e-12
    )


def test_wilcoxon_drops_zero_differences_and_ties_go_normal() -> None:
    assert wilcoxon_signed_rank([0.0, 0.0, 0.0]).p_value == 1.0
    with_zeros = wilcoxon_signed_rank([0.0, *PLANT_DIFFERENCES])
    assert with_zeros.p_value == pytest.approx(0.041259765625)
    assert wilcoxon_signed_rank([1.0, 1.0, 2.0, 3.0, -4.0, 5.0]).method == "normal"


def test_fisher_exact_matches_the_tea_tasting_and_the_published_example() -> None:
    assert fisher_exact(3, 1, 1, 3).p_value == pytest.approx(17 / 35, rel=1e-12)  # Fisher's lady
    result = fisher_exact(6, 2, 1, 4)  # scipy.stats.fisher_exact's documented table
    assert result.statistic == 12.0
    assert result.p_value == pytest.approx(0.10256410256410256, rel=1e-12)


def test_fisher_exact_is_significant_for_all_pass_against_all_fail() -> None:
    p = fisher_exact(8, 0, 0, 8).p_value
    assert p == pytest.approx(2 / math.comb(16, 8), rel=1e-12)
    assert p < 0.001


def test_fisher_exact_of_equal_rates_is_one() -> None:
    assert fisher_exact(5, 5, 5, 5).p_value == pytest.approx(1.0)
    assert fisher_exact(0, 0, 0, 0).p_value == 1.0
