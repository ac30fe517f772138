"""A run's per-step learning rates, recomputed from its logged schedule params with the
trainer's own `scalesweep.schedules` (exact at every step; `train/lr` is logged only every
`log_every` steps). The schedules a user asks to predict are parsed and checked by the config's
own model in `fit.options` (`parse_schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from scalesweep.config import ScheduleConfig, WSDSchedule
from scalesweep.schedules import lr_multiplier, warmup_steps

SCHEDULE_PREFIX = "schedule."


def schedule_of(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `schedule.*` params of a runs-table row as a schedule section (None without a type)."""
    spec = {
        key.removeprefix(SCHEDULE_PREFIX): value
        for key, value in row.items()
        if str(key).startswith(SCHEDULE_PREFIX) and not _missing(value)
    }
    return spec if "type" in spec else None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def lrs(schedule: ScheduleConfig, peak: float, steps: int) -> np.ndarray:
    """η_0 … η_{steps-1}: the LR of each optimizer step, as the trainer sets it."""
    return peak * np.array([lr_multiplier(schedule, s, steps) for s in range(steps)])


def warmup_of(schedule: ScheduleConfig, steps: int) -> int:
    """Warmup steps of the schedule on a run of `steps` steps."""
    return warmup_steps(schedule.warmup, steps)


def describe(spec: Mapping[str, Any]) -> str:
    """`wsd cooldown=0.2 1-sqrt`, `cosine`: a schedule as a legend names it."""
    kind = str(spec.get("type"))
    if kind != "wsd":
        return kind
    fraction = float(spec.get("cooldown_fraction", WSDSchedule().cooldown_fraction))
    shape = spec.get("cooldown_shape", WSDSchedule().cooldown_shape)
    return f"wsd cooldown={fraction:g} {shape}"
