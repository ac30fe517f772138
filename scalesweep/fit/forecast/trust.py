"""The forecast's backtests and calibrated intervals, as `--predict-flops` reports them.

For each law that answered at the budget asked for: its rolling backtests (`backtest.rolling`);
the two that hold out the largest budget, shown beside the forecast ("fitted without 3e20, this
law predicted 3e20's optimal loss within +0.4 %"); and its prediction intervals widened by what
all of them missed (`calibrate`), the law's own interval kept as `pi_law`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from scalesweep.errors import UserError
from scalesweep.fit.base import FitData, FitKind
from scalesweep.fit.forecast.backtest import HORIZONS, optima, rolling, run_budgets
from scalesweep.fit.forecast.calibrate import calibration, widened
from scalesweep.fit.options import FitOptions

MIN_BUDGETS = 3
"""Budgets with their own optimum a backtest needs: two to fit the simplest law on, one to hold
out."""


def backtests(
    kinds: Mapping[str, FitKind],
    data: FitData,
    options: FitOptions,
    prediction: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the prediction with calibrated intervals, fit.json's `backtest`) for the kinds in
    `prediction`; where the runs allow no backtest, the prediction unchanged and a note."""
    assert options.predict_flops is not None
    try:
        targets = optima(data, options)
    except UserError as error:
        return dict(prediction), {
            "note": f"no backtest: the runs have no isoFLOP budgets ({error})"
        }
    if len(targets) < MIN_BUDGETS:
        note = (
            f"no backtest: it needs {MIN_BUDGETS} budgets with their own optimum (one held out), "
            f"and the runs have {len(targets)}"
        )
        return dict(prediction), {"note": note}
    budgets = run_budgets(data.runs)
    efolds = math.log(options.predict_flops / float(np.nanmax(budgets)))
    calibrated, section = dict(prediction), {}
    for name, kind in kinds.items():
        if name not in prediction or kind.requires:
            continue
        forecasts = rolling(kind, data, options, targets)
        shown = [f for f in forecasts if f.truth.flops == targets[-1].flops]
        cal = calibration(prediction[name], forecasts, options.level)
        answer = dict(prediction[name])
        answer["pi_law"], answer["pi"] = answer.get("pi", {}), widened(answer, cal, efolds)
        calibrated[name] = answer
        section[name] = {
            "held_out": [f.to_dict() for f in sorted(shown, key=lambda f: f.ahead)],
            "n_backtests": len(forecasts),
            "calibration": cal.to_dict(),
            "efolds": efolds,
            "note": _note(name, shown, targets[-1].flops),
        }
    return calibrated, section


def _note(name: str, shown: list[Any], largest: float) -> str | None:
    missing = [h for h in HORIZONS if h not in {f.ahead for f in shown}]
    if not missing:
        return None
    return (
        f"{name} could not be refitted without the largest {max(missing)} budget(s) to predict "
        f"{largest:.3g} (too few budgets left for the law)"
    )
