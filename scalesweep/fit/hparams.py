"""Hyperparameter scaling laws in the Step Law form (Li et al. 2025, "Predictable Scale: Part
I — Optimal Hyperparameter Scaling Law in Large Language Model Pretraining", eqs. 1–2):

    η_opt = c·N^α·D^β        B_opt = c·D^γ

From LR × batch-size grids at several (N, D): in each (N, D) cell the run with the lowest loss
gives (η_opt, B_opt), then both laws are fitted as linear regressions in log space with
statsmodels OLS (standard errors and confidence intervals). B_opt is in the units of the `bs`
column (the Step Law CSV counts sequences of 2048 tokens; their published law is in tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.runs import finite_or_none, prepare


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
    """Cells fitted."""

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


@dataclass(frozen=True)
class HparamsFit:
    """η_opt(N, D) and B_opt(D)."""

    lr_law: LogLinearLaw
    """η_opt = c·N^α·D^β (exponents keyed `params`, `tokens`)."""
    bs_law: LogLinearLaw
    """B_opt = c·D^γ (exponent keyed `tokens`)."""
    cells: pd.DataFrame = field(repr=False, compare=False)
    """params, tokens, lr, bs, loss of the best run per cell, n_runs per cell."""
    n_runs_excluded: int = 0
    """Diverged or failed runs set aside."""
    notes: tuple[str, ...] = ()
    """What was derived or set aside."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr_law": self.lr_law.to_dict(),
            "bs_law": self.bs_law.to_dict(),
            "n_cells": len(self.cells),
            "n_runs_excluded": self.n_runs_excluded,
            "notes": list(self.notes),
        }


def loglinear_ols(
    frame: pd.DataFrame, y: str, xs: tuple[str, ...], *, level: float = 0.95
) -> LogLinearLaw:
    """OLS of ln y on ln x for each x in `xs`, with statsmodels."""
    import statsmodels.api as sm

    design = sm.add_constant(np.log(frame[list(xs)].to_numpy(float)), has_constant="add")
    response = np.log(frame[y].to_numpy(float))
    if len(response) <= len(xs) + 1:
        raise UserError(
            f"hparams fit of `{y}` on {list(xs)} needs at least {len(xs) + 2} (N, D) cells, "
            f"but got {len(response)}"
        )
    result = sm.OLS(response, design).fit()
    bounds = result.conf_int(alpha=1 - level)
    return LogLinearLaw(
        coef=float(math.exp(result.params[0])),
        exponents={x: float(result.params[i + 1]) for i, x in enumerate(xs)},
        se={x: float(result.bse[i + 1]) for i, x in enumerate(xs)},
        ci={x: (float(bounds[i + 1][0]), float(bounds[i + 1][1])) for i, x in enumerate(xs)},
        r2=float(result.rsquared),
        n_points=len(response),
    )


def fit_hparams(runs: pd.DataFrame, *, level: float = 0.95) -> HparamsFit:
    """Step Law fits from columns params, tokens, lr, bs, loss (one row per run)."""
    prepared = prepare(
        runs,
        kind="hparams",
        numeric=("params", "tokens", "lr", "bs", "loss"),
        positive=("params", "tokens", "lr", "bs", "loss"),
        min_rows=4,
    )
    frame = prepared.frame
    best = frame.loc[frame.groupby(["params", "tokens"])["loss"].idxmin()]
    counts = frame.groupby(["params", "tokens"]).size()
    cells = best[["params", "tokens", "lr", "bs", "loss"]].reset_index(drop=True)
    cells["n_runs"] = counts.to_numpy()
    if cells["params"].nunique() < 2 or cells["tokens"].nunique() < 2:
        raise UserError(
            "hparams fit needs (N, D) cells with at least 2 distinct `params` and 2 distinct "
            f"`tokens`, but got {cells['params'].nunique()} and {cells['tokens'].nunique()}"
        )
    return HparamsFit(
        lr_law=loglinear_ols(cells, "lr", ("params", "tokens"), level=level),
        bs_law=loglinear_ols(cells, "bs", ("tokens",), level=level),
        cells=cells,
        n_runs_excluded=len(prepared.excluded),
        notes=prepared.notes,
    )
