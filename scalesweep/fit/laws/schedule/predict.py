"""What a fitted law says about schedules: a run's curve (the backtest of a held-out run), a
schedule never run, and the WSD cooldown (fraction and shape) with the lowest final loss."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalesweep.fit.laws.schedule import lrs as lr
from scalesweep.fit.laws.schedule.fitting import LawFit
from scalesweep.fit.laws.schedule.laws import Curve
from scalesweep.fit.laws.schedule.runs import RunCurve
from scalesweep.fit.options import schedule_model

COOLDOWN_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(1, 21))
"""The cooldown fractions `--best-cooldown` scans: 5 % to 100 % in steps of 5 %."""
COOLDOWN_SHAPES = ("linear", "1-sqrt", "cosine")
CURVE_POINTS = 60
"""Points of a predicted schedule's curve."""


@dataclass(frozen=True)
class Backtest:
    """A run the law was not fitted on, predicted from its LRs and compared."""

    run: str
    schedule: str
    predicted: float
    """Predicted loss at the run's last logged step."""
    actual: float
    error: float
    """predicted / actual - 1 at that step."""
    curve_error: float
    """Mean |predicted / actual - 1| over the run's points after warmup."""
    curve: tuple[float, ...]
    """The prediction at each of the run's points."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def backtest(fit: LawFit, run: RunCurve, reference: float) -> Backtest:
    predicted = fit.predict(Curve(run.lrs / reference, run.steps))
    return Backtest(
        run=run.name,
        schedule=run.label,
        predicted=float(predicted[-1]),
        actual=float(run.loss[-1]),
        error=float(predicted[-1] / run.loss[-1] - 1),
        curve_error=float(np.mean(np.abs(predicted / run.loss - 1))),
        curve=tuple(map(float, predicted)),
    )


@dataclass(frozen=True)
class Prediction:
    """A schedule that was not run, predicted at the group's budget, peak LR and warmup."""

    schedule: dict[str, Any]
    label: str
    final: float
    steps: tuple[int, ...]
    curve: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _lrs(base: RunCurve, spec: Mapping[str, Any]) -> np.ndarray:
    """The LRs of `spec` on `base`'s steps and peak, with `base`'s warmup unless given."""
    full = {"warmup": base.schedule.get("warmup", 0.0), **spec}
    schedule = schedule_model(full, "--predict-schedule")
    return lr.lrs(schedule, base.peak, base.total_steps)


def predict_schedule(
    fit: LawFit, base: RunCurve, spec: Mapping[str, Any], reference: float
) -> Prediction:
    total = base.total_steps
    start = max(int(base.steps[0]), 1)
    steps = np.unique(np.linspace(start, total, CURVE_POINTS).round().astype(int))
    curve = fit.predict(Curve(_lrs(base, spec) / reference, steps))
    return Prediction(
        schedule=dict(spec),
        label=lr.describe(spec),
        final=float(curve[-1]),
        steps=tuple(map(int, steps)),
        curve=tuple(map(float, curve)),
    )


def final_loss(fit: LawFit, base: RunCurve, spec: Mapping[str, Any], reference: float) -> float:
    lrs = _lrs(base, spec) / reference
    return float(fit.predict(Curve(lrs, np.array([lrs.size])))[0])


@dataclass(frozen=True)
class CooldownScan:
    """The WSD cooldown with the lowest predicted final loss at the group's budget."""

    fraction: float
    shape: str
    loss: float
    steps: int
    """The budget scanned (the longest fit run's steps)."""
    scan: tuple[tuple[float, str, float], ...]
    """(fraction, shape, predicted final loss) for every point scanned."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "shape": self.shape,
            "loss": self.loss,
            "steps": self.steps,
            "scan": [{"fraction": f, "shape": s, "loss": v} for f, s, v in self.scan],
        }


def best_cooldown(fit: LawFit, base: RunCurve, reference: float) -> CooldownScan:
    """Scan `COOLDOWN_FRACTIONS` × `COOLDOWN_SHAPES` (WSD to 0) on `base`'s budget."""
    scan = tuple(
        (fraction, shape, final_loss(fit, base, _wsd(fraction, shape), reference))
        for shape in COOLDOWN_SHAPES
        for fraction in COOLDOWN_FRACTIONS
    )
    fraction, shape, loss = min(scan, key=lambda point: point[2])
    return CooldownScan(fraction, shape, loss, base.total_steps, scan)


def _wsd(fraction: float, shape: str) -> dict[str, Any]:
    return {"type": "wsd", "cooldown_fraction": fraction, "cooldown_shape": shape}
