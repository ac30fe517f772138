"""Chinchilla Approaches 1 and 2: compute-optimal N and D from isoFLOP profiles.

Approach 2 (Hoffmann et al. 2022, Section 3.2): for each FLOP budget, fit the final loss against
log N with a parabola and take its vertex as N_opt(C); then fit N_opt ∝ C^a and D_opt ∝ C^b in
log-log space (statsmodels OLS, standard errors and confidence intervals).

The parabola is fitted to the `window` sizes nearest the sampled minimum (default 5). Why: an
isoFLOP profile is a parabola in log N only near its minimum; over the 3 orders of magnitude of
Porian et al. 2024's grids it is skewed, and a parabola through every size drags the vertex
toward the long side (on their RefinedWeb runs, a = 0.78 instead of 0.71). `method="akima"` is
Porian et al.'s estimator instead: Akima interpolation of log L over log N, minimised on a fine
grid. Several runs at one size (seeds, LR sweeps) count as their best (minimum) loss, as in
Porian et al.

A budget is excluded from the exponent fit, and reported with the reason, when its minimum is
not bracketed by the sampled sizes, its curvature is not positive, or it has fewer than 3 sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.regression import LogLogFit, loglog_ols
from scalesweep.fit.runs import finite_or_none, group_budgets, prepare

IsoflopMethod = Literal["quadratic", "akima"]


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

    def to_dict(self) -> dict[str, Any]:
        keys = ("flops", "n_opt", "d_opt", "loss_opt", "n_points", "excluded", "reason")
        return {k: finite_or_none(getattr(self, k)) for k in keys}


@dataclass(frozen=True)
class IsoflopFit:
    """N_opt ∝ C^a and D_opt ∝ C^b from isoFLOP profiles (Chinchilla Approach 2)."""

    a: float
    """N_opt exponent."""
    b: float
    """D_opt exponent."""
    a_ci: tuple[float | None, float | None]
    """Interval for a: OLS conf_int, or the bootstrap percentile interval when bootstrapped."""
    b_ci: tuple[float | None, float | None]
    """Interval for b, likewise."""
    n_law: LogLogFit
    """The fit of N_opt against C."""
    d_law: LogLogFit
    """The fit of D_opt against C."""
    budgets: tuple[BudgetFit, ...]
    """Every budget, fitted or excluded."""
    method: str
    """"quadratic" or "akima"."""
    window: int | None
    """Sizes per parabola (None: all)."""
    level: float
    """Confidence level."""
    n_bootstrap: int = 0
    """Resamples of runs (within each budget) behind a_ci and b_ci; 0: OLS intervals."""
    n_runs_excluded: int = 0
    """Diverged or failed runs set aside before fitting."""
    notes: tuple[str, ...] = ()
    """What was derived or set aside."""
    bootstrap_ab: np.ndarray | None = field(default=None, repr=False, compare=False)
    """(n_bootstrap, 2) resampled (a, b); not serialised."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": finite_or_none(self.a),
            "b": finite_or_none(self.b),
            "a_ci": [finite_or_none(x) for x in self.a_ci],
            "b_ci": [finite_or_none(x) for x in self.b_ci],
            "n_law": self.n_law.to_dict(),
            "d_law": self.d_law.to_dict(),
            "budgets": [b.to_dict() for b in self.budgets],
            "method": self.method,
            "window": self.window,
            "level": self.level,
            "n_bootstrap": self.n_bootstrap,
            "n_runs_excluded": self.n_runs_excluded,
            "notes": list(self.notes),
        }

    def predict(self, flops: float) -> dict[str, Any]:
        """N_opt and D_opt for a budget from the fitted power laws, with the OLS confidence
        band of each line at `flops` as `ci` (null with only 2 budgets, which fit exactly)."""
        ci: dict[str, list[float | None]] = {}
        for key, law in (("n_opt", self.n_law), ("d_opt", self.d_law)):
            band = law.band(np.array([flops], float))
            low, high = (None, None) if band is None else (band[0][0], band[1][0])
            ci[key] = [finite_or_none(low), finite_or_none(high)]
        return {
            "flops": float(flops),
            "n_opt": float(self.n_law.predict(flops)),
            "d_opt": float(self.d_law.predict(flops)),
            "ci": ci,
        }


def _best_per_size(group: pd.DataFrame) -> pd.DataFrame:
    """The lowest-loss run at each size, sorted by size."""
    best = group.loc[group.groupby("params")["loss"].idxmin()]
    return best.sort_values("params")


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
    method: IsoflopMethod = "quadratic",
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
    none: dict[str, Any] = {"n_opt": None, "d_opt": None, "loss_opt": None, "excluded": True}
    if len(best) < 3:
        return BudgetFit(**common, **none, reason=f"fewer than 3 sizes ({len(best)})")
    x = np.log(sizes)
    lowest = int(np.argmin(losses))
    if lowest in (0, len(x) - 1):
        side = "smallest" if lowest == 0 else "largest"
        return BudgetFit(**common, **none, reason=f"minimum at the {side} sampled size")
    if method == "akima":
        from scipy.interpolate import Akima1DInterpolator

        fine = np.linspace(x[0], x[-1], (len(x) - 1) * 25)
        log_loss = Akima1DInterpolator(x, np.log(losses))(fine)
        j = int(np.argmin(log_loss))
        if j in (0, len(fine) - 1):
            return BudgetFit(**common, **none, reason="interpolated minimum at the edge")
        n_opt = float(np.exp(fine[j]))
        return BudgetFit(
            **common,
            n_opt=n_opt,
            d_opt=_d_at(best, flops, n_opt),
            loss_opt=float(np.exp(log_loss[j])),
            excluded=False,
            reason=None,
        )
    if window is not None:
        lo = min(max(0, lowest - window // 2), max(0, len(x) - window))
        sl = slice(lo, lo + window)
    else:
        sl = slice(None)
    coef = _parabola(x[sl], losses[sl], robust=robust)
    common["coef"] = coef
    common["fit_range"] = (float(sizes[sl][0]), float(sizes[sl][-1]))
    if not coef[0] > 0:
        return BudgetFit(**common, **none, reason=f"curvature not positive ({coef[0]:.3g})")
    vertex = -coef[1] / (2 * coef[0])
    if not x[0] < vertex < x[-1]:
        return BudgetFit(**common, **none, reason="parabola minimum outside the sampled sizes")
    n_opt = float(np.exp(vertex))
    return BudgetFit(
        **common,
        n_opt=n_opt,
        d_opt=_d_at(best, flops, n_opt),
        loss_opt=float(np.polyval(coef, vertex)),
        excluded=False,
        reason=None,
    )


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


def _fit_profiles(
    frame: pd.DataFrame, *, method: IsoflopMethod, window: int | None, robust: bool
) -> list[BudgetFit]:
    labels = group_budgets(frame["flops"].to_numpy(float))
    return [
        fit_budget(group, float(budget), method=method, window=window, robust=robust)
        for budget, group in frame.groupby(labels, sort=True)
    ]


def fit_isoflop(
    runs: pd.DataFrame,
    *,
    method: IsoflopMethod = "quadratic",
    window: int | None = 5,
    robust: bool = False,
    level: float = 0.95,
    n_bootstrap: int = 0,
    rng: np.random.Generator | None = None,
) -> IsoflopFit:
    """Approach 2 on a runs table with columns flops, params, loss (tokens optional).

    With `n_bootstrap`, runs are resampled with replacement within each budget, the profiles
    refitted, and a_ci / b_ci are percentile intervals of the refitted exponents.

    Example:
        >>> import numpy as np, pandas as pd
        >>> rows = [(c, n, 1.7 + 400 / n**0.34 + 2000 / (c / 6 / n) ** 0.37)
        ...         for c in (1e18, 1e19, 1e20) for n in np.geomspace(1e7, 3e9, 9)]
        >>> fit = fit_isoflop(pd.DataFrame(rows, columns=["flops", "params", "loss"]))
        >>> round(fit.a, 2)
        0.52
    """
    if method not in ("quadratic", "akima"):
        raise UserError(f"`method in ('quadratic', 'akima')` must hold, but got ({method=})")
    if window is not None and window < 3:
        raise UserError(f"`window >= 3` must hold (a parabola needs 3 points), but got ({window=})")
    prepared = prepare(
        runs,
        kind="isoflop",
        numeric=("flops", "params", "loss"),
        positive=("flops", "params", "loss"),
        min_rows=3,
    )
    frame = prepared.frame
    if "tokens" in frame.columns:
        frame = frame.assign(tokens=pd.to_numeric(frame["tokens"], errors="coerce"))
    budgets = _fit_profiles(frame, method=method, window=window, robust=robust)
    n_law, d_law = _exponent_fits(budgets, level=level)
    a_ci, b_ci = n_law.ci, d_law.ci
    samples = None
    if n_bootstrap:
        generator = rng or np.random.default_rng(0)
        labels = group_budgets(frame["flops"].to_numpy(float))
        groups = [np.flatnonzero(labels == v) for v in np.unique(labels)]
        draws = []
        for _ in range(n_bootstrap):
            take = np.concatenate([generator.choice(g, g.size) for g in groups])
            sample = frame.iloc[take].reset_index(drop=True)
            resampled = _fit_profiles(sample, method=method, window=window, robust=robust)
            try:
                n_b, d_b = _exponent_fits(resampled, level=level)
            except UserError:
                continue  # too few usable budgets in this resample
            draws.append((n_b.exponent, d_b.exponent))
        samples = np.array(draws).reshape(-1, 2)
        if len(samples):
            tail = 50 * (1 - level)
            a_lo, a_hi = np.percentile(samples[:, 0], [tail, 100 - tail])
            b_lo, b_hi = np.percentile(samples[:, 1], [tail, 100 - tail])
            a_ci, b_ci = (float(a_lo), float(a_hi)), (float(b_lo), float(b_hi))
    return IsoflopFit(
        a=n_law.exponent,
        b=d_law.exponent,
        a_ci=a_ci,
        b_ci=b_ci,
        n_law=n_law,
        d_law=d_law,
        budgets=tuple(budgets),
        method=method,
        window=None if method == "akima" else window,
        level=level,
        n_bootstrap=n_bootstrap,
        n_runs_excluded=len(prepared.excluded),
        notes=prepared.notes,
        bootstrap_ab=samples,
    )


def _exponent_fits(budgets: list[BudgetFit], *, level: float) -> tuple[LogLogFit, LogLogFit]:
    kept = [b for b in budgets if not b.excluded]
    if len(kept) < 2:
        reasons = "; ".join(f"C={b.flops:.3g}: {b.reason}" for b in budgets if b.excluded)
        raise UserError(
            f"isoflop fit needs at least 2 budgets with an interior minimum, but got "
            f"{len(kept)} of {len(budgets)} ({reasons})"
        )
    flops = np.array([b.flops for b in kept])
    n_opt = np.array([b.n_opt for b in kept], dtype=float)
    d_opt = np.array([b.d_opt for b in kept], dtype=float)
    return loglog_ols(flops, n_opt, level=level), loglog_ols(flops, d_opt, level=level)


@dataclass(frozen=True)
class EnvelopeFit:
    """Chinchilla Approach 1: N_opt(C) from the lower envelope of the training curves."""

    a: float
    """N_opt exponent."""
    a_ci: tuple[float | None, float | None]
    """OLS confidence interval of a."""
    n_law: LogLogFit
    """The fit of the envelope's N against C."""
    points: pd.DataFrame = field(repr=False, compare=False)
    """flops, n_opt (the size on the envelope), loss, per FLOP grid point."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": finite_or_none(self.a),
            "a_ci": [finite_or_none(x) for x in self.a_ci],
            "n_points": self.n_law.n_points,
            "points": [
                {k: finite_or_none(v) for k, v in row.items()}
                for row in self.points.to_dict(orient="records")
            ],
        }


def fit_envelope(curves: pd.DataFrame, *, n_grid: int = 40, level: float = 0.95) -> EnvelopeFit:
    """Approach 1 (Hoffmann et al. 2022, Section 3.1): on a log-spaced FLOP grid, each run's
    loss is interpolated (log-log) where its curve covers the grid point; the run with the
    lowest loss there is on the envelope. Fits N_opt ∝ C^a over grid points that at least two
    sizes cover. `curves`: one row per logged step with run_id, params, flops, loss."""
    for column in ("run_id", "params", "flops", "loss"):
        if column not in curves.columns:
            raise UserError(f"isoflop Approach 1 needs per-step curves with column `{column}`")
    clean = curves[(curves["flops"] > 0) & (curves["loss"] > 0) & np.isfinite(curves["loss"])]
    if clean["params"].nunique() < 2:
        raise UserError("isoflop Approach 1 needs training curves of at least 2 sizes")
    grid = np.geomspace(clean["flops"].min(), clean["flops"].max(), n_grid)
    table = np.full((clean["run_id"].nunique(), n_grid), np.nan)
    sizes = []
    for i, (_, run) in enumerate(clean.sort_values("flops").groupby("run_id")):
        lf, ll = np.log(run["flops"].to_numpy()), np.log(run["loss"].to_numpy())
        inside = (grid >= run["flops"].min()) & (grid <= run["flops"].max())
        table[i, inside] = np.exp(np.interp(np.log(grid[inside]), lf, ll))
        sizes.append(float(run["params"].iloc[0]))
    size_arr = np.array(sizes)
    rows = []
    for j, c in enumerate(grid):
        col = table[:, j]
        covered = np.isfinite(col)
        if np.unique(size_arr[covered]).size < 2:
            continue
        best = int(np.nanargmin(col))
        rows.append({"flops": float(c), "n_opt": size_arr[best], "loss": float(col[best])})
    points = pd.DataFrame(rows, columns=["flops", "n_opt", "loss"])
    if points["n_opt"].nunique() < 2:
        raise UserError("isoflop Approach 1: the envelope never changes size; no exponent to fit")
    law = loglog_ols(points["flops"].to_numpy(), points["n_opt"].to_numpy(), level=level)
    return EnvelopeFit(law.exponent, law.ci, law, points)
