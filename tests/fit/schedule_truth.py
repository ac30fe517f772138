"""Sweep-shaped runs whose validation-loss curves follow a schedule law with known parameters
(plus relative noise): the known truth of the schedule-law tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.fit.laws.schedule.laws import LAWS, Curve, predict
from scalesweep.fit.laws.schedule.lrs import lrs
from scalesweep.fit.options import schedule_model

STEPS = 600
EVERY = 10
PEAK = 0.01
WARMUP = 0.02
SCHEDULES: tuple[dict[str, Any], ...] = (
    {"type": "constant"},
    {"type": "cosine", "min_lr_ratio": 0.1},
    {"type": "wsd", "cooldown_fraction": 1.0, "cooldown_shape": "linear"},
    {"type": "wsd", "cooldown_fraction": 0.1, "cooldown_shape": "linear"},
    {"type": "wsd", "cooldown_fraction": 0.2, "cooldown_shape": "1-sqrt"},
    {"type": "wsd", "cooldown_fraction": 0.5, "cooldown_shape": "1-sqrt"},
)
TRUTH: dict[str, tuple[np.ndarray, np.ndarray]] = {
    # law: (shape parameters as the law searches them, scale parameters), η in units of PEAK
    "multi-power": (
        np.array([0.5, np.log10(0.6), np.log10(0.4), np.log10(0.3)]),
        np.array([2.0, 4.0, 0.15]),
    ),
    "lr-annealing": (np.array([0.5]), np.array([2.0, 4.0, 0.0007])),
}
"""L = 2 + 4·S1^-0.5 - (drop term): 2.16 at the end of the constant run, 2.11 (multi-power)
and 2.06 (LR-annealing) at the end of the cosine: annealing gains of 3-5 %, as in real runs."""


def true_curve(
    law: str, schedule: Mapping[str, Any], steps: np.ndarray, total: int = STEPS
) -> np.ndarray:
    """The law's loss at `steps` of a run of `total` steps under `schedule`."""
    model = schedule_model({"warmup": WARMUP, **schedule}, "truth")
    shapes, scales = TRUTH[law]
    return predict(LAWS[law], shapes, scales, Curve(lrs(model, 1.0, total), steps))


def trials(
    law: str, *, noise: float = 0.002, seed: int = 0, widths: Sequence[int] = (64,)
) -> list[dict[str, Any]]:
    """One trial per (width, schedule) as `tests.sweep_runs.write_sweep` takes them: params,
    summary and a val/loss curve every `EVERY` steps (step 0 = ℓ0 left out of the law)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(EVERY, STEPS + 1, EVERY)
    out = []
    for width in widths:
        for i, schedule in enumerate(SCHEDULES):
            loss = true_curve(law, schedule, steps) * (1 + noise * rng.standard_normal(steps.size))
            params = {f"schedule.{k}": v for k, v in {"warmup": WARMUP, **schedule}.items()}
            params |= {"model.width": width, "optim.lr": PEAK, "train.steps": STEPS}
            out.append(
                {
                    "name": f"w{width}-s{i}",
                    "params": params,
                    "summary": {m.FINAL_VAL_LOSS: float(loss[-1]), m.STEPS: STEPS},
                    "curve": [(0, {m.VAL_LOSS: 10.0})]
                    + [(int(s), {m.VAL_LOSS: float(v)}) for s, v in zip(steps, loss, strict=True)],
                }
            )
    return out


def tables(trial_list: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, curves) of `trials` as a CSV source and its --curves file hold them."""
    rows, points = [], []
    for t in trial_list:
        rows.append(
            {"run_id": t["name"], "trial_id": t["name"], m.STATUS: t.get("status", m.COMPLETED)}
            | dict(t["params"])
            | dict(t["summary"])
        )
        points += [{"run_id": t["name"], "step": s, **v} for s, v in t["curve"]]
    return pd.DataFrame(rows), pd.DataFrame(points)
