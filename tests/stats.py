"""Goodness-of-fit helpers shared by the statistical tests: one binned chi-square and the power
it has against a given wrong distribution (so each test can show, next to itself, that its
sample size catches the planted bugs it claims to catch)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import numpy as np
import numpy.typing as npt
from scipy.stats import binom, chi2, chisquare, ncx2

FloatArray = npt.NDArray[np.float64]


def pooled_bins(expected: FloatArray, min_expected: float = 5.0) -> npt.NDArray[np.bool_]:
    """Which cells keep a bin of their own (the others are pooled into one): those whose expected
    count is at least ``min_expected``, the usual condition for the chi-square approximation."""
    return expected >= min_expected


def binned(probs: FloatArray, keep: npt.NDArray[np.bool_]) -> FloatArray:
    """``probs`` over the kept cells, then the pooled rest as one last bin."""
    return np.append(probs[keep], probs[~keep].sum())


def chi_square_p(counts: Mapping[Hashable, int], probs: Mapping[Hashable, float]) -> float:
    """p-value of the observed ``counts`` against the law ``probs`` (cells with an expected count
    under 5 pooled into one bin; a count in a cell of zero probability lands in the pooled bin)."""
    cells = list(probs)
    n = sum(counts.values())
    p = np.array([probs[c] for c in cells], dtype=np.float64)
    observed = np.array([counts.get(c, 0) for c in cells], dtype=np.float64)
    keep = pooled_bins(p * n)
    obs = np.append(observed[keep], n - observed[keep].sum())
    exp = binned(p, keep) * n
    if exp[-1] == 0:  # nothing pooled: drop the empty bin (an observation there fails the test outright)
        if obs[-1] > 0:
            return 0.0
        obs, exp = obs[:-1], exp[:-1]
    return float(chisquare(obs, exp).pvalue)


def chi_square_power(null: Mapping[Hashable, float], actual: Mapping[Hashable, float], n: int,
                     alpha: float) -> float:
    """The probability that ``chi_square_p`` of ``n`` draws from ``actual`` falls below ``alpha``
    when tested against ``null`` (noncentral chi-square, lambda = n * sum((a - p)^2 / p) over the
    test's own bins)."""
    cells = list(null)
    p = np.array([null[c] for c in cells], dtype=np.float64)
    a = np.array([actual.get(c, 0.0) for c in cells], dtype=np.float64)
    keep = pooled_bins(p * n)
    pb, ab = binned(p, keep), binned(a, keep)
    ab[-1] += 1.0 - a.sum()  # mass of ``actual`` outside ``null``'s cells falls in the pooled bin
    live = pb > 0
    df = int(live.sum()) - 1
    if df < 1:  # one bin: the test cannot tell any two laws apart
        return 0.0
    lam = float(n * (((ab[live] - pb[live]) ** 2) / pb[live]).sum())
    return float(ncx2.sf(chi2.isf(alpha, df), df, lam))


def total_variation(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> float:
    cells = set(a) | set(b)
    return 0.5 * sum(abs(a.get(c, 0.0) - b.get(c, 0.0)) for c in cells)


def binomial_power(n: int, rate: float, actual: float, rejects: Callable[[int], bool]) -> float:
    """The probability that a check on an accepted count out of ``n`` (``rejects(count)``: the
    check fails), made for ``rate``, fails when the count is drawn at ``actual``."""
    counts = np.arange(n + 1)
    pmf = binom.pmf(counts, n, actual)
    return float(sum(pmf[k] for k in counts if rejects(int(k))))
