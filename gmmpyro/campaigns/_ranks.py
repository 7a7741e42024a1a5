"""Are SBC ranks uniform? Bins chosen from the number of simulations, a χ² test, a KS test, expected bands.

Ranks take the ``L + 1`` values ``0 … L``; why two tests, and how many bins, is said in
:class:`~gmmpyro.campaigns.sbc_result.SBCResult`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bin_edges", "chi_square", "expected_band", "ks_uniform", "n_bins", "randomised_ranks"]

_MIN_EXPECTED = 10
_MAX_BINS = 20
_JITTER_STREAM = 0x6B73  # tags the random stream of the randomised ranks ("ks")


def n_bins(n_simulations: int, n_draws: int) -> int:
    """The histogram's bins ``B`` for ``n_simulations`` ranks in ``0 … n_draws`` (see the module docstring).

    Example:
        >>> n_bins(100, 99), n_bins(1000, 99), n_bins(300, 100), n_bins(5, 99)
        (10, 20, 20, 2)
    """
    cap = max(2, min(_MAX_BINS, n_simulations // _MIN_EXPECTED, n_draws + 1))
    divisors = [b for b in range(2, cap + 1) if (n_draws + 1) % b == 0]
    if divisors and 2 * divisors[-1] > cap:
        return divisors[-1]
    return cap


def bin_edges(n_draws: int, bins: int) -> np.ndarray:
    """Integer bin edges over the rank values: bin ``b`` holds ranks ``edges[b] ≤ r < edges[b + 1]``.

    Example:
        >>> bin_edges(99, 4).tolist(), bin_edges(4, 2).tolist()
        ([0, 25, 50, 75, 100], [0, 2, 5])
    """
    return np.round(np.linspace(0, n_draws + 1, bins + 1)).astype(np.int64)


def expected_band(n: int, edges: np.ndarray, level: float = 0.99) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin the expected count of ``n`` uniform ranks and its central binomial ``level`` interval.

    Returns:
        ``(expected, low, high)``, each shape ``(B,)``.
    """
    from scipy import stats

    share = np.diff(edges) / edges[-1]
    tail = (1 - level) / 2
    return n * share, stats.binom.ppf(tail, n, share), stats.binom.ppf(1 - tail, n, share)


def chi_square(ranks: np.ndarray, n_draws: int, bins: int) -> tuple[float, float]:
    """Pearson's χ² of the binned ranks ``(n,)`` against uniform, and its p-value (``B - 1`` dof)."""
    from scipy import stats

    edges = bin_edges(n_draws, bins)
    observed = np.histogram(ranks, bins=edges)[0]
    expected = len(ranks) * np.diff(edges) / edges[-1]
    result = stats.chisquare(observed, expected)
    return float(result.statistic), float(result.pvalue)


def randomised_ranks(ranks: np.ndarray, toys: np.ndarray, n_draws: int, seed: int) -> np.ndarray:
    """``(r + U)/(L + 1)`` for ranks ``(n, k)`` of simulations ``toys (n,)``, ``U`` drawn from ``(seed, toy)``.

    Example:
        >>> u = randomised_ranks(np.array([[0], [9]]), np.array([0, 1]), 9, 0)
        >>> bool(0 < u[0, 0] < 0.1 < 0.9 < u[1, 0] < 1)
        True
    """
    jitter = np.array([np.random.default_rng([_JITTER_STREAM, seed, int(t)]).random(ranks.shape[1]) for t in toys])
    return (ranks + jitter.reshape(ranks.shape)) / (n_draws + 1)


def ks_uniform(u: np.ndarray) -> float:
    """The KS p-value of ``u (n,)`` against ``Uniform(0, 1)`` (exact for small ``n``)."""
    from scipy import stats

    return float(stats.kstest(u, "uniform").pvalue)
