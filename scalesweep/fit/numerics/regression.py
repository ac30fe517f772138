"""Power laws as linear regressions in log space, with statsmodels OLS.

`loglog_ols` fits y = k·x^p (isoFLOP exponents, LR transfer, Kaplan power laws); `loglinear_ols`
fits y = c·Π x_i^{e_i} over several columns (Step Law's η_opt(N, D)). Both are one OLS of ln y
on ln x, so standard errors, intervals and R² come from the same place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.runs import finite_or_none


def _ols(log_x: np.ndarray, log_y: np.ndarray) -> Any:
    import statsmodels.api as sm

    return sm.OLS(log_y, sm.add_constant(log_x, has_constant="add")).fit()


def t_quantile(level: float, dof: int) -> float:
    """The two-sided `level` quantile of Student's t with `dof` (at least 1) degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, max(dof, 1)))


@dataclass(frozen=True)
class LogLogFit:
    """y = k·x^p fitted as ln y = ln k + p ln x by OLS."""

    exponent: float
    """p."""
    coef: float
    """k."""
    se: float | None
    """Standard error of p (None with 2 points)."""
    ci: tuple[float | None, float | None]
    """Confidence interval of p."""
    n_points: int
    """Points fitted."""
    r2: float | None
    """Coefficient of determination in log space."""
    cov: tuple[tuple[float, float], tuple[float, float]] | None = None
    """Covariance of (ln k, p), for confidence bands (None with 2 points)."""
    level: float = 0.95
    """Confidence level of `ci` and `band`."""
    resid_var: float | None = None
    """Residual variance in log space (None with 2 points), for prediction intervals."""

    def predict(self, x: Any) -> Any:
        return self.coef * np.power(x, self.exponent)

    def band(self, x: Any, *, prediction: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise interval of the fitted line at `x`: the confidence band of the line, or
        with `prediction` the interval where a new point falls (line uncertainty plus the
        residual scatter). None without a covariance."""
        if self.cov is None:
            return None
        lx = np.log(np.asarray(x, float))
        cov = np.asarray(self.cov)
        var = cov[0, 0] + 2 * lx * cov[0, 1] + lx * lx * cov[1, 1]
        if prediction:
            var = var + (self.resid_var or 0.0)
        t = t_quantile(self.level, self.n_points - 2)
        center = np.log(self.coef) + self.exponent * lx
        return np.exp(center - t * np.sqrt(var)), np.exp(center + t * np.sqrt(var))

    def to_dict(self) -> dict[str, Any]:
        skip = ("ci", "cov")
        return {k: finite_or_none(v) for k, v in asdict(self).items() if k not in skip} | {
            "ci": [finite_or_none(x) for x in self.ci]
        }


def loglog_ols(x: np.ndarray, y: np.ndarray, *, level: float = 0.95) -> LogLogFit:
    """OLS of ln y on ln x (standard error and conf_int of the slope).

    Example:
        >>> round(loglog_ols(np.array([1.0, 10, 100]), np.array([2.0, 20, 200])).exponent, 6)
        1.0
    """
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if lx.size < 2 or np.ptp(lx) == 0:
        raise UserError(f"a power-law fit needs at least 2 distinct x values, but got {lx.size}")
    result = _ols(lx, ly)
    if lx.size > 2:
        low, high = result.conf_int(alpha=1 - level)[1]
        se: float | None = float(result.bse[1])
        ci: tuple[float | None, float | None] = (float(low), float(high))
        with np.errstate(divide="ignore", invalid="ignore"):  # R² of a constant y is undefined
            r2: float | None = float(result.rsquared)
        (c00, c01), (c10, c11) = np.asarray(result.cov_params(), float)
        cov: tuple[tuple[float, float], tuple[float, float]] | None = ((c00, c01), (c10, c11))
        resid_var: float | None = float(result.scale)
    else:  # an exact line through two points has no error estimate
        se, ci, r2, cov, resid_var = None, (None, None), None, None, None
    return LogLogFit(
        float(result.params[1]),
        float(math.exp(result.params[0])),
        se,
        ci,
        lx.size,
        r2,
        cov=cov,
        level=level,
        resid_var=resid_var,
    )


@dataclass(frozen=True)
class LogLinearLaw:
    """y = c·Π x_i^{e_i}, fitted as ln y = ln c + Σ e_i ln x_i."""

    coef: float
    """c."""
    exponents: dict[str, float]
    """Exponent per variable."""
    se: dict[str, float | None]
    """Standard error per exponent."""
    ci: dict[str, tuple[float | None, float | None]]
    """Confidence interval per exponent."""
    r2: float | None
    """R² in log space."""
    n_points: int
    """Points fitted."""

    def predict(self, **values: float) -> float:
        out = self.coef
        for name, exponent in self.exponents.items():
            out *= values[name] ** exponent
        return float(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coef": finite_or_none(self.coef),
            "exponents": {k: finite_or_none(v) for k, v in self.exponents.items()},
            "se": {k: finite_or_none(v) for k, v in self.se.items()},
            "ci": {k: [finite_or_none(x) for x in v] for k, v in self.ci.items()},
            "r2": finite_or_none(self.r2),
            "n_points": self.n_points,
        }


def loglinear_ols(
    frame: pd.DataFrame, y: str, xs: tuple[str, ...], *, level: float = 0.95
) -> LogLinearLaw:
    """OLS of ln y on ln x for each column x in `xs`."""
    response = np.log(frame[y].to_numpy(float))
    if len(response) <= len(xs) + 1:
        raise UserError(
            f"a fit of `{y}` on {list(xs)} needs at least {len(xs) + 2} points, "
            f"but got {len(response)}"
        )
    result = _ols(np.log(frame[list(xs)].to_numpy(float)), response)
    bounds = result.conf_int(alpha=1 - level)
    with np.errstate(divide="ignore", invalid="ignore"):  # R² of a constant y is undefined
        r2 = float(result.rsquared)
    return LogLinearLaw(
        coef=float(math.exp(result.params[0])),
        exponents={x: float(result.params[i + 1]) for i, x in enumerate(xs)},
        se={x: float(result.bse[i + 1]) for i, x in enumerate(xs)},
        ci={x: (float(bounds[i + 1][0]), float(bounds[i + 1][1])) for i, x in enumerate(xs)},
        r2=r2,
        n_points=len(response),
    )


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
