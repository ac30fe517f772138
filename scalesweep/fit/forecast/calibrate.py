"""Prediction intervals calibrated by the law's own backtests.

A law's prediction interval assumes the law holds beyond the data: the scatter of single budgets
around it is all it allows for. When the law is biased, as a saturating L(C) fitted to budgets
trained with untuned hyperparameters is (Porian et al. 2024; docs/fits.md), its forecasts miss
by more than that. The backtests (`backtest.rolling`) measure by how much on the law's own
largest budgets, two ways, and the calibrated interval is the wider of the two, on each side,
in log space about the unmoved point forecast:

1. *studentized*: the score s = ln(truth/predicted) over the forecast's own interval's
   half-width on the truth's side (|s| ≤ 1: covered). When the law holds, z·RMS(s) is about 1
   (z the normal quantile of the level); the law's interval is widened by κ = max(1, z·RMS(s));
2. *per unit of extrapolation*: r = |ln(truth/predicted)| / ln(target/fitted_to), the miss
   per e-fold of compute extrapolated; a bias in an exponent or a flattening law misses by about
   r·H at H e-folds. The half-width is the `level` quantile of r, over the backtests that
   extrapolate farthest (two budgets ahead: over one, a level offset or a single budget's
   scatter would pass for a steep drift), times the forecast's own H.

The first keeps the law's interval where the law holds; the second catches a bias the small
budgets' wide intervals hide. Neither ever narrows the law's interval. docs/fits.md measures the
coverage on Porian et al.'s 14 configurations and on data drawn from a known law.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalesweep.fit.forecast.backtest import QUANTITIES, Forecast
from scalesweep.fit.runs import finite_or_none

MIN_SCORES = 2
"""Backtests needed before an interval is calibrated (fewer: the law's own, said so)."""


def _normal_quantile(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


@dataclass(frozen=True)
class Calibration:
    """How much the backtests widen each quantity's interval."""

    factor: dict[str, float | None]
    """κ per quantity (1: the law's interval held; None: too few backtests to say)."""
    rate: dict[str, float | None]
    """The `level` quantile of the log miss per e-fold extrapolated, per quantity."""
    n_scores: dict[str, int]
    """Backtests behind each κ."""
    band: dict[str, str]
    """The interval widened: the law's prediction interval, or its confidence band when it
    gives none (parametric N_opt and D_opt)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "factor": {q: finite_or_none(k) for q, k in self.factor.items()},
            "rate": {q: finite_or_none(r) for q, r in self.rate.items()},
            "n_scores": dict(self.n_scores),
            "band": dict(self.band),
        }


def _band(prediction: Mapping[str, Any], quantity: str) -> str | None:
    for band in ("pi", "ci"):
        bounds = prediction.get(band, {}).get(quantity)
        if bounds and bounds[0] is not None and bounds[1] is not None:
            return band
    return None


def calibration(
    prediction: Mapping[str, Any], forecasts: Sequence[Forecast], level: float
) -> Calibration:
    """κ for each quantity of `prediction` (a kind's `predict` output), from `forecasts`."""
    import numpy as np

    z = _normal_quantile(level)
    factor: dict[str, float | None] = {}
    rate: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    bands: dict[str, str] = {}
    for quantity in QUANTITIES:
        band = _band(prediction, quantity)
        if band is None:
            continue
        scores = [s for f in forecasts if (s := f.score(quantity, band)) is not None]
        bands[quantity], counts[quantity] = band, len(scores)
        # the drift from the longest backtests: over a short one a level offset (a law that
        # misses every budget alike) would pass for a steep drift
        farthest = max((f.ahead for f in forecasts), default=0)
        misses = [
            r for f in forecasts if f.ahead == farthest and (r := f.miss_rate(quantity)) is not None
        ]
        if len(scores) < MIN_SCORES:
            factor[quantity] = rate[quantity] = None
            continue
        rms = math.sqrt(sum(s * s for s in scores) / len(scores))
        factor[quantity] = max(1.0, z * rms)
        rate[quantity] = float(np.quantile(misses, level)) if misses else None
    return Calibration(factor, rate, counts, bands)


def widened(
    prediction: Mapping[str, Any], calibration: Calibration, efolds: float
) -> dict[str, Any]:
    """The calibrated prediction intervals of a forecast `efolds` = ln(C / the largest budget
    fitted) beyond the data: on each side the wider of the law's band times κ and the miss
    rate times `efolds` (the law's own band where the backtests are too few)."""
    out: dict[str, Any] = {}
    for quantity, band in calibration.band.items():
        point = prediction.get(quantity)
        low, high = prediction[band][quantity]
        if point is None or point <= 0 or low <= 0:
            out[quantity] = [low, high]
            continue
        kappa = calibration.factor.get(quantity) or 1.0
        drift = (calibration.rate.get(quantity) or 0.0) * max(efolds, 0.0)
        below = max(kappa * math.log(point / low), drift)
        above = max(kappa * math.log(high / point), drift)
        out[quantity] = [point * math.exp(-below), point * math.exp(above)]
    return out
