"""Hyperparameter scaling laws in the Step Law form (Li et al. 2025, "Predictable Scale: Part
I — Optimal Hyperparameter Scaling Law in Large Language Model Pretraining", eqs. 1–2):

    η_opt = c·N^α·D^β        B_opt = c·D^γ

From LR × batch-size grids at several (N, D): in each (N, D) cell the run with the lowest loss
gives (η_opt, B_opt), then both laws are fitted as linear regressions in log space with
statsmodels OLS (standard errors and confidence intervals). B_opt is in the units of the `bs`
column (the Step Law CSV counts sequences of 2048 tokens; their published law is in tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.regression import LogLinearLaw, loglinear_ols
from scalesweep.fit.runs import prepare


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
