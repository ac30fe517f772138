"""LR transfer across widths: the best LR of each width's group against the width,
LR_opt = c·width^k (k ≈ 0: the LR transfers), per combination of the other group columns.

The best LR is read off the LR grid, so it is known only to within the grid's spacing: each
width's optimum may lie anywhere up to half a grid step (in log η) either side of its best grid
LR, up to the midpoints with its neighbours. The interval of k is the OLS interval widened to
every slope the grid allows (the OLS slope is linear in ln η, so its extremes come from the
ends of those ranges): with 2 widths, or the same best LR at every width, the OLS interval is
missing or [0, 0], and the grid's is all there is. A best LR at the edge of its group's LRs
leaves that side open: the interval is unbounded there. k is `resolved` when its interval can
tell the LR transferring (k = 0) from standard parameterization's 1/width (k = −1): bounded,
and holding at most one of the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from scalesweep.fit.format import group_label
from scalesweep.fit.numerics.regression import loglog_ols
from scalesweep.fit.runs import finite_or_none


class ScoredGroup(Protocol):
    """What the transfer fit reads of a group's LR-sensitivity result."""

    @property
    def key(self) -> dict[str, Any]: ...

    @property
    def best_lr(self) -> float | None: ...

    @property
    def curve(self) -> tuple[tuple[float, float], ...]: ...


@dataclass(frozen=True)
class TransferFit:
    """LR_opt = c·width^k for one combination of the other group columns."""

    key: dict[str, Any]
    """The group columns that split the transfer fits (those not fixed by the width)."""
    k: float
    """Exponent (0: the LR transfers across widths)."""
    coef: float
    """c."""
    se: float | None
    """Standard error of k from OLS (None with 2 widths)."""
    ci: tuple[float | None, float | None]
    """Interval of k: the OLS confidence interval widened to the slopes the LR grid allows
    (see the module docstring); None on a side left open by a best LR at the grid's edge."""
    n_widths: int
    """Widths fitted."""
    grid_ci: tuple[float | None, float | None] = (None, None)
    """The slopes the LR grid allows alone (None on an open side)."""
    resolved: bool = False
    """Whether `ci` is bounded and holds at most one of k = 0 and k = −1."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: finite_or_none(v) for k, v in self.key.items()},
            "k": finite_or_none(self.k),
            "coef": finite_or_none(self.coef),
            "se": finite_or_none(self.se),
            "ci": [finite_or_none(x) for x in self.ci],
            "grid_ci": [finite_or_none(x) for x in self.grid_ci],
            "resolved": self.resolved,
            "n_widths": self.n_widths,
        }


def transfer_fits(
    frame: pd.DataFrame,
    results: Sequence[ScoredGroup],
    width: str | None,
    groups: tuple[str, ...],
    *,
    level: float,
    notes: list[str],
) -> tuple[TransferFit, ...]:
    """LR_opt ∝ width^k per combination of the group columns that the width does not fix
    (a depth that grows with the width belongs to the width axis, not to a split)."""
    if width is None:
        notes.append("no width column among the group columns: no LR transfer fit")
        return ()
    spread = {c: frame.groupby(width, dropna=False)[c].nunique(dropna=False).max() for c in groups}
    others = [c for c in groups if c != width and spread[c] > 1]
    by_other: dict[tuple[Any, ...], list[ScoredGroup]] = {}
    for result in results:
        by_other.setdefault(tuple((k, result.key[k]) for k in others), []).append(result)
    fits, narrow = [], []
    for other, members in by_other.items():
        usable = [g for g in members if g.best_lr is not None and g.key[width] is not None]
        widths = np.array([float(g.key[width]) for g in usable])
        if np.unique(widths).size < 2:
            narrow.append(group_label(other))
            continue
        best = np.array([g.best_lr for g in usable])
        law = loglog_ols(widths, best, level=level)
        k, se, ols_ci = law.exponent, law.se, law.ci
        if np.unique(best).size == 1:  # k = 0 exactly, not OLS round-off of 1e-15
            k, se, ols_ci = 0.0, None, (None, None)
        grid = grid_interval(widths, [grid_span(g) for g in usable])
        ci = _hull(ols_ci, grid, k)
        resolved = _resolved(ci)
        if not resolved:
            notes.append(
                f"{group_label(other)}: LR transfer exponent k = {k:.3g} over "
                f"{len(usable)} widths is not resolved: k in [{_end(ci[0], '-')}, "
                f"{_end(ci[1], '')}] (each best LR known to half a grid step; one at the edge "
                "of its LR grid leaves its side open) cannot tell k = 0 (the LR transfers) "
                "from k = -1; sweep more widths or a finer LR grid"
            )
        fit = TransferFit(dict(other), k, law.coef, se, ci, len(usable), grid, resolved)
        fits.append(fit)
    if narrow:
        # One note, not one per combination: an isoFLOP grid gives each width its own token
        # count, so a 10,000-run sweep had 100 such combinations (100 lines of fit's output).
        which = (
            str(narrow[0])
            if len(narrow) == 1
            else f"{len(narrow)} combinations ({narrow[0]} … {narrow[-1]})"
        )
        notes.append(f"{which}: fewer than 2 widths with a best LR; no transfer fit")
    return tuple(fits)


def _resolved(ci: tuple[float | None, float | None]) -> bool:
    """Bounded, and not holding both k = 0 and k = −1."""
    low, high = ci
    if low is None or high is None:
        return False
    return not (low <= -1.0 <= high and low <= 0.0 <= high)


def _end(value: float | None, sign: str) -> str:
    return f"{sign}∞" if value is None else f"{value:.3g}"


def grid_span(group: ScoredGroup) -> tuple[float, float]:
    """(ln lo, ln hi): where the group's optimal LR can lie, given its best grid LR: up to the
    midpoint in ln η with each neighbouring LR of its grid, unbounded (∓inf) past an edge."""
    lrs = np.log(np.array(sorted(lr for lr, _ in group.curve)))
    x = math.log(float(group.best_lr))  # type: ignore[arg-type]
    below, above = lrs[lrs < x - 1e-12], lrs[lrs > x + 1e-12]
    lo = (x + below[-1]) / 2 if below.size else -math.inf
    hi = (x + above[0]) / 2 if above.size else math.inf
    return lo, hi


def grid_interval(
    widths: np.ndarray, spans: Sequence[tuple[float, float]]
) -> tuple[float | None, float | None]:
    """The range of OLS slopes of ln η* on ln width when each ln η* lies anywhere in its span.

    Example (2 widths, the same best LR on a 10× grid: each optimum within √10 of it):
        >>> half = math.log(10) / 2
        >>> [round(v, 2) for v in grid_interval(np.array([64, 128]), [(-half, half)] * 2)]
        [-3.32, 3.32]
    """
    x = np.log(widths) - np.log(widths).mean()
    c = x / np.sum(x * x)  # the OLS slope is sum(c_i * y_i)
    lo_end = np.array([s[0] for s in spans])
    hi_end = np.array([s[1] for s in spans])
    with np.errstate(invalid="ignore"):  # 0·inf: a width with no weight in the slope
        low = float(np.sum(np.where(c == 0, 0.0, np.where(c > 0, c * lo_end, c * hi_end))))
        high = float(np.sum(np.where(c == 0, 0.0, np.where(c > 0, c * hi_end, c * lo_end))))
    return (low if math.isfinite(low) else None, high if math.isfinite(high) else None)


def _hull(
    ols: tuple[float | None, float | None], grid: tuple[float | None, float | None], k: float
) -> tuple[float | None, float | None]:
    """The smallest interval holding both (an open grid side stays open)."""
    low = None if grid[0] is None else min(v for v in (ols[0], grid[0], k) if v is not None)
    high = None if grid[1] is None else max(v for v in (ols[1], grid[1], k) if v is not None)
    return low, high
