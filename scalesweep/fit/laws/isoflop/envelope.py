"""Chinchilla Approach 1: compute-optimal N from the lower envelope of training curves.

Hoffmann et al. 2022, Section 3.1: on a log-spaced FLOP grid, each run's loss is interpolated
(log-log) where its curve covers the grid point; the run with the lowest loss there is on the
envelope, and N_opt ∝ C^a is fitted (statsmodels OLS in log-log), one point per size on the
envelope (the grid points one size holds are not independent), at least 3 sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.numerics.regression import LogLogFit, loglog_ols
from scalesweep.fit.runs import SAME_SIZE, finite_or_none, group_budgets

MIN_SIZES = 3
"""Sizes the envelope must pass through: a line through 2 switch points has no interval."""


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


def envelope_curves(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """The curves `fit_envelope` reads (run_id, params, flops, loss) from per-step curves
    (run_id, step, `val/loss`, `train/flops` and, from MLflow, each run's status): the
    completed runs only (a diverged run's curve is no envelope), N from the runs table with
    sizes within 1 % as one (`runs.SAME_SIZE`)."""
    if m.STATUS in curves.columns:
        curves = curves[curves[m.STATUS] == m.COMPLETED]
    sizes = runs.set_index("run_id")[m.PARAMS].astype(float)
    merged = pd.Series(group_budgets(sizes.to_numpy(), SAME_SIZE), index=sizes.index)
    return curves.rename(columns={m.VAL_LOSS: "loss", m.FLOPS: "flops"}).assign(
        params=lambda frame: frame["run_id"].map(merged)
    )


def fit_envelope(curves: pd.DataFrame, *, n_grid: int = 40, level: float = 0.95) -> EnvelopeFit:
    """Approach 1 (Hoffmann et al. 2022, Section 3.1): on a log-spaced FLOP grid, each run's
    loss is interpolated (log-log) where its curve covers the grid point; the run with the
    lowest loss there is on the envelope. Fits N_opt ∝ C^a over the sizes on the envelope, each
    at the geometric middle of the FLOPs it holds (grid points that at least two sizes cover).
    `curves`: one row per logged step with run_id, params, flops, loss."""
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
    on_envelope = points["n_opt"].unique()
    if not len(on_envelope):
        raise UserError(
            "isoflop-envelope (Approach 1): no compute is reached by the training curves of two "
            "sizes (sizes within 1 % count as one), so no size is ever the better one"
        )
    if len(on_envelope) < MIN_SIZES:
        raise UserError(
            f"isoflop-envelope (Approach 1) needs the envelope to pass through at least "
            f"{MIN_SIZES} sizes for an exponent with an interval, but it passes through "
            f"{len(on_envelope)} ({', '.join(f'{n:.3g}' for n in on_envelope)})"
        )
    # One point per size (the geometric middle of the FLOPs where it is the envelope): the grid
    # points one size holds are not independent observations of N_opt(C).
    per_size = points.groupby("n_opt")["flops"].apply(lambda f: float(np.exp(np.log(f).mean())))
    law = loglog_ols(per_size.to_numpy(), per_size.index.to_numpy(float), level=level)
    return EnvelopeFit(law.exponent, law.ci, law, points)
