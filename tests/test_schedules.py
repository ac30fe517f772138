"""LR schedules at their turning points: warmup end, cooldown start, last step."""

import itertools
import math

import pytest

from scalesweep.config import ConstantSchedule, CosineSchedule, WSDSchedule
from scalesweep.schedules import cooldown_start, lr_multiplier, warmup_steps

TOTAL = 100


def test_warmup_fraction_or_steps():
    # Rule: warmup < 1 is a fraction of the run, >= 1 is steps.
    assert warmup_steps(0.1, TOTAL) == 10
    assert warmup_steps(25, TOTAL) == 25
    assert warmup_steps(0.0, TOTAL) == 0


@pytest.mark.parametrize(
    "schedule",
    [ConstantSchedule(warmup=10), CosineSchedule(warmup=10), WSDSchedule(warmup=10)],
)
def test_warmup_is_linear_and_reaches_peak_at_its_end(schedule):
    # Rule: s_t = (t+1)/n_warmup during warmup, exactly 1 at the first step after it.
    assert lr_multiplier(schedule, 0, TOTAL) == pytest.approx(0.1)
    assert lr_multiplier(schedule, 4, TOTAL) == pytest.approx(0.5)
    assert lr_multiplier(schedule, 9, TOTAL) == pytest.approx(1.0)
    assert lr_multiplier(schedule, 10, TOTAL) == pytest.approx(1.0)


def test_constant_stays_at_peak_to_the_last_step():
    assert lr_multiplier(ConstantSchedule(), TOTAL - 1, TOTAL) == 1.0


def test_cosine_midpoint_and_floor():
    # Rule: after warmup, cosine from 1 to min_lr_ratio over exactly the rest of the run.
    schedule = CosineSchedule(warmup=0, min_lr_ratio=0.1)
    assert lr_multiplier(schedule, 0, 101) == pytest.approx(1.0)
    assert lr_multiplier(schedule, 50, 101) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(schedule, 100, 101) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("shape", "halfway"),
    [("linear", 0.5), ("cosine", 0.5), ("1-sqrt", 1 - math.sqrt(0.5))],
)
def test_wsd_stable_then_cooldown_to_floor(shape, halfway):
    # Rule: WSD holds the peak until the cooldown starts at (1 − fraction)·T, then follows the
    # shape (Hägele et al. 2024): its k-th of n steps at progress k/(n+1), halfway at step
    # 80 + 10 (progress 11/21 ≈ 0.5), the floor just after the last step.
    schedule = WSDSchedule(warmup=0, cooldown_fraction=0.2, cooldown_shape=shape)
    assert cooldown_start(schedule, TOTAL) == 80
    assert lr_multiplier(schedule, 79, TOTAL) == 1.0
    assert lr_multiplier(schedule, 80, TOTAL) < 1.0  # the cooldown's first step already decays
    assert lr_multiplier(schedule, 89, TOTAL) == pytest.approx(halfway, abs=0.06)
    assert lr_multiplier(schedule, TOTAL, TOTAL) == pytest.approx(0.0)


def test_wsd_last_step_trains():
    # Rule: no step of a WSD run is spent at the floor. With a floor of 0 the last step used to
    # run at LR 0 (a wasted step); now it runs at a small positive LR, the floor comes after.
    schedule = WSDSchedule(cooldown_fraction=0.2, cooldown_shape="1-sqrt")
    last = lr_multiplier(schedule, TOTAL - 1, TOTAL)
    assert 0.0 < last < 0.05
    steps = [lr_multiplier(schedule, s, TOTAL) for s in range(TOTAL)]
    assert all(a >= b for a, b in itertools.pairwise(steps))


def test_wsd_floor():
    schedule = WSDSchedule(cooldown_fraction=0.5, cooldown_shape="linear", min_lr_ratio=0.2)
    assert lr_multiplier(schedule, TOTAL - 1, TOTAL) == pytest.approx(0.2 + 0.8 / 51)
    assert lr_multiplier(schedule, TOTAL, TOTAL) == pytest.approx(0.2)
    assert cooldown_start(CosineSchedule(), TOTAL) is None
