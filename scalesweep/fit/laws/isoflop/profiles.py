"""One isoFLOP profile and its minimum: the per-budget step of Chinchilla Approach 2.

`fit_budget` takes the runs of one budget, keeps the best run per size, and finds the loss-
minimising size by Akima interpolation (Porian et al. 2024's estimator, the default) or by a
local parabola (`quadratic`); see `approach2` for why. A budget without an
interior minimum is returned with the reason, never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from scalesweep.fit.runs import finite_or_none

IsoflopMethod = Literal["quadratic", "akima"]
OFF_CENTRE = 1 / 3
"""|centre_offset| beyond which a budget's sizes are too far off its optimum to trust its vertex
(Czech et al. 2026: a third of the span)."""


@dataclass(frozen=True)
class BudgetFit:
    """One isoFLOP profile and its minimum."""

    flops: float
    """The budget C (geometric mean of the runs' FLOPs in this budget)."""
    n_opt: float | None
    """Loss-minimising parameter count (None when no minimum was found)."""
    d_opt: float | None
    """Tokens at n_opt: the runs' tokens interpolated in log-log, else C / (6·n_opt)."""
    loss_opt: float | None
    """Loss at the minimum (the parabola's, or the interpolant's, value)."""
    n_points: int
    """Distinct sizes in this budget."""
    excluded: bool
    """True when the budget is left out of the exponent fit."""
    reason: str | None
    """Why it was excluded."""
    coef: tuple[float, ...] | None = None
    """Parabola (c2, c1, c0) of loss in ln N (quadratic method), for plots."""
    fit_range: tuple[float, float] | None = None
    """Smallest and largest size the parabola was fitted to (the window), for plots."""
    sizes: tuple[float, ...] = ()
    """The sampled sizes (best run per size)."""
    losses: tuple[float, ...] = ()
    """Their losses."""

    @property
    def centre_offset(self) -> float | None:
        """Where the minimum sits in the sampled sizes, in log N: 0 at the centre, ±0.5 at the
        smallest or largest size. Czech et al. 2026: Approach 2's vertex is biased when the
        sizes are not centred on the optimum (beyond a third of the span: `OFF_CENTRE`)."""
        if self.n_opt is None or len(self.sizes) < 2:
            return None
        low, high = math.log(min(self.sizes)), math.log(max(self.sizes))
        return (math.log(self.n_opt) - (low + high) / 2) / (high - low)

    def to_dict(self) -> dict[str, Any]:
        keys = ("flops", "n_opt", "d_opt", "loss_opt", "n_points", "excluded", "reason")
        return {k: finite_or_none(getattr(self, k)) for k in (*keys, "centre_offset")}


def _d_at(best: pd.DataFrame, flops: float, n_opt: float) -> float:
    if "tokens" in best.columns and best["tokens"].notna().all():
        return float(
            np.exp(np.interp(np.log(n_opt), np.log(best["params"]), np.log(best["tokens"])))
        )
    return flops / (6.0 * n_opt)


def fit_budget(
    group: pd.DataFrame,
    flops: float,
    *,
    method: IsoflopMethod = "akima",
    window: int | None = 5,
    robust: bool = False,
) -> BudgetFit:
    """The minimum of one isoFLOP profile (columns params, loss, optional tokens)."""
    best = _best_per_size(group)
    sizes, losses = best["params"].to_numpy(float), best["loss"].to_numpy(float)
    common: dict[str, Any] = {
        "flops": flops,
        "n_points": len(best),
        "sizes": tuple(sizes),
        "losses": tuple(losses),
    }
    if len(best) < 3:
        return _excluded(common, f"fewer than 3 sizes ({len(best)})")
    lowest = int(np.argmin(losses))
    if lowest in (0, len(sizes) - 1):
        side = "smallest" if lowest == 0 else "largest"
        return _excluded(common, f"minimum at the {side} sampled size")
    if method == "akima":
        found = _akima_minimum(np.log(sizes), losses)
    else:
        found = _parabola_minimum(np.log(sizes), losses, lowest, window, robust, common)
    if isinstance(found, str):
        return _excluded(common, found)
    n_opt = float(np.exp(found[0]))
    return BudgetFit(
        **common,
        n_opt=n_opt,
        d_opt=_d_at(best, flops, n_opt),
        loss_opt=found[1],
        excluded=False,
        reason=None,
    )


def _best_per_size(group: pd.DataFrame) -> pd.DataFrame:
    """The lowest-loss run of each size, by size (`runs.best_per_cell`'s rule, in numpy: a
    backtest refits every profile many times)."""
    params, loss = group["params"].to_numpy(float), group["loss"].to_numpy(float)
    order = np.lexsort((loss, params))
    first = np.r_[True, params[order][1:] != params[order][:-1]]
    return group.iloc[order[first]]


def _excluded(common: dict[str, Any], reason: str) -> BudgetFit:
    return BudgetFit(**common, n_opt=None, d_opt=None, loss_opt=None, excluded=True, reason=reason)


def akima_profile(x: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ln N, ln L) of the Akima interpolant of ln L over ln N (`x`), on Porian et al.'s grid of
    25 points per interval between the sampled sizes."""
    from scipy.interpolate import Akima1DInterpolator

    fine = np.linspace(x[0], x[-1], (len(x) - 1) * 25)
    return fine, Akima1DInterpolator(x, np.log(losses))(fine)


def _akima_minimum(x: np.ndarray, losses: np.ndarray) -> tuple[float, float] | str:
    """(ln N_opt, L_opt) of the Akima interpolant, or why there is none. An interpolant that
    dips below the lowest sampled loss by more than the profile's whole range is not trusted
    (two sizes almost equal with different losses give it a huge slope)."""
    fine, log_loss = akima_profile(x, losses)
    j = int(np.argmin(log_loss))
    if j in (0, len(fine) - 1):
        return "interpolated minimum at the edge"
    low, spread = np.log(losses.min()), np.log(losses.max() / losses.min())
    if not log_loss[j] >= low - spread:
        return "Akima interpolant overshoots (sizes too close together); try the quadratic method"
    return float(fine[j]), float(np.exp(log_loss[j]))


def _parabola_minimum(
    x: np.ndarray,
    losses: np.ndarray,
    lowest: int,
    window: int | None,
    robust: bool,
    common: dict[str, Any],
) -> tuple[float, float] | str:
    """(ln N_opt, L_opt) of the parabola through the `window` sizes nearest the sampled
    minimum, or why there is none; records the parabola in `common` for plots."""
    if window is not None:
        lo = min(max(0, lowest - window // 2), max(0, len(x) - window))
        sl = slice(lo, lo + window)
    else:
        sl = slice(None)
    coef = _parabola(x[sl], losses[sl], robust=robust)
    common["coef"] = coef
    common["fit_range"] = (float(np.exp(x[sl][0])), float(np.exp(x[sl][-1])))
    if not coef[0] > 0:
        return f"curvature not positive ({coef[0]:.3g})"
    vertex = -coef[1] / (2 * coef[0])
    if not x[0] < vertex < x[-1]:
        return "parabola minimum outside the sampled sizes"
    return float(vertex), float(np.polyval(coef, vertex))


def _parabola(x: np.ndarray, y: np.ndarray, *, robust: bool) -> tuple[float, float, float]:
    """(c2, c1, c0) of y ≈ c2 x² + c1 x + c0; Huber-weighted (statsmodels RLM) if robust."""
    m = float(x.mean())
    u = x - m  # centred: ln N ~ 20 makes the raw design ill-conditioned
    if robust and len(x) > 3:
        import statsmodels.api as sm

        design = np.column_stack([u * u, u, np.ones_like(u)])
        q2, q1, q0 = sm.RLM(y, design, M=sm.robust.norms.HuberT()).fit().params
    else:
        q2, q1, q0 = np.polyfit(u, y, 2)
    return float(q2), float(q1 - 2 * q2 * m), float(q2 * m * m - q1 * m + q0)
