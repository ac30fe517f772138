"""`schedule-law`: per model group, both laws fitted on the group's fit runs, every other run
predicted (the backtest), the law that predicts the held-out runs better chosen, and the
schedules asked for predicted with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.format import group_label
from scalesweep.fit.laws.schedule import runs as rc
from scalesweep.fit.laws.schedule.fitting import LawFit, fit_law
from scalesweep.fit.laws.schedule.laws import LAWS, Curve
from scalesweep.fit.laws.schedule.predict import (
    Backtest,
    CooldownScan,
    Prediction,
    backtest,
    best_cooldown,
    predict_schedule,
)


@dataclass(frozen=True)
class GroupFit:
    """One model group: its runs, both laws' fits and backtests, and the predictions."""

    key: dict[str, Any]
    fit_runs: tuple[rc.RunCurve, ...]
    held_out: tuple[rc.RunCurve, ...]
    reference: float
    """The LR unit of the laws' parameters: the group's largest peak LR."""
    fits: dict[str, LawFit]
    backtests: dict[str, tuple[Backtest, ...]]
    predictions: tuple[Prediction, ...] = ()
    cooldown: CooldownScan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.key,
            "fit_runs": [r.name for r in self.fit_runs],
            "lr_unit": self.reference,
            "laws": {
                name: {
                    "params": f.params,
                    "fit_rmse": f.rmse,
                    "backtest": [b.to_dict() for b in self.backtests[name]],
                    **_errors(self.backtests[name]),
                }
                for name, f in self.fits.items()
            },
            "runs": [_observed(r, r in self.fit_runs) for r in (*self.fit_runs, *self.held_out)],
            "predictions": [p.to_dict() for p in self.predictions],
            "best_cooldown": None if self.cooldown is None else self.cooldown.to_dict(),
        }


def _observed(run: rc.RunCurve, fitted: bool) -> dict[str, Any]:
    return {
        "run": run.name,
        "schedule": run.label,
        "fit": fitted,
        "steps": [int(s) for s in run.steps],
        "loss": [float(v) for v in run.loss],
    }


def _errors(tests: Sequence[Backtest]) -> dict[str, float | None]:
    if not tests:
        return {"mean_abs_error": None, "worst_abs_error": None, "mean_curve_error": None}
    errors = np.abs([t.error for t in tests])
    return {
        "mean_abs_error": float(errors.mean()),
        "worst_abs_error": float(errors.max()),
        "mean_curve_error": float(np.mean([t.curve_error for t in tests])),
    }


@dataclass(frozen=True)
class ScheduleFit:
    """The `schedule-law` result."""

    law: str
    """The law used for the predictions."""
    why: str
    group_by: tuple[str, ...]
    groups: tuple[GroupFit, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        tests = {name: [t for g in self.groups for t in g.backtests[name]] for name in LAWS}
        return {
            "law": self.law,
            "why": self.why,
            "group_by": list(self.group_by),
            "backtest": {name: _errors(t) | {"n_runs": len(t)} for name, t in tests.items()},
            "groups": [g.to_dict() for g in self.groups],
            "notes": list(self.notes),
        }


def _fit_group(group: Sequence[rc.RunCurve], chosen: Sequence[rc.RunCurve]) -> GroupFit:
    reference = max(r.peak for r in group)
    curves = [Curve(r.lrs / reference, r.steps) for r in chosen]
    held = tuple(r for r in group if r not in chosen)
    fits = {name: fit_law(law, curves, [r.loss for r in chosen]) for name, law in LAWS.items()}
    tests = {name: tuple(backtest(f, r, reference) for r in held) for name, f in fits.items()}
    return GroupFit(group[0].key, tuple(chosen), held, reference, fits, tests)


def choose_law(groups: Sequence[GroupFit], asked: str) -> tuple[str, str]:
    """(law, why): `asked`, else the law with the lower mean |final-loss error| over every
    held-out run (the multi-power law when no run is held out)."""
    if asked != "auto":
        return asked, f"--schedule-law {asked}"
    scores = {}
    for name in LAWS:
        errors = [abs(t.error) for g in groups for t in g.backtests[name]]
        if errors:
            scores[name] = float(np.mean(errors))
    if not scores:
        law = next(iter(LAWS))
        return law, f"no run was held out to compare the laws; {law} by default"
    law = min(scores, key=lambda name: scores[name])
    compared = ", ".join(f"{name} {score:.3%}" for name, score in scores.items())
    return law, f"the lower mean |final-loss error| on the held-out runs ({compared})"


def _with_predictions(
    group: GroupFit, law: str, schedules: Sequence[Mapping[str, Any]], cooldown: bool
) -> GroupFit:
    fit = group.fits[law]
    base = max(group.fit_runs, key=lambda r: r.total_steps)
    predictions = tuple(predict_schedule(fit, base, s, group.reference) for s in schedules)
    scan = best_cooldown(fit, base, group.reference) if cooldown else None
    return replace(group, predictions=predictions, cooldown=scan)


def fit_schedule_law(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None,
    *,
    lr_curves: pd.DataFrame | None = None,
    group_by: Sequence[str] | None = None,
    fit_on: Sequence[Mapping[str, str]] = (),
    law: str = "auto",
    schedules: Sequence[Mapping[str, Any]] = (),
    cooldown: bool = False,
) -> ScheduleFit:
    """Fit both laws per group on its fit runs (`--fit-on`, else the two most different
    schedules), backtest the rest, predict `schedules` and scan the cooldown with the law
    `choose_law` picks. `lr_curves` (`train/lr` at every step) give the LRs of runs without
    `schedule.*` params."""
    used, notes = rc.run_curves(runs, curves, lr_curves)
    columns = rc.group_columns(runs, group_by)
    fitted = []
    for group in rc.grouped(used, runs, columns):
        names, label = ", ".join(r.name for r in group), group_label(group[0].key)
        chosen = rc.select(group, runs, fit_on)
        if len(group) < 2:
            notes.append(f"group {label} has one run ({names}): nothing to fit")
        elif not fit_on and rc.schedule_distance(*chosen) == 0:
            notes.append(f"group {label}: one LR schedule ({names}): not fitted")
        elif not chosen:
            notes.append(f"group {label}: no run matches --fit-on ({names})")
        else:
            try:
                fitted.append(_fit_group(group, chosen))
            except UserError as error:
                notes.append(f"group {label}: {error}")
    if not fitted:
        more = f"; … ({len(notes)} notes in all)" if len(notes) > 5 else ""
        raise UserError("schedule-law: no group could be fitted: " + "; ".join(notes[-5:]) + more)
    name, why = choose_law(fitted, law)
    groups = tuple(_with_predictions(g, name, schedules, cooldown) for g in fitted)
    return ScheduleFit(name, why, columns, groups, tuple(notes))
