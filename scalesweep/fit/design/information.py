"""How much a run would narrow the forecast: the law's covariance and its update by one run.

The fitted law is L(N, D) = E + A·N^−α + B·D^−β on ln L, θ = (ln E, ln A, ln B, α, β). Near
the fit, ln L̂ is linear in θ with the Jacobian J (one row per run), and the least-squares
covariance of θ is Σ = s²·(JᵀJ)⁻¹, s the residuals' scale. A forecast q(θ) (ln N_opt(C) or
ln L_opt(C)) has variance gᵀΣg, g = ∂q/∂θ (the delta method). One more run at (N, D), row j,
adds j·jᵀ/s² to the information, and by Sherman–Morrison

    var_after = gᵀΣg − (gᵀΣj)² / (s² + jᵀΣj),

whatever loss the run then measures: the expected narrowing needs no simulation of its
outcome, only the current fit and its uncertainty. This is a c-optimal design (Atkinson, Donev
& Tobias 2007, ch. 17); refitting after the run moves the point forecast but, to first order,
not this variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from scalesweep.fit.laws.parametric.allocation import SIX_ND, FlopsPerToken, optimal_arrays

Objective = Literal["n_opt", "loss"]
MIN_SCALE = 1e-3
"""The smallest residual scale assumed (0.1 % of the loss): a fit that passes through its few
points exactly has not shown that runs are noiseless."""


def jacobian(theta: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """∂ ln L̂ / ∂θ at each (N, D): rows of (E, A·N^−α, B·D^−β, −A·N^−α·ln N, −B·D^−β·ln D)/L̂."""
    e, a, b, alpha, beta = theta
    n, d = np.asarray(n, float), np.asarray(d, float)
    term_n, term_d = np.exp(a) * n**-alpha, np.exp(b) * d**-beta
    loss = np.exp(e) + term_n + term_d
    columns = (np.full_like(n, np.exp(e)), term_n, term_d, -term_n * np.log(n), -term_d * np.log(d))
    return np.stack(columns, axis=-1) / loss[..., None]


def target(theta: np.ndarray, flops: float, objective: Objective, rule: FlopsPerToken) -> float:
    """q(θ): ln N_opt(C), or ln L_opt(C) with `objective="loss"`."""
    key = "n_opt" if objective == "n_opt" else "loss_opt"
    return float(np.log(optimal_arrays(theta, flops, rule)[key][0]))


def gradient(
    theta: np.ndarray, flops: float, objective: Objective, rule: FlopsPerToken = SIX_ND
) -> np.ndarray:
    """∂q/∂θ by central differences (q is smooth; its closed form is long)."""
    out = np.empty(5)
    for i in range(5):
        step = np.zeros(5)
        step[i] = 1e-5 * max(1.0, abs(theta[i]))
        up = target(theta + step, flops, objective, rule)
        down = target(theta - step, flops, objective, rule)
        out[i] = (up - down) / (2 * step[i])
    return out


@dataclass(frozen=True)
class Uncertainty:
    """θ's linearised covariance from the fitted runs."""

    theta: np.ndarray
    covariance: np.ndarray
    """Σ = s²·(JᵀJ)⁻¹."""
    scale: float
    """s: the residuals' root mean square on ln L (dof-corrected), at least `MIN_SCALE`."""

    def variance(self, g: np.ndarray) -> float:
        return float(g @ self.covariance @ g)

    def after(self, g: np.ndarray, n: float, d: float) -> float:
        """gᵀΣg once a run at (N, D) is added (Sherman–Morrison)."""
        j = jacobian(self.theta, np.array([n]), np.array([d]))[0]
        sj = self.covariance @ j
        return self.variance(g) - float(g @ sj) ** 2 / (self.scale**2 + float(j @ sj))

    def with_run(self, n: float, d: float) -> Uncertainty:
        """Σ once a run at (N, D) is added: the greedy choice of several runs."""
        j = jacobian(self.theta, np.array([n]), np.array([d]))[0]
        sj = self.covariance @ j
        covariance = self.covariance - np.outer(sj, sj) / (self.scale**2 + float(j @ sj))
        return Uncertainty(self.theta, covariance, self.scale)


def uncertainty(theta: np.ndarray, n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> Uncertainty:
    """Σ of the fit θ to the runs (N, D, L)."""
    jac = jacobian(theta, n, d)
    residuals = np.log(loss) - np.log(
        np.exp(theta[0]) + np.exp(theta[1]) * n ** -theta[3] + np.exp(theta[2]) * d ** -theta[4]
    )
    dof = max(len(loss) - 5, 1)
    scale = max(math.sqrt(float(residuals @ residuals) / dof), MIN_SCALE)
    # a tiny ridge: with a handful of runs JᵀJ can be singular in a direction q ignores
    info = jac.T @ jac
    info += 1e-10 * np.trace(info) * np.eye(5)
    return Uncertainty(theta, scale**2 * np.linalg.inv(info), scale)


def interval(point: float, variance: float, level: float) -> tuple[float, float]:
    """The interval of a positive quantity whose ln has `variance`: point·exp(±z·sd)."""
    from scipy.stats import norm

    half = float(norm.ppf(0.5 + level / 2)) * math.sqrt(max(variance, 0.0))
    return point * math.exp(-half), point * math.exp(half)


def relative_width(low: float, high: float, point: float) -> float:
    """(high − low) / point: the width `--target-width` is given in."""
    return (high - low) / point
