"""The drift statistics on small count vectors and quantile grids (the data pass lives in drift.py).

Every function takes counts or quantiles that a single vectorised pass over the data produced, so
nothing here touches rows. Definitions match scipy's where scipy has the statistic (the bench
compares them): Jensen-Shannon distance as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``,
chi-squared as ``scipy.stats.chi2_contingency`` without continuity correction, the KS p-value as
``scipy.stats.ks_2samp(method="asymp")``.

scipy.stats takes longer to import than the rest of the monitor together, so it is imported inside the
two p-value functions: it loads only when a p-value is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
PSI_FLOOR = 1e-4
"""Bin shares below this are raised to it before PSI's logarithm (an empty bin would be infinite)."""


def shares(counts: Sequence[float] | FloatArray) -> FloatArray:
    """Counts as shares of their total (all zeros when the total is zero)."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    return values / total if total > 0 else np.zeros_like(values)


def psi(reference: Sequence[float] | FloatArray, current: Sequence[float] | FloatArray) -> float:
    """Population stability index: sum over bins of (c - r) * ln(c / r), shares floored at PSI_FLOOR."""
    r = np.maximum(shares(reference), PSI_FLOOR)
    c = np.maximum(shares(current), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference: Sequence[float] | FloatArray, current: Sequence[float] | FloatArray) -> float:
    """Jensen-Shannon distance (the square root of the divergence) in base 2: 0 same, 1 disjoint."""
    p, q = shares(reference), shares(current)
    m = (p + q) / 2

    def kl(a: FloatArray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def chi2_test(reference: Sequence[float] | FloatArray,
              current: Sequence[float] | FloatArray) -> tuple[float, int, float]:
    """Chi-squared test of homogeneity on the 2 x k table (empty categories dropped): (statistic, dof, p)."""
    from scipy.stats import chi2

    table = np.vstack([np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(rows == 0):
        return 0.0, 0, 1.0
    expected = np.outer(rows, table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return statistic, dof, float(chi2.sf(statistic, dof))


def ks_from_bins(reference: Sequence[float] | FloatArray, current: Sequence[float] | FloatArray) -> float:
    """Largest gap between the two CDFs at the bin edges (a lower bound of the KS statistic)."""
    gaps = np.cumsum(shares(reference))[:-1] - np.cumsum(shares(current))[:-1]
    return float(np.max(np.abs(gaps))) if gaps.size else 0.0


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Two-sided p-value of a two-sample KS statistic, as ks_2samp(method="asymp") computes it."""
    from scipy.stats import kstwo

    if n <= 0 or m <= 0:
        return 1.0
    effective = n * m / (n + m)
    return float(np.clip(kstwo.sf(statistic, np.round(effective)), 0.0, 1.0))


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order.

    A column is significant at false discovery rate alpha when its adjusted p-value is <= alpha;
    this controls the expected share of false alarms among the columns flagged.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return []
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    result = np.empty_like(p)
    result[order] = np.minimum(adjusted, 1.0)
    return [float(v) for v in result]


def binned_wasserstein(edges: Sequence[float], reference: Sequence[float], current: Sequence[float],
                       low: float, high: float) -> float:
    """Wasserstein-1 distance between two histograms on the same edges, each bin's mass at one point.

    Inner bins sit at their midpoints, the outer bins at ``low`` and ``high`` (the reference's 1st
    and 99th percentiles); the distance is then the sum over edges of the CDF gap times the distance
    between the neighbouring bins' points. A value never moves outside its bin, so an atom (many equal
    values) cannot create distance that is not there.
    """
    cuts = np.asarray(edges, dtype=np.float64)
    if cuts.size == 0:
        return 0.0
    points = np.concatenate([[min(low, cuts[0])], (cuts[:-1] + cuts[1:]) / 2, [max(high, cuts[-1])]])
    gaps = np.cumsum(shares(reference))[:-1] - np.cumsum(shares(current))[:-1]
    return float(np.sum(np.abs(gaps) * np.diff(points)))
