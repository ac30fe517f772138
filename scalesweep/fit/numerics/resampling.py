"""Resampling statistics: bootstrap percentile intervals, and the delete-one jackknife
covariance (for fits whose independent unit is a group of points, the runs of one batch size,
rather than a point)."""

from __future__ import annotations

import numpy as np

from scalesweep.fit.runs import finite_or_none


def jackknife_cov(replicates: np.ndarray) -> np.ndarray:
    """Delete-one jackknife covariance of the rows of `replicates`, one estimate per unit left
    out: (n−1)/n · Σ (θ_i − θ̄)(θ_i − θ̄)ᵀ (Efron and Tibshirani 1993, ch. 11).

    Example:
        >>> jackknife_cov(np.array([[1.0], [2.0], [3.0]]))  # n=3: 2/3 · 2
        array([[1.33333333]])
    """
    centred = replicates - replicates.mean(axis=0)
    n = len(replicates)
    return (n - 1) / n * centred.T @ centred


def percentile_interval(values: np.ndarray, level: float) -> list[float | None]:
    """The central `level` percentile interval of the finite `values` (bootstrap samples);
    [None, None] when none is finite.

    Example:
        >>> percentile_interval(np.arange(101.0), 0.5), percentile_interval(np.array([np.nan]), 0.5)
        ([25.0, 75.0], [None, None])
    """
    finite = values[np.isfinite(values)]
    if not finite.size:
        return [None, None]
    tail = 50 * (1 - level)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [finite_or_none(low), finite_or_none(high)]
