"""The effective compute multiplier of each variant against the baseline, with intervals.

From the cells (`frontier`): with 3 or more budgets, a law per variant (`law`) and
M(C) = C_b(L_v(C))/C at every budget and at the target; with 2, no law and no extrapolation,
only a per-budget multiplier: the variant's frontier loss read off the baseline's local
log-log slope between its budgets. Intervals are bootstrap percentiles over resamples of the
runs of each configuration (`Cells.resample`), every resample refitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalesweep.errors import UserError
from scalesweep.fit.laws.compare.frontier import Cells
from scalesweep.fit.laws.compare.law import Laws, crossover, fit_laws
from scalesweep.fit.numerics.resampling import percentile_interval
from scalesweep.fit.runs import finite_or_none

MIN_LAW_BUDGETS = 3
"""Budgets a law needs (3 points per variant; E shared when a variant has fewer than 4)."""
OWN_E_BUDGETS = 4
"""Budgets from which each variant gets its own E unless --shared-E."""
CROSSOVER_REACH = 1e3
"""A crossover is looked for up to this many times the largest budget (or the target)."""


@dataclass(frozen=True)
class Multiplier:
    """M at one budget, with its interval and, where the runs log throughput, wall clock."""

    flops: float
    value: float
    ci: tuple[float | None, float | None]
    measured: bool
    """A budget of the runs (False: the target, extrapolated)."""
    wall_clock: float | None = None
    """M times the variant's FLOPs/s over the baseline's (> 1: faster to the same loss)."""

    @property
    def resolved(self) -> bool:
        low, high = self.ci
        return low is not None and high is not None and not low <= 1.0 <= high

    def to_dict(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "multiplier": finite_or_none(self.value),
            "ci": [finite_or_none(v) for v in self.ci],
            "measured": self.measured,
            "resolved": self.resolved,
            "wall_clock": finite_or_none(self.wall_clock),
        }


@dataclass(frozen=True)
class Comparison:
    """One variant against the baseline."""

    value: str
    at_budgets: tuple[Multiplier, ...]
    at_target: Multiplier | None
    crossover: float | None
    """The smallest C ≥ the smallest budget where M = 1 (None: none within reach)."""
    crossover_ci: tuple[float | None, float | None]
    crossover_share: float | None
    """The share of resamples whose laws cross within reach."""
    throughput_ratio: float | None
    """The variant's FLOPs/s over the baseline's (geometric mean over budgets)."""

    @property
    def resolvable(self) -> bool:
        """Whether M's interval excludes 1 somewhere (else: no resolvable difference)."""
        points = (*self.at_budgets, *((self.at_target,) if self.at_target else ()))
        return any(p.resolved for p in points)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "at_budgets": [p.to_dict() for p in self.at_budgets],
            "at_target": self.at_target.to_dict() if self.at_target else None,
            "crossover": finite_or_none(self.crossover),
            "crossover_ci": [finite_or_none(v) for v in self.crossover_ci],
            "crossover_share": finite_or_none(self.crossover_share),
            "throughput_ratio": finite_or_none(self.throughput_ratio),
            "resolvable": self.resolvable,
        }


@dataclass(frozen=True)
class Estimate:
    """What the cells give: the laws (or none) and each variant's comparison."""

    comparisons: tuple[Comparison, ...]
    laws: Laws | None
    boot: Laws | None
    shared_e: bool
    frontier: np.ndarray
    frontier_boot: np.ndarray


def _interval(samples: np.ndarray, level: float) -> tuple[float | None, float | None]:
    low, high = percentile_interval(samples, level)
    return low, high


def _per_budget(frontier: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """(..., V, B) ln M from frontiers (..., V, B) without a law: the variant's loss read off
    the baseline's local slope d ln L/d ln C (central between neighbours, one-sided at ends);
    NaN where the baseline's loss does not fall."""
    log_l, log_c = np.log(frontier), np.log(budgets)
    slope = np.gradient(log_l[..., 0, :], log_c, axis=-1)
    slope = np.where(slope < 0, slope, np.nan)
    return (log_l - log_l[..., :1, :]) / slope[..., None, :]


def _throughput(cells: Cells, rates: np.ndarray | None) -> np.ndarray | None:
    return None if rates is None else rates / rates[:1]


def estimate(
    cells: Cells,
    *,
    level: float,
    n_boot: int,
    rng: np.random.Generator,
    shared_e: bool | None,
    target: float | None,
    rates: np.ndarray | None = None,
) -> Estimate:
    """Each variant's multiplier against `cells.variants[0]`. `shared_e` None: shared when a
    variant has fewer than `OWN_E_BUDGETS` budgets. `rates` (V, B): FLOPs/s per cell, or None."""
    budgets = cells.budgets
    frontier = cells.frontier()
    if not frontier[0, -1] < frontier[0, 0]:
        raise UserError(
            f"compare: the baseline's best loss must fall with compute for a multiplier to "
            f"mean anything, but it is {frontier[0, 0]:.4g} at C = {budgets[0]:.3g} and "
            f"{frontier[0, -1]:.4g} at C = {budgets[-1]:.3g} (more compute buys the baseline "
            f"nothing here); compare against another value: "
            + " or ".join(f"--baseline {v}" for v in cells.variants[1:])
        )
    boot = cells.resample(rng, n_boot, level)
    ratio = _throughput(cells, rates)
    if len(budgets) < MIN_LAW_BUDGETS:
        log_m, log_m_boot = _per_budget(frontier, budgets), _per_budget(boot, budgets)
        per_budget = tuple(
            _comparison(cells, v, log_m[v], log_m_boot[:, v], None, ratio, level)
            for v in range(1, len(cells.variants))
        )
        return Estimate(per_budget, None, None, True, frontier, boot)
    shared = len(budgets) < OWN_E_BUDGETS if shared_e is None else shared_e
    laws = fit_laws(budgets, np.log(frontier)[None], shared_e=shared)
    boot_laws = fit_laws(budgets, np.log(boot), shared_e=shared, start=laws)
    points = budgets if target is None else np.append(budgets, target)
    log_m = laws.log_multiplier(points, 0)[0]
    log_m_boot = boot_laws.log_multiplier(points, 0)
    reach = max(budgets[-1], target or 0.0) * CROSSOVER_REACH
    found_all = []
    for v in range(1, len(cells.variants)):
        cross = crossover(laws, 0, v, budgets[0], reach)[0]
        cross_boot = crossover(boot_laws, 0, v, budgets[0], reach)
        found = np.isfinite(cross_boot)
        found_all.append(
            _comparison(
                cells,
                v,
                log_m[v],
                log_m_boot[:, v],
                target,
                ratio,
                level,
                crossing=(
                    finite_or_none(cross),
                    _interval(cross_boot[found], level) if found.any() else (None, None),
                    float(found.mean()),
                ),
            )
        )
    return Estimate(tuple(found_all), laws, boot_laws, shared, frontier, boot)


def _comparison(
    cells: Cells,
    v: int,
    log_m: np.ndarray,
    log_m_boot: np.ndarray,
    target: float | None,
    ratio: np.ndarray | None,
    level: float,
    crossing: tuple[Any, Any, Any] = (None, (None, None), None),
) -> Comparison:
    """Variant `v`'s multipliers: `log_m` (points) and `log_m_boot` (resamples, points) at the
    budgets, then at `target` when given."""
    n = len(cells.budgets)
    with np.errstate(over="ignore"):
        m_point, m_boot = np.exp(log_m), np.exp(log_m_boot)
    speed = None if ratio is None else ratio[v]
    at = tuple(
        Multiplier(
            float(cells.budgets[b]),
            float(m_point[b]),
            _interval(m_boot[:, b], level),
            True,
            None if speed is None else float(m_point[b] * speed[b]),
        )
        for b in range(n)
    )
    mean_speed = None if speed is None else float(np.exp(np.mean(np.log(speed))))
    at_target = None
    if target is not None and len(log_m) > n:
        wall = None if mean_speed is None else float(m_point[n] * mean_speed)
        at_target = Multiplier(
            float(target), float(m_point[n]), _interval(m_boot[:, n], level), False, wall
        )
    cross, cross_ci, share = crossing
    return Comparison(cells.variants[v], at, at_target, cross, cross_ci, share, mean_speed)


def describe_multiplier(value: float | None) -> str:
    """`1.31×` (or n/a)."""
    if value is None or not math.isfinite(value):
        return "n/a" if value is None else "∞"
    return f"{value:.3g}×"
