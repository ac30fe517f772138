"""Statistics shared by the batch-size and Kaplan fits: a weighted log-log line, the delete-one
jackknife covariance (for fits whose independent unit is a group of points, the runs of one
batch size, rather than a point) and t quantiles."""

from __future__ import annotations

import math

import numpy as np

from scalesweep.fit.regression import LogLogFit


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


def weighted_loglog(
    x: np.ndarray, y: np.ndarray, se_log_y: np.ndarray, *, level: float = 0.95
) -> LogLogFit:
    """y = k·x^p by WLS of ln y on ln x with weights 1/se², the scale from the residuals.

    Example:
        >>> fit = weighted_loglog(np.array([2.0, 4, 8]), np.array([8.0, 4, 2]), np.ones(3))
        >>> round(fit.exponent, 6), round(fit.coef, 6)
        (-1.0, 16.0)
    """
    import statsmodels.api as sm

    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    result = sm.WLS(ly, sm.add_constant(lx), weights=1.0 / np.asarray(se_log_y) ** 2).fit()
    low, high = result.conf_int(alpha=1 - level)[1]
    (c00, c01), (c10, c11) = np.asarray(result.cov_params(), float)
    with np.errstate(divide="ignore", invalid="ignore"):  # R² of an exact line is undefined
        r2 = float(result.rsquared)
    return LogLogFit(
        exponent=float(result.params[1]),
        coef=float(math.exp(result.params[0])),
        se=float(result.bse[1]),
        ci=(float(low), float(high)),
        n_points=len(lx),
        r2=r2,
        cov=((c00, c01), (c10, c11)),
        level=level,
    )
