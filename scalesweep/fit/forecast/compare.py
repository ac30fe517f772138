"""The compare kind's backtest: the laws refitted without the largest budget (and without the two
largest), predicting what the largest budget measured.

As `backtest` judges the allocating laws, but against what a comparison forecasts: each
variant's frontier loss at the held-out largest budget (measured there) and the multiplier
there (against the multiplier the fit of every budget gives, the best estimate the runs hold).
A refit with fewer than 3 budgets has no law and is skipped, saying so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scalesweep.fit.laws.compare.fit import CompareFit
from scalesweep.fit.laws.compare.multiplier import MIN_LAW_BUDGETS, estimate
from scalesweep.fit.runs import finite_or_none

DROPPED = (1, 2)
"""How many of the largest budgets each refit leaves out."""
REFIT_BOOTSTRAP = 100
"""Bootstrap resamples of a refit."""


def compare_backtest(
    fit: CompareFit, *, shared_e: bool | None, rng: np.random.Generator
) -> dict[str, Any]:
    """fit.json's `backtest` of a compare fit: one entry per refit that has a law."""
    cells, budgets = fit.cells, fit.cells.budgets
    target = float(budgets[-1])
    held_out, skipped = [], []
    for drop in DROPPED:
        kept = len(budgets) - drop
        if kept < MIN_LAW_BUDGETS:
            skipped.append(f"without the {drop} largest: {kept} budgets, no law")
            continue
        refit = estimate(
            cells.upto(kept),
            level=fit.level,
            n_boot=min(fit.n_boot, REFIT_BOOTSTRAP),
            rng=rng,
            shared_e=shared_e,
            target=target,
        )
        assert refit.laws is not None  # 3 or more budgets: a law
        predicted = refit.laws.log_loss(np.array([target]))[0, :, 0]
        losses = {
            value: {
                "predicted": float(np.exp(predicted[v])),
                "measured": float(fit.frontier[v, -1]),
                "error": float(np.exp(predicted[v]) / fit.frontier[v, -1] - 1),
            }
            for v, value in enumerate(cells.variants)
        }
        multipliers = {}
        for full, part in zip(fit.comparisons, refit.comparisons, strict=True):
            point = part.at_target
            truth = full.at_budgets[-1].value
            low, high = point.ci if point else (None, None)
            multipliers[full.value] = {
                "predicted": finite_or_none(point.value if point else None),
                "ci": [finite_or_none(low), finite_or_none(high)],
                "full_fit": finite_or_none(truth),
                "covered": None if low is None or high is None else bool(low <= truth <= high),
            }
        held_out.append(
            {
                "fitted_to": float(budgets[kept - 1]),
                "dropped": drop,
                "target": target,
                "loss": losses,
                "multiplier": multipliers,
            }
        )
    note = "; ".join(skipped) if skipped else None
    return {"held_out": held_out, "note": note}
