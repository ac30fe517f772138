"""Backtests: a law refitted without its largest budgets, predicting what they measured.

Every law that forecasts the compute-optimal run (`FitKind.predict`) is judged the same way: the
runs are cut at a budget, the kind is fitted again on the runs below it, and its prediction at a
held-out larger budget is set against that budget's own optimum: the minimum of its isoFLOP
profile (`laws.isoflop.profiles`, the estimator `--isoflop-method` names), its loss, N and D.
`rolling` does this from several cut points, one and two budgets ahead of each of the largest
budgets (Tashman 2000's rolling origin); the two that hold out the largest budget are what the
user sees beside the forecast, and all of them calibrate its interval (`calibrate`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.base import FitData, FitKind
from scalesweep.fit.options import FitOptions
from scalesweep.fit.runs import PLANNED_FLOPS, finite_or_none, group_budgets, planned

QUANTITIES = ("loss_opt", "n_opt", "d_opt")
HORIZONS = (1, 2)
"""Budgets skipped between the last one fitted and the one predicted."""
TARGETS = 4
"""How many of the largest budgets are predicted (each from HORIZONS cut points)."""
REFIT_BOOTSTRAP = 100
"""Bootstrap resamples of a refit (its interval's width is all a backtest reads of it)."""


@dataclass(frozen=True)
class Optimum:
    """A budget's own optimum: the minimum of its isoFLOP profile."""

    flops: float
    loss_opt: float
    n_opt: float
    d_opt: float

    def get(self, quantity: str) -> float:
        return float(getattr(self, quantity))


@dataclass(frozen=True)
class Forecast:
    """One backtest: the law fitted up to `fitted_to`, predicting budget `truth.flops`."""

    fitted_to: float
    """The largest budget in the refit."""
    ahead: int
    """Budgets between `fitted_to` and the target (1: the next budget)."""
    truth: Optimum
    """The target budget's own optimum."""
    predicted: Mapping[str, Any]
    """The refitted kind's `predict` at the target: point values, `ci` and `pi`."""

    def error(self, quantity: str) -> float | None:
        """Relative error of the point prediction (+0.01: 1 % above the truth)."""
        value = self.predicted.get(quantity)
        return None if value is None else float(value) / self.truth.get(quantity) - 1

    def miss_rate(self, quantity: str) -> float | None:
        """|ln(truth/predicted)| per e-fold of compute extrapolated, ln(target/fitted_to)."""
        point = self.predicted.get(quantity)
        if point is None or point <= 0:
            return None
        miss = abs(math.log(self.truth.get(quantity) / point))
        return miss / math.log(self.truth.flops / self.fitted_to)

    def score(self, quantity: str, band: str) -> float | None:
        """Where the truth falls in the prediction's `band` ("pi" or "ci") in log space: the
        log error over the band's half-width on the truth's side (|score| ≤ 1: covered)."""
        point = self.predicted.get(quantity)
        low, high = (self.predicted.get(band, {}).get(quantity) or [None, None])[:2]
        if point is None or low is None or high is None:
            return None
        miss = math.log(self.truth.get(quantity) / point)
        edge = math.log((high if miss > 0 else low) / point)
        return miss / edge if edge != 0 else None

    def to_dict(self) -> dict[str, Any]:
        errors = {q: finite_or_none(self.error(q)) for q in QUANTITIES}
        covered = {q: _covered(self.score(q, "pi")) for q in QUANTITIES}
        return {
            "fitted_to": self.fitted_to,
            "ahead": self.ahead,
            "target": self.truth.flops,
            "truth": {q: self.truth.get(q) for q in QUANTITIES},
            "predicted": {q: finite_or_none(self.predicted.get(q)) for q in QUANTITIES},
            "error": errors,
            "pi_covered": covered,
        }


def _covered(score: float | None) -> bool | None:
    return None if score is None else abs(score) <= 1


def run_budgets(runs: pd.DataFrame) -> np.ndarray:
    """The budget C of each run (NaN without FLOPs): `planned.flops`, else its FLOPs grouped
    within 10 %, as the isoFLOP fit labels them."""
    plan = planned(runs, PLANNED_FLOPS)
    if plan is not None:
        return plan
    if "flops" not in runs.columns:
        return np.full(len(runs), np.nan)
    flops = pd.to_numeric(runs["flops"], errors="coerce").to_numpy(float)
    labels = np.full(len(runs), np.nan)
    ok = np.isfinite(flops) & (flops > 0)
    if ok.any():
        labels[ok] = group_budgets(flops[ok])
    return labels


def optima(data: FitData, options: FitOptions) -> list[Optimum]:
    """Each budget's own optimum, smallest first: the budgets of the isoFLOP fit of all the runs
    that kept an interior minimum. Raises `UserError` when the runs have no isoFLOP profiles."""
    from scalesweep.fit.laws.isoflop.approach2 import fit_isoflop

    fit = fit_isoflop(
        data.runs, method=options.isoflop_method, window=options.window, n_col=options.n_col
    )
    return [
        Optimum(b.flops, b.loss_opt, b.n_opt, b.d_opt)
        for b in fit.budgets
        if not b.excluded and b.loss_opt is not None and b.n_opt is not None and b.d_opt is not None
    ]


def _below(data: FitData, budgets: np.ndarray, cut: float) -> FitData:
    """The runs (and their curves) of the budgets up to `cut`."""
    keep = data.runs[budgets <= cut * 1.01].reset_index(drop=True)
    ids = set(keep["run_id"]) if "run_id" in keep.columns else None

    def curves(keys: tuple[str, ...]) -> pd.DataFrame | None:
        frame = data.load_curves(keys)
        if frame is None or ids is None:
            return frame
        return frame[frame["run_id"].isin(ids)]

    return FitData(keep, load_curves=curves)


def rolling(
    kind: FitKind, data: FitData, options: FitOptions, targets: list[Optimum]
) -> list[Forecast]:
    """Forecasts of the last `TARGETS` budgets of `targets` from the budgets up to one and two
    budgets before each (`HORIZONS`), where the refit succeeds; the largest budget first."""
    assert kind.predict is not None
    budgets = run_budgets(data.runs)
    refit = replace(
        options,
        predict_flops=None,
        bootstrap=min(options.bootstrap, REFIT_BOOTSTRAP),
        isoflop_bootstrap=0,
    )
    out = []
    for index in range(len(targets) - 1, max(len(targets) - 1 - TARGETS, 0), -1):
        for ahead in HORIZONS:
            if index - ahead < 0:
                continue
            cut = targets[index - ahead].flops
            try:
                fit = kind.fit(_below(data, budgets, cut), refit, {})
                predicted = kind.predict(fit, targets[index].flops)
            except UserError:
                continue  # too few budgets left for this law: a shorter cut says nothing
            out.append(Forecast(cut, ahead, targets[index], predicted))
    return out
