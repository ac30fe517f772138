"""Learning-rate schedules as pure functions of the step.

`lr_multiplier(schedule, step, total_steps)` returns s_t in [0, 1]; the LR at a step is
s_t · optim.lr. Each schedule type is one small function, registered by its YAML `type:`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scalesweep.config import ConstantSchedule, CosineSchedule, ScheduleConfig, WSDSchedule


def warmup_steps(warmup: float, total_steps: int) -> int:
    """`warmup` < 1 is a fraction of the run; otherwise a number of steps."""
    steps = warmup * total_steps if warmup < 1 else warmup
    return min(round(steps), total_steps)


def _warmup(step: int, n_warmup: int) -> float | None:
    # Linear from 1/n_warmup at step 0 to 1 at step n_warmup - 1 (never exactly 0: a zero-LR
    # first step would waste a step and make step 0's update a no-op).
    if step < n_warmup:
        return (step + 1) / n_warmup
    return None


def constant(schedule: ConstantSchedule, step: int, total_steps: int) -> float:
    warm = _warmup(step, warmup_steps(schedule.warmup, total_steps))
    return 1.0 if warm is None else warm


def cosine(schedule: CosineSchedule, step: int, total_steps: int) -> float:
    n_warmup = warmup_steps(schedule.warmup, total_steps)
    warm = _warmup(step, n_warmup)
    if warm is not None:
        return warm
    # 1) progress through the post-warmup part, 0 at its start and 1 at the last step
    decay_steps = max(1, total_steps - 1 - n_warmup)
    progress = min(1.0, (step - n_warmup) / decay_steps)
    # 2) cosine from 1 down to the floor over exactly the run's length (Hoffmann et al. 2022 §3:
    #    a cycle longer than the run overestimates the loss of short runs)
    floor = schedule.min_lr_ratio
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _cooldown_shape(shape: str, progress: float) -> float:
    """Fraction of the peak left at `progress` ∈ [0, 1] into the cooldown (Hägele et al. 2024)."""
    if shape == "linear":
        return 1 - progress
    if shape == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1 - math.sqrt(progress)  # "1-sqrt", the best shape in Hägele et al. §3


def wsd(schedule: WSDSchedule, step: int, total_steps: int) -> float:
    n_warmup = warmup_steps(schedule.warmup, total_steps)
    warm = _warmup(step, n_warmup)
    if warm is not None:
        return warm
    # 1) stable at the peak until the cooldown starts
    n_cooldown = max(1, round(schedule.cooldown_fraction * total_steps))
    cooldown_start = total_steps - n_cooldown
    if step < cooldown_start:
        return 1.0
    # 2) cool down: the k-th of n cooldown steps runs at progress k/(n+1), so the floor comes
    #    just after the last step and no step trains at the floor (at 0, a wasted step)
    progress = min(1.0, (step - cooldown_start + 1) / (n_cooldown + 1))
    floor = schedule.min_lr_ratio
    return floor + (1 - floor) * _cooldown_shape(schedule.cooldown_shape, progress)


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "cosine": cosine,
    "wsd": wsd,
}


def lr_multiplier(schedule: ScheduleConfig, step: int, total_steps: int) -> float:
    """s_t for `step` in [0, total_steps): the fraction of the peak LR to use at that step."""
    return SCHEDULES[schedule.type](schedule, step, total_steps)


def cooldown_start(schedule: ScheduleConfig, total_steps: int) -> int | None:
    """First step of a WSD cooldown (where a checkpoint can branch off), else None."""
    if isinstance(schedule, WSDSchedule):
        return total_steps - max(1, round(schedule.cooldown_fraction * total_steps))
    return None
