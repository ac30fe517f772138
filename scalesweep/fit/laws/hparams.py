"""Hyperparameter scaling laws in the Step Law form (Li et al. 2025, "Predictable Scale: Part
I — Optimal Hyperparameter Scaling Law in Large Language Model Pretraining", eqs. 1–2):

    η_opt = c·N^α·D^β        B_opt = c·D^γ

From LR × batch-size grids at several (N, D): in each (N, D) cell the run with the lowest loss
over every LR and batch size of the cell (the joint optimum) gives (η_opt, B_opt), then both
laws are fitted as linear regressions in log space with statsmodels OLS (standard errors and
confidence intervals). B_opt is in the units of the `bs` column (the Step Law CSV counts
sequences of 2048 tokens; their published law is in tokens).

A cell is the *planned* (N, D): `planned.tokens` when the table has it (a sweep logs it),
else the trained tokens grouped within 10 % per N. Not the trained tokens themselves: a trial
trains whole steps, ceil(D / (bs·seq))·bs·seq tokens, which differ for every batch size, so
cells keyed on them hold one batch size each and B_opt would only echo the grid. N is the
column the runs' FLOP convention pairs with (`runs.choose_n`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.numerics.regression import LogLinearLaw, loglinear_ols
from scalesweep.fit.runs import Basis, best_per_cell, cell_tokens, choose_n, flop_counting, prepare


@dataclass(frozen=True)
class HparamsFit:
    """η_opt(N, D) and B_opt(D)."""

    lr_law: LogLinearLaw
    """η_opt = c·N^α·D^β (exponents keyed `params`, `tokens`)."""
    bs_law: LogLinearLaw
    """B_opt = c·D^γ (exponent keyed `tokens`)."""
    cells: pd.DataFrame = field(repr=False, compare=False)
    """params, tokens (the planned D), lr, bs, loss of the best run per cell, n_runs per cell."""
    n_runs_excluded: int = 0
    """Runs set aside (not completed, or without a finite value)."""
    notes: tuple[str, ...] = ()
    """What was derived or set aside."""
    basis: Basis | None = None
    """Which N, which C convention and which runs the fit used."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr_law": self.lr_law.to_dict(),
            "bs_law": self.bs_law.to_dict(),
            "n_cells": len(self.cells),
            "n_runs_excluded": self.n_runs_excluded,
            "notes": list(self.notes),
            "basis": self.basis.to_dict() if self.basis else None,
        }


def fit_hparams(runs: pd.DataFrame, *, level: float = 0.95, n_col: str | None = None) -> HparamsFit:
    """Step Law fits from columns params, tokens (and `planned.tokens`), lr, bs, loss."""
    chosen, n_note = choose_n(runs, n_col)
    prepared = prepare(
        chosen,
        kind="hparams",
        numeric=("params", "tokens", "lr", "bs", "loss"),
        positive=("params", "tokens", "lr", "bs", "loss"),
        min_rows=4,
    )
    if prepared.frame["lr"].nunique() < 2 and prepared.frame["bs"].nunique() < 2:
        raise UserError(
            "hparams fit needs runs that sweep `lr` or `bs`, but every run has "
            f"lr={prepared.frame['lr'].iloc[0]:g} and bs={prepared.frame['bs'].iloc[0]:g}"
        )
    planned, how = cell_tokens(prepared.frame)
    frame = prepared.frame.assign(tokens=planned)
    cells = best_per_cell(frame, ("params", "tokens"))[
        ["params", "tokens", "lr", "bs", "loss", "n_runs"]
    ]
    if cells["params"].nunique() < 2 or cells["tokens"].nunique() < 2:
        raise UserError(
            "hparams fit needs (N, D) cells with at least 2 distinct `params` and 2 distinct "
            f"`tokens`, but got {cells['params'].nunique()} and {cells['tokens'].nunique()}"
        )
    used = (
        f"the best run (joint over lr × bs) per (N, D) cell: {len(cells)} cells from "
        f"{len(frame)} completed runs ({how})"
    )
    return HparamsFit(
        lr_law=loglinear_ols(cells, "lr", ("params", "tokens"), level=level),
        bs_law=loglinear_ols(cells, "bs", ("tokens",), level=level),
        cells=cells,
        n_runs_excluded=len(prepared.excluded),
        notes=prepared.notes + _edge_notes(frame, cells),
        basis=Basis(n=n_note, flop_counting=flop_counting(chosen), runs=used),
    )


def _edge_notes(frame: pd.DataFrame, cells: pd.DataFrame) -> tuple[str, ...]:
    """Cells whose best LR or batch size is the smallest or largest the cell sampled: the
    optimum may lie outside the grid there."""
    notes = []
    for column in ("lr", "bs"):
        spans = frame.groupby(["params", "tokens"])[column].agg(["min", "max", "nunique"])
        joined = cells.join(spans, on=["params", "tokens"])
        edge = (joined["nunique"] > 1) & (
            (joined[column] == joined["min"]) | (joined[column] == joined["max"])
        )
        if edge.any():
            notes.append(
                f"hparams: in {int(edge.sum())} of {len(cells)} cells the best `{column}` is at "
                f"the edge of the sampled values; the optimum may lie outside the grid"
            )
    return tuple(notes)
