"""L(C) = E + A·C^-α per variant, fitted jointly, and the multiplier and crossover it implies.

One batch of problems at once (`numerics.lbfgs.minimize_batch`): the starts of the point fit,
or one problem per bootstrap resample, each with its own frontier. A problem is every variant's
frontier ln L at the budgets x = ln(C/C0), fitted in log space (budgets span orders of
magnitude, so relative errors are comparable, as `isoflop.loss_law` fits L_opt(C)):

    ln L_v(x) = ln(E_v + A_v·e^(-α_v·x)),    θ = (ln E_1..k, ln A_1..V, α_1..V)

with k = 1 when E is shared (OLMo's ladder and Marin share it across variants: the irreducible
loss is the data's, not the architecture's, and with 3 budgets a variant's own E is not
identified) or k = V.

The multiplier of variant v against the baseline b at compute C is the compute the baseline
needs to reach the variant's loss, over C: M(C) = C_b(L_v(C))/C with C_b the inverse of L_b.
With a shared E it is a power of C: ln M = (ln A_b − ln A_v)/α_b + (α_v/α_b − 1)·x, constant
when the exponents agree; where L_v(C) is at or below the baseline's E it is infinite (the
baseline never gets there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from scalesweep.fit.numerics.lbfgs import BatchObjective, minimize_batch

E_STARTS = (0.0, 0.3, 0.6, 0.8, 0.9)
"""Starts of E as fractions of the lowest loss (0: a pure power law)."""
ALPHA_STARTS = (0.05, 0.1, 0.2, 0.4, 0.8)
"""Starts of every α."""
RESOLUTION = 1e-4
"""Residuals are counted in units of this log loss (0.01 %): frontiers differ by fractions of a
percent, and L-BFGS's stopping rule (a relative reduction of max(|f|, 1)) would stop a sum of
squares of ~1e-6 before it moved."""


@dataclass(frozen=True)
class Laws:
    """Per-variant laws L_v(C) = E_v + A_v·(C/C0)^-α_v, one row per problem of a batch."""

    log_e: np.ndarray
    """(K, V) ln E of each variant (equal columns when E is shared)."""
    log_a: np.ndarray
    """(K, V) ln A_v: the reducible loss at C0."""
    alpha: np.ndarray
    """(K, V) α_v."""
    c0: float
    """The reference budget (the smallest)."""
    sse: np.ndarray
    """(K,) sum of squared log residuals, in units of RESOLUTION²."""

    def log_loss(self, flops: np.ndarray) -> np.ndarray:
        """(K, V, len(flops)) ln L_v(C)."""
        x = np.log(np.asarray(flops, float) / self.c0)
        return np.logaddexp(
            self.log_e[..., None], self.log_a[..., None] - self.alpha[..., None] * x
        )

    def log_multiplier(self, flops: np.ndarray, baseline: int) -> np.ndarray:
        """(K, V, len(flops)) ln M_v(C) against variant `baseline` (+inf where the variant's
        loss is at or below the baseline's E; the baseline's own row is 0)."""
        x = np.log(np.asarray(flops, float) / self.c0)
        target = self.log_loss(flops)
        b = baseline
        log_e_b = self.log_e[:, b, None, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            # ln(L − E_b), computed as ln L + ln(1 − e^(ln E_b − ln L)) to keep precision
            gap = target + np.log1p(-np.exp(np.minimum(log_e_b - target, 0.0)))
            gap = np.where(target > log_e_b, gap, -np.inf)
            log_c = -(gap - self.log_a[:, b, None, None]) / self.alpha[:, b, None, None]
        out = log_c - x
        out[:, b, :] = 0.0
        return np.where(np.isnan(out), np.inf, out)


def _unpack(theta: np.ndarray, n_var: int, shared_e: bool) -> tuple[np.ndarray, ...]:
    k = 1 if shared_e else n_var
    log_e = np.repeat(theta[:, :1], n_var, axis=1) if shared_e else theta[:, :k]
    return log_e, theta[:, k : k + n_var], theta[:, k + n_var :]


def _objective(y: np.ndarray, x: np.ndarray, shared_e: bool) -> BatchObjective:
    """The batch objective of `minimize_batch`: Σ ((ln L̂ − y)/RESOLUTION)² for problems `rows`,
    y (K, V, B)."""
    n_var = y.shape[1]

    def fun(theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_e, log_a, alpha = _unpack(theta, n_var, shared_e)
        a_term = log_a[..., None] - alpha[..., None] * x
        model = np.logaddexp(log_e[..., None], a_term)
        resid = (model - y[rows]) / RESOLUTION
        w = expit(log_e[..., None] - a_term)  # E's share of L
        scale = 2 / RESOLUTION
        g_e = scale * (resid * w).sum(axis=2)
        g_a = scale * (resid * (1 - w)).sum(axis=2)
        g_alpha = -scale * (resid * (1 - w) * x).sum(axis=2)
        g_e = g_e.sum(axis=1, keepdims=True) if shared_e else g_e
        return (resid**2).sum(axis=(1, 2)), np.concatenate([g_e, g_a, g_alpha], axis=1)

    return fun


def _starts(y: np.ndarray, shared_e: bool) -> np.ndarray:
    """A grid of starts for one problem y (V, B): E0 a fraction of the lowest loss, every α0
    the same, A0 what is left of each variant's loss at the smallest budget."""
    loss = np.exp(y)
    floor = 1e-6 * float(loss.min())
    rows = []
    for fraction in E_STARTS:
        e0 = max(fraction * float(loss.min()), floor)
        log_a = np.log(np.maximum(loss[:, 0] - e0, floor))
        for alpha in ALPHA_STARTS:
            log_e = [math.log(e0)] * (1 if shared_e else y.shape[0])
            rows.append([*log_e, *log_a, *[alpha] * y.shape[0]])
    return np.array(rows)


def fit_laws(
    flops: np.ndarray, log_loss: np.ndarray, *, shared_e: bool, start: Laws | None = None
) -> Laws:
    """The laws of every problem of `log_loss` (K, V, B) at budgets `flops` (B,): from a grid
    of starts for one problem (K = 1, `start` None), or from `start`'s single row for each
    (bootstrap resamples of the problem `start` was fitted to)."""
    c0 = float(np.min(flops))
    x = np.log(np.asarray(flops, float) / c0)
    fun = _objective(log_loss, x, shared_e)
    n_var = log_loss.shape[1]
    if start is None:
        x0 = _starts(log_loss[0], shared_e)
        fun = _objective(np.repeat(log_loss, len(x0), axis=0), x, shared_e)
        result = minimize_batch(fun, x0)
        best = int(np.nanargmin(np.where(np.isfinite(result.fun), result.fun, np.inf)))
        theta, sse = result.x[best : best + 1], result.fun[best : best + 1]
    else:
        first = np.concatenate(
            [
                start.log_e[:1, :1] if shared_e else start.log_e[:1],
                start.log_a[:1],
                start.alpha[:1],
            ],
            axis=1,
        )
        result = minimize_batch(fun, np.repeat(first, len(log_loss), axis=0))
        theta, sse = result.x, result.fun
    log_e, log_a, alpha = _unpack(theta, n_var, shared_e)
    return Laws(log_e, log_a, alpha, c0, sse)


def crossover(
    laws: Laws, baseline: int, variant: int, low: float, high: float, n_grid: int = 2001
) -> np.ndarray:
    """(K,) the smallest C in [low, high] where M_variant(C) crosses 1 for each problem (NaN
    where it does not cross there): sign changes of ln M on a log grid, refined linearly."""
    grid = np.geomspace(low, high, n_grid)
    log_m = laws.log_multiplier(grid, baseline)[:, variant, :]
    log_m = np.clip(log_m, -1e6, 1e6)
    sign = np.sign(log_m)
    change = (sign[:, :-1] * sign[:, 1:] <= 0) & (sign[:, :-1] != 0)
    out = np.full(len(log_m), np.nan)
    for row in np.flatnonzero(change.any(axis=1)):
        i = int(np.argmax(change[row]))
        a, b = log_m[row, i], log_m[row, i + 1]
        share = a / (a - b) if a != b else 0.0
        out[row] = float(np.exp(np.log(grid[i]) + share * np.log(grid[i + 1] / grid[i])))
    return out
