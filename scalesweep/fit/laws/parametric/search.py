"""The search for Approach 3's θ = (e, a, b, α, β) on arrays: where L-BFGS starts (Epoch's 4500
starts, or the lowest points of the variable-projection grid, `projection`), the polish of the
winner, and the bootstrap refits. Pure numpy; `approach3` wraps it for runs tables.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize

from scalesweep.fit.laws.parametric.projection import huber_weights, projected_starts
from scalesweep.fit.numerics.huber import HUBER_DELTA, huber_objective, log_loss_of
from scalesweep.fit.numerics.lbfgs import Prune, minimize_batch

# Parameter order everywhere in this module: θ = (e, a, b, α, β).
NAMES = ("e", "a", "b", "alpha", "beta")
ALPHA_GRID = np.arange(0.0, 2.5, 0.5)
E_GRID = np.arange(-1.0, 1.5, 0.5)
LOG_AB_GRID = np.arange(0.0, 30.0, 5.0)
# The summed Huber objective is ~1e-3, so L-BFGS's default relative reduction test (relative
# to max(|f|, 1)) is effectively absolute and stops a refit from a nearby start after a few
# tiny steps: bootstrap intervals on A and B then come out ~100x too narrow. Refits and the
# final polish use these tolerances; with them the bootstrap spread of E, A, B, α, β matches
# the standard errors Besiroglu et al. report (0.03, 125, 1293, 0.02, 0.02).
TIGHT_FTOL, TIGHT_GTOL = 1e-13, 1e-9
DEFAULT_FTOL, DEFAULT_GTOL = 2.220446049250313e-09, 1e-5
"""scipy's L-BFGS-B defaults, as `minimize_batch` has them: enough for Epoch's grid, whose
starts all converge to the same few optima."""
POLISH_OPTIONS = {"ftol": TIGHT_FTOL, "gtol": TIGHT_GTOL, "maxiter": 15000}
GRID_PRUNE = Prune()
"""How the grid search stops its stragglers (see `fit_arrays`)."""
Method = Literal["projection", "grid"]


def start_grid() -> np.ndarray:
    """The 4500 starts of Besiroglu et al. 2024 as rows (e, a, b, α, β)."""
    combos = itertools.product(E_GRID, LOG_AB_GRID, LOG_AB_GRID, ALPHA_GRID, ALPHA_GRID)
    return np.array(list(combos), dtype=float)


def _scipy_polish(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray
) -> tuple[np.ndarray, float]:
    """One scipy L-BFGS-B call from `theta`, with the analytic gradient."""

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = huber_objective(x[None, :], log_n, log_d, log_loss)
        return float(f[0]), g[0]

    # Tight tolerances: the winner is polished to a true optimum, not to where the default
    # absolute tolerance (the objective is ~1e-3) happens to stop.
    result = minimize(fun, theta, jac=True, method="L-BFGS-B", options=POLISH_OPTIONS)
    return np.asarray(result.x, dtype=float), float(result.fun)


def fit_arrays(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    *,
    method: Method = "projection",
    starts: np.ndarray | None = None,
    polish: bool = True,
    prune: Prune | None = GRID_PRUNE,
) -> tuple[np.ndarray, float, int, int]:
    """The best θ from `starts` (default: by `method`, see the module docstring), its
    objective, the starts and how many of them converged. Pure numpy; `fit_parametric` wraps it
    for DataFrames.

    Stragglers far above the best objective are stopped once 99 % of the starts have stopped
    (`prune`, see `numerics.lbfgs`): the answer is the same to 4 significant digits on
    Epoch's data, with and without the 5 highest losses, and the grid takes a third of the
    objective calls (benchmarks/fit_speed.py)."""
    log_n, log_d, log_loss = np.log(n), np.log(d), np.log(loss)

    def batch(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return huber_objective(x, log_n, log_d, log_loss)

    def best_of(rows: np.ndarray, prune: Prune | None, *, tight: bool) -> tuple[Any, float, int]:
        ftol, gtol = (TIGHT_FTOL, TIGHT_GTOL) if tight else (DEFAULT_FTOL, DEFAULT_GTOL)
        result = minimize_batch(batch, rows, prune=prune, ftol=ftol, gtol=gtol)
        values = np.where(np.isfinite(result.fun), result.fun, np.inf)
        best = int(np.argmin(values))
        return result.x[best], float(values[best]), int(result.converged.sum())

    if starts is None and method == "projection":
        first = projected_starts(n, d, loss)
        # tight tolerances: these few starts lie along the valley floor, where progress is slow
        theta, objective, converged = best_of(first, None, tight=True)
        weights = huber_weights(log_loss - log_loss_of(theta, log_n, log_d), HUBER_DELTA)
        second = projected_starts(n, d, loss, weights=weights)
        again, value, more = best_of(second, None, tight=True)
        if value < objective:
            theta, objective = again, value
        n_starts, converged = len(first) + len(second), converged + more
    else:
        grid = start_grid() if starts is None else np.atleast_2d(starts)
        theta, objective, converged = best_of(grid, prune, tight=False)
        n_starts = len(grid)
    if polish:
        polished, value = _scipy_polish(theta, log_n, log_d, log_loss)
        if value <= objective:
            theta, objective = polished, value
    return theta, objective, n_starts, converged


def bootstrap_arrays(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    theta: np.ndarray,
    *,
    n_resamples: int,
    rng: np.random.Generator,
    chunk: int = 250,
) -> np.ndarray:
    """Refit θ on `n_resamples` resamples of the points (drawn with replacement), each started
    from the full-grid best `theta` rather than the whole grid (4500× cheaper; the resampled
    optimum lies near the original one). Resamples run as one batch: a resample is a row of
    multiplicities weighting the summed Huber loss. Refits use tight tolerances (see
    `TIGHT_FTOL`)."""
    log_n, log_d, log_loss = np.log(n), np.log(d), np.log(loss)
    size = len(n)
    out = np.empty((n_resamples, 5))
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        counts = np.stack(
            [np.bincount(rng.integers(0, size, size), minlength=size) for _ in range(k)]
        )
        weights = counts.astype(float)

        def batch(
            x: np.ndarray, rows: np.ndarray, w: np.ndarray = weights
        ) -> tuple[np.ndarray, np.ndarray]:
            return huber_objective(x, log_n, log_d, log_loss, w[rows])

        fitted = minimize_batch(batch, np.tile(theta, (k, 1)), ftol=TIGHT_FTOL, gtol=TIGHT_GTOL)
        out[start : start + k] = fitted.x
    return out
