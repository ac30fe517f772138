"""The optimal loss against compute, L_opt(C) = E + A·C^-α, with its uncertainty.

Fitted to an isoFLOP fit's per-budget minima (one point per budget) as Porian et al. 2024 fit
it: in log space, ln L = ln(E + A·C^-α) (budgets span orders of magnitude, so relative errors
are what is comparable), here by least squares (scipy `least_squares`, Levenberg–Marquardt,
from a small grid of starts). C is divided by the smallest budget first, so A is the reducible
loss at that budget and the problem is well conditioned.

Uncertainty by the delta method: the covariance of θ = (ln E, ln A, α) is s²·(JᵀJ)⁻¹ with s²
the residual variance (n − 3 degrees of freedom), and at a new C:
- the *confidence band* is where the fitted law lies: ln L̂ ± t·√(gᵀΣg), g = ∂ ln L̂/∂θ;
- the *prediction interval* is where a new budget's optimal loss falls: it adds the scatter of
  single budgets around the law, ln L̂ ± t·√(gᵀΣg + s²).
With 3 budgets the law goes through them exactly and has no interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalesweep.fit.numerics.regression import t_quantile
from scalesweep.fit.runs import finite_or_none

ALPHA_STARTS = (0.05, 0.1, 0.2, 0.4)
E_FRACTIONS = (0.3, 0.6, 0.9)
"""Starts: α, and E as a fraction of the lowest loss."""


def _model(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ln L at x = ln(C / C0) for θ = (ln E, ln A, α)."""
    return np.logaddexp(theta[0], theta[1] - theta[2] * x)


def _gradient(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """∂ ln L/∂θ, shape (len(x), 3): the softmax weights of the two terms."""
    e_term, a_term = theta[0], theta[1] - theta[2] * x
    w = 1.0 / (1.0 + np.exp(a_term - e_term))  # share of E in L
    return np.column_stack([w, 1 - w, -(1 - w) * x])


@dataclass(frozen=True)
class SaturatingLaw:
    """L(C) = E + A·(C/C0)^-α fitted in log space, with delta-method intervals."""

    E: float
    """Irreducible loss."""
    A: float
    """Reducible loss at C0."""
    alpha: float
    """Compute exponent α."""
    c0: float
    """Reference budget (the smallest fitted)."""
    n_points: int
    """Budgets fitted."""
    level: float
    """Level of the intervals."""
    cov: tuple[tuple[float, ...], ...] | None = None
    """Covariance of (ln E, ln A, α); None without residual degrees of freedom."""
    resid_var: float | None = None
    """Residual variance of ln L (the scatter of single budgets around the law)."""

    @property
    def theta(self) -> np.ndarray:
        return np.array([math.log(self.E), math.log(self.A), self.alpha])

    def predict(self, flops: Any) -> np.ndarray:
        x = np.log(np.asarray(flops, float) / self.c0)
        return np.exp(_model(self.theta, x))

    def band(self, flops: Any, *, prediction: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
        """Confidence band of the law at `flops`, or with `prediction` the prediction interval
        of a new budget's optimal loss; None without an error estimate."""
        if self.cov is None or self.resid_var is None:
            return None
        x = np.atleast_1d(np.log(np.asarray(flops, float) / self.c0))
        g = _gradient(self.theta, x)
        var = np.einsum("ij,jk,ik->i", g, np.asarray(self.cov), g)
        if prediction:
            var = var + self.resid_var
        t = t_quantile(self.level, self.n_points - 3)  # ≥ 1 dof: there is a covariance
        center = _model(self.theta, x)
        return np.exp(center - t * np.sqrt(var)), np.exp(center + t * np.sqrt(var))

    def to_dict(self) -> dict[str, Any]:
        keys = ("E", "A", "alpha", "c0", "n_points", "level", "resid_var")
        return {k: finite_or_none(getattr(self, k)) for k in keys}


def fit_saturating(flops: np.ndarray, loss: np.ndarray, *, level: float = 0.95) -> SaturatingLaw:
    """L = E + A·(C/C0)^-α through (flops, loss) points (at least 3, loss > 0).

    Example:
        >>> c = np.geomspace(1e17, 1e20, 6)
        >>> law = fit_saturating(c, 1.7 + 3.0 * (c / 1e17) ** -0.2)
        >>> round(law.E, 3), round(law.alpha, 3)
        (1.7, 0.2)
    """
    from scipy.optimize import least_squares

    c0 = float(np.min(flops))
    x, y = np.log(np.asarray(flops, float) / c0), np.log(np.asarray(loss, float))
    low = float(np.min(loss))
    best = None
    for alpha in ALPHA_STARTS:
        for share in E_FRACTIONS:
            reducible = max(float(loss[np.argmin(x)]) - share * low, 1e-6 * low)
            start = np.array([math.log(share * low), math.log(reducible), alpha])
            result = least_squares(lambda t: _model(t, x) - y, start, method="lm")
            if best is None or result.cost < best.cost:
                best = result
    assert best is not None
    theta, dof = best.x, len(x) - 3
    cov = resid_var = None
    if dof > 0:
        resid_var = 2.0 * float(best.cost) / dof
        jac = _gradient(theta, x)
        matrix = np.linalg.pinv(jac.T @ jac) * resid_var
        cov = tuple(tuple(float(v) for v in row) for row in matrix)
    return SaturatingLaw(
        E=float(math.exp(theta[0])),
        A=float(math.exp(theta[1])),
        alpha=float(theta[2]),
        c0=c0,
        n_points=len(x),
        level=level,
        cov=cov,
        resid_var=resid_var,
    )
