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

Which budgets (`select_window`): all of them, or only the largest few when those forecast
better. A sweep's smallest budgets may follow another law (Porian et al. 2024 find untuned warmup
and hyperparameters bend them), and a law fitted through them then misses at larger budgets. The
window is chosen by out-of-sample forecasts, as Pesaran and Timmermann (2007) choose estimation
windows under breaks: for each candidate window, the law fitted to it ending one and two budgets
before each of the last few budgets predicts that budget; the window with the smallest RMS log
error wins (ties: the longer). With no break, all budgets win and nothing changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scalesweep.fit.numerics.regression import t_quantile
from scalesweep.fit.runs import finite_or_none

ALPHAS = np.linspace(0.005, 2.0, 400)
"""The exponents the start is chosen from (see `_start`)."""


def _model(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ln L at x = ln(C / C0) for θ = (ln E, ln A, α)."""
    return np.logaddexp(theta[0], theta[1] - theta[2] * x)


def _gradient(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """∂ ln L/∂θ, shape (len(x), 3): the softmax weights of the two terms."""
    e_term, a_term = theta[0], theta[1] - theta[2] * x
    from scipy.special import expit

    w = expit(e_term - a_term)  # share of E in L (no overflow when E is negligible)
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
    window: int | None = None
    """The largest budgets the law was fitted to, when `select_window` chose fewer than all."""
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
        keys = ("E", "A", "alpha", "c0", "n_points", "level", "resid_var", "window")
        return {k: finite_or_none(getattr(self, k)) for k in keys}


def _start(x: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """θ to start least squares from: for each α of `ALPHAS` the law is linear in (E, A), so
    (E, A) ≥ 0 is solved in closed form for the relative residuals (variable projection, as
    `parametric.projection` does for Approach 3), every α at once; the best α wins."""
    w = 1.0 / loss**2
    p = np.exp(-np.outer(ALPHAS, x))  # (C/C0)^-α per α, (n_alpha, n)
    s0, s1, s2 = w.sum(), p @ w, (p * p) @ w
    r0, r1 = (w * loss).sum(), p @ (w * loss)
    det = s0 * s2 - s1 * s1
    with np.errstate(divide="ignore", invalid="ignore"):
        e, a = (r0 * s2 - s1 * r1) / det, (s0 * r1 - s1 * r0) / det
        # a bound hit: the other coefficient alone
        e, a = np.where(e < 0, 0.0, e), np.where(e < 0, r1 / s2, a)
        e, a = np.where(a < 0, r0 / s0, e), np.where(a < 0, 0.0, a)
    sse = (w * loss**2).sum() - 2 * (e * r0 + a * r1) + e * e * s0 + 2 * e * a * s1 + a * a * s2
    best = int(np.nanargmin(np.where(np.isfinite(sse), sse, np.inf)))
    floor = 1e-6 * float(loss.min())  # ln of a zero coefficient must be finite
    return np.array([math.log(max(e[best], floor)), math.log(max(a[best], floor)), ALPHAS[best]])


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
    best = least_squares(
        lambda t: _model(t, x) - y, _start(x, np.exp(y)), jac=lambda t: _gradient(t, x), method="lm"
    )
    theta, dof = best.x.copy(), len(x) - 3
    # E → 0 drives ln E to −∞ (a pure power law): keep it finite, a negligible E
    theta[0] = max(theta[0], math.log(1e-12 * float(np.min(loss))))
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


WINDOWS = (7, 5)
"""Trailing windows tried besides all budgets (each only when shorter than all)."""
SCORED_TARGETS = 3
"""The last budgets each window's forecasts are scored on, from one and two budgets before."""
MIN_FIT = 4
"""Budgets a scored fit needs (3 parameters and one residual degree of freedom)."""


def _window_error(x: np.ndarray, y: np.ndarray, window: int) -> float | None:
    """RMS log error of the window's forecasts of the last budgets (None: too few to score)."""
    errors = []
    for target in range(len(x) - 1, len(x) - 1 - SCORED_TARGETS, -1):
        for ahead in (1, 2):
            end = target - ahead + 1
            start = max(0, end - window)
            if end - start >= MIN_FIT:
                law = fit_saturating(x[start:end], y[start:end])
                errors.append(math.log(law.predict(x[target : target + 1])[0] / y[target]))
    return math.sqrt(float(np.mean(np.square(errors)))) if errors else None


def select_window(flops: np.ndarray, loss: np.ndarray, *, level: float = 0.95) -> SaturatingLaw:
    """`fit_saturating` on all budgets or on the trailing window of the largest ones whose
    forecasts of the last budgets erred least (see the module docstring)."""
    order = np.argsort(flops)
    x, y = np.asarray(flops, float)[order], np.asarray(loss, float)[order]
    windows = [len(x), *(w for w in WINDOWS if w < len(x))]
    scores = {w: e for w in windows if (e := _window_error(x, y, w)) is not None}
    best = min(scores, key=lambda w: (scores[w], -w), default=len(x))
    law = fit_saturating(x[-best:], y[-best:], level=level)
    return law if best == len(x) else replace(law, window=best)
