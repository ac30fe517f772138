"""The critical batch size as a function of loss, from the loss curves of a batch-size sweep.

McCandlish et al. 2018 (§2.2) and Kaplan et al. 2020 (§5.1): to reach a loss L, training with
batch B (tokens per step) takes S steps and E = B·S tokens, and the trade-off between them is

    (S/S_min − 1)(E/E_min − 1) = 1,  i.e.  S(B) = S_min + E_min/B,

so the steps of the runs that reached L, against 1/B, give S_min (steps at an infinite batch)
and E_min (tokens at an infinitesimal one). The knee of that contour in the (steps, tokens)
plane is at B_crit(L) = E_min/S_min, where S = 2·S_min and E = 2·E_min. Kaplan et al. find
B_crit(L) = B*·L^(−1/α_B) (B* ≈ 2·10^8 tokens, α_B ≈ 0.21, their eq. 5.3).

After `scalesweep.fit.laws.batch.contours` has read S(B) per (group, batch size, loss level):
  1. `fit_level`: S_min and E_min per (group, level) by least squares on ln S (relative
     errors, as steps span decades), with asymptotic standard errors from scipy's
     `curve_fit`; B_crit's interval by the delta method on ln B_crit = ln E_min − ln S_min.
  2. `weighted_loglog`: the power law, a weighted least squares (statsmodels WLS) of ln B_crit
     on ln L over every used level of every group, each weighted by 1/var(ln B_crit): a level
     measured from a few noisy steps must not pull the line like a sharp one. B* is its
     coefficient, α_B = −1/slope.
  3. Intervals: a delete-one jackknife over the batch sizes in the law's levels (all runs of
     one batch size left out at a time, every level refitted); t with (those batch sizes − 1)
     dof: a batch size in no level of the law adds nothing to it. The levels are not
     independent (neighbouring levels read the same evaluations of the same runs), so the WLS
     interval, which takes them as independent, is too narrow; the runs of different batch
     sizes are independent (`benchmarks/batch_coverage.py` measures both). With too few batch
     sizes to leave one out, the WLS interval, with a note.
  4. Notes: the batch sizes whose fastest run's LR is at the edge of the LRs they tried
     (`contours.lr_edge_notes`), as the Step Law fit notes its edge cells.

Levels: `n_levels` log-spaced losses between the lowest any run reached and the highest of any
run's first logged point; then again over the range where pass 1 found knees inside the batch
sizes (the knee moves fast with L, so most of a wide range says nothing). A level needs
`MIN_BATCH_SIZES` batch sizes that reached it (two parameters, and a residual to judge them
by); a level whose knee lies outside those batch sizes is not used: the contour was not seen on
both sides of its knee.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.laws.batch.contours import (
    curve_points,
    default_group_by,
    loss_levels,
    lr_edge_notes,
    reach_table,
)
from scalesweep.fit.numerics.regression import LogLogFit, t_quantile, weighted_loglog
from scalesweep.fit.numerics.resampling import jackknife_cov
from scalesweep.fit.runs import finite_or_none

KIND = "critical-batch"
MIN_BATCH_SIZES = 3
N_LEVELS = 20
MAX_LOG_VAR = 100.0
"""A variance of ln B_crit above this (a factor e^10 per standard error) is no interval."""


@dataclass(frozen=True)
class LevelFit:
    """One loss level of one group: the contour S(B), its knee and B_crit."""

    group: dict[str, Any]
    """Group column -> value (e.g. {"params_nonembed": 3.1e6}); {} without groups."""
    loss: float
    """The loss level L."""
    batch: tuple[float, ...]
    """Batch sizes (tokens per step) that reached L."""
    steps: tuple[float, ...]
    """S(B): the fewest steps to reach L at each batch size."""
    s_min: float | None = None
    """S_min: steps to reach L with an infinite batch."""
    e_min: float | None = None
    """E_min: tokens to reach L with an infinitesimal batch."""
    b_crit: float | None = None
    """B_crit(L) = E_min/S_min, in tokens."""
    b_crit_ci: tuple[float | None, float | None] = (None, None)
    """Its confidence interval (delta method on ln B_crit, t quantile)."""
    se_log: float | None = None
    """Standard error of ln B_crit (the law weights the level by its inverse square)."""
    used: bool = False
    """Whether it enters the power law."""
    reason: str = ""
    """Why it does not (empty when used)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": {k: finite_or_none(v) for k, v in self.group.items()},
            "loss": self.loss,
            "batch": list(self.batch),
            "steps": list(self.steps),
            "s_min": finite_or_none(self.s_min),
            "e_min": finite_or_none(self.e_min),
            "b_crit": finite_or_none(self.b_crit),
            "b_crit_ci": [finite_or_none(v) for v in self.b_crit_ci],
            "se_log": finite_or_none(self.se_log),
            "used": self.used,
            "reason": self.reason,
        }


def _contour(batch: np.ndarray, log_s_min: float, log_e_min: float) -> np.ndarray:
    """ln S(B) = ln(S_min + E_min/B)."""
    return np.logaddexp(log_s_min, log_e_min - np.log(batch))


def fit_level(
    group: Mapping[str, Any], loss: float, batch: np.ndarray, steps: np.ndarray, level: float
) -> LevelFit:
    """S_min, E_min and B_crit for one contour (see the module docstring).

    Example (S_min = 100 steps, E_min = 1e6 tokens, so the knee is at 1e4 tokens per step;
    steps off by ±1%):
        >>> batch = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
        >>> steps = (100 + 1e6 / batch) * np.array([1.01, 0.99, 1.0, 1.01, 0.99])
        >>> fit = fit_level({}, 3.0, batch, steps, 0.95)
        >>> f"{fit.b_crit:.3g} in [{fit.b_crit_ci[0]:.3g}, {fit.b_crit_ci[1]:.3g}]", fit.used
        ('1.01e+04 in [9.55e+03, 1.06e+04]', True)
    """
    from scipy.optimize import curve_fit

    base = LevelFit(dict(group), loss, tuple(map(float, batch)), tuple(map(float, steps)))
    if len(batch) < MIN_BATCH_SIZES:
        return replace(
            base, reason=f"reached by {len(batch)} batch size(s), fewer than {MIN_BATCH_SIZES}"
        )
    start = [math.log(0.9 * steps.min()), math.log(0.9 * (steps * batch).min())]
    try:
        with warnings.catch_warnings():  # a singular covariance is reported as no interval
            warnings.simplefilter("ignore")
            (log_s, log_e), cov = curve_fit(_contour, batch, np.log(steps), p0=start, maxfev=5000)
    except (RuntimeError, ValueError) as error:
        return replace(base, reason=f"the contour fit failed ({error})")
    b_crit = math.exp(log_e - log_s)
    with np.errstate(invalid="ignore"):  # inf - inf: no covariance
        var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    ci: tuple[float | None, float | None] = (None, None)
    se = math.sqrt(var) if np.isfinite(var) and 0 < var < MAX_LOG_VAR else None
    if se is not None:
        half = t_quantile(level, len(batch) - 2) * se
        ci = (b_crit * math.exp(-half), b_crit * math.exp(half))
    fitted = replace(
        base, s_min=math.exp(log_s), e_min=math.exp(log_e), b_crit=b_crit, b_crit_ci=ci, se_log=se
    )
    if not batch.min() <= b_crit <= batch.max():
        return replace(
            fitted,
            reason=f"knee B_crit={b_crit:.3g} outside the batch sizes "
            f"[{batch.min():.3g}, {batch.max():.3g}]",
        )
    if ci[0] is None:
        return replace(fitted, reason="no interval for B_crit (an exact or singular fit)")
    return replace(fitted, used=True)


@dataclass(frozen=True)
class CriticalBatchFit:
    """B_crit(L) = B*·L^(−1/α_B) over the used levels of every group."""

    b_star: float
    """B*: B_crit at L = 1, in tokens (an extrapolation: read it with its interval)."""
    b_star_ci: tuple[float, float]
    """Confidence interval of B* (t interval of ln B*)."""
    alpha_b: float
    """α_B = −1/slope of ln B_crit on ln L."""
    alpha_b_ci: tuple[float | None, float | None]
    """Its interval, mapped from the slope's (None when the slope's interval holds 0)."""
    law: LogLogFit
    """The WLS fit of ln B_crit on ln L (the point estimate; see `cov` for intervals)."""
    cov: tuple[tuple[float, float], tuple[float, float]]
    """Covariance of (ln B*, slope) behind every interval: the jackknife's, or the WLS one."""
    dof: int
    """Degrees of freedom of the t quantile of every interval."""
    interval: str
    """How the intervals were made, in words."""
    levels: tuple[LevelFit, ...]
    """Every (group, level) fitted, used in the law or not (with the reason)."""
    group_by: tuple[str, ...]
    """The columns runs were grouped by."""
    n_runs: int
    """Completed runs with a curve."""
    batch_sizes: tuple[float, ...]
    """The batch sizes (tokens per step) of those runs."""
    level: float = 0.95
    """Confidence level of every interval."""
    notes: tuple[str, ...] = ()
    """Runs set aside, levels left out and why."""
    predictions: tuple[dict[str, Any], ...] = ()
    """B_crit, with its interval, at each requested loss."""
    replicates: tuple[tuple[float, float, float], ...] = ()
    """Jackknife replicates (batch size left out, ln B*, slope); () without the jackknife."""
    table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    """`reach_table` of the levels fitted: S(B) and E(B) per (group, batch, level)."""

    def b_crit(self, loss: Any) -> Any:
        """B_crit at `loss` from the power law, in tokens."""
        return self.law.predict(loss)

    def band(self, loss: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise confidence interval of the law at `loss`."""
        lx = np.log(np.asarray(loss, float))
        (c00, c01), (_, c11) = self.cov
        half = t_quantile(self.level, self.dof) * np.sqrt(c00 + 2 * lx * c01 + lx * lx * c11)
        centre = np.log(self.b_crit(loss))
        return np.exp(centre - half), np.exp(centre + half)

    def predict(self, loss: float) -> dict[str, Any]:
        """B_crit at `loss` with its confidence interval."""
        low, high = self.band(np.array([loss]))
        return {
            "loss": loss,
            "b_crit": float(self.b_crit(loss)),
            "ci": [float(low[0]), float(high[0])],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "b_star": finite_or_none(self.b_star),
            "b_star_ci": [finite_or_none(v) for v in self.b_star_ci],
            "alpha_b": finite_or_none(self.alpha_b),
            "alpha_b_ci": [finite_or_none(v) for v in self.alpha_b_ci],
            "interval": self.interval,
            "r2": finite_or_none(self.law.r2),
            "n_levels_used": sum(lv.used for lv in self.levels),
            "levels": [lv.to_dict() for lv in self.levels],
            "group_by": list(self.group_by),
            "n_runs": self.n_runs,
            "batch_sizes": list(self.batch_sizes),
            "level": self.level,
            "predictions": list(self.predictions),
            "notes": list(self.notes),
        }


def _level_notes(levels: Sequence[LevelFit]) -> list[str]:
    """Per group: the levels reached by too few batch sizes, and the others not used, why."""
    notes = []
    for key in dict.fromkeys(tuple(lv.group.items()) for lv in levels):
        mine = [lv for lv in levels if tuple(lv.group.items()) == key]
        name = ", ".join(f"{k}={v:g}" for k, v in key) or "all runs"
        few = [f"{lv.loss:.4g}" for lv in mine if len(lv.batch) < MIN_BATCH_SIZES]
        if few:
            notes.append(
                f"{KIND} {name}: {len(few)} of {len(mine)} loss levels reached by fewer than "
                f"{MIN_BATCH_SIZES} batch sizes, not fitted: L = {', '.join(few)}"
            )
        other = [lv for lv in mine if not lv.used and len(lv.batch) >= MIN_BATCH_SIZES]
        if other:
            why = "; ".join(f"L={lv.loss:.4g}: {lv.reason}" for lv in other)
            notes.append(f"{KIND} {name}: {len(other)} level(s) not in the law: {why}")
    return notes


def _law(levels: Sequence[LevelFit], level: float) -> LogLogFit:
    """The WLS power law over the used levels."""
    used = [lv for lv in levels if lv.used]
    if len(used) < 3:
        raise UserError(
            f"{KIND} needs at least 3 loss levels with a knee inside the batch sizes tried, but "
            f"got {len(used)} of {len(levels)}; sweep more batch sizes around the knee, or "
            f"more runs per batch size (see the notes of `--kind {KIND}`)"
        )
    columns = (
        np.array([getattr(lv, k) for lv in used], float) for k in ("loss", "b_crit", "se_log")
    )
    return weighted_loglog(*columns, level=level)


def _fit_table(table: pd.DataFrame, groups: tuple[str, ...], level: float) -> list[LevelFit]:
    """A `fit_level` per (group, level) of a `reach_table`."""
    fits = []
    for key, rows in table.groupby([*groups, "level"], sort=True):
        values = key if isinstance(key, tuple) else (key,)
        group = dict(zip(groups, values[:-1], strict=True))
        rows = rows.sort_values("batch")
        fits.append(
            fit_level(
                group,
                float(values[-1]),
                rows["batch"].to_numpy(float),
                rows["steps"].to_numpy(float),
                level,
            )
        )
    return fits


def _two_passes(
    points: pd.DataFrame, groups: tuple[str, ...], n_levels: int, level: float
) -> tuple[pd.DataFrame, list[LevelFit]]:
    """Pass 1 over the whole range of loss finds where the knees lie inside the batch sizes;
    pass 2 spreads the levels over that range (one pass-1 spacing beyond it each side)."""
    levels = loss_levels(points, n_levels)
    table = reach_table(points, levels, groups)
    fits = _fit_table(table, groups, level)
    inside = [lv.loss for lv in fits if lv.used]
    if not inside:
        return table, fits
    ratio = levels[1] / levels[0]
    low, high = max(min(inside) / ratio, levels[0]), min(max(inside) * ratio, levels[-1])
    table = reach_table(points, np.geomspace(low, high, n_levels), groups)
    return table, _fit_table(table, groups, level)


def _jackknife(
    table: pd.DataFrame, groups: tuple[str, ...], level: float, batches: Sequence[float]
) -> tuple[np.ndarray | None, str]:
    """Rows (batch size left out, ln B*, slope), one per batch size of `batches` (those in a
    level the law uses: leaving out any other changes nothing); None and the reason when a
    replicate cannot be fitted."""
    if len(batches) <= MIN_BATCH_SIZES:
        return None, f"{len(batches)} batch sizes: too few to leave one out"
    rows = []
    for batch in batches:
        try:
            law = _law(_fit_table(table[table["batch"] != batch], groups, level), level)
        except UserError:
            return None, f"without the batch size {batch:g}, fewer than 3 levels have a knee"
        rows.append((batch, math.log(law.coef), law.exponent))
    return np.array(rows), ""


def _unused(batches: Sequence[float], counted: Sequence[float]) -> tuple[str, ...]:
    """A note naming the batch sizes in no level the law uses (not counted in its intervals)."""
    unused = [f"{b:g}" for b in batches if b not in counted]
    if not unused:
        return ()
    return (
        f"{KIND}: batch size(s) {', '.join(unused)} (tokens per step) reached no loss level the "
        f"law uses: not in the law, its degrees of freedom or its jackknife",
    )


def fit_critical_batch(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None,
    *,
    group_by: Sequence[str] | None = None,
    n_levels: int = N_LEVELS,
    level: float = 0.95,
) -> CriticalBatchFit:
    """B_crit per (group, loss level) and the power law B_crit(L) (see the module docstring).

    `runs`: one row per trial (`run_id`, `status`, the batch: `tokens` and `steps`, or
    `train.batch_size` and `model.seq_len`, and the group columns); `curves`: `run_id, step,
    val/loss` per logged step. `group_by` None: the model size (`default_group_by`).
    """
    groups = tuple(default_group_by(list(runs.columns)) if group_by is None else group_by)
    points, notes = curve_points(runs, curves, groups, kind=KIND)
    batches = tuple(sorted(points["batch"].unique()))
    if len(batches) < MIN_BATCH_SIZES:
        raise UserError(
            f"{KIND} needs runs at {MIN_BATCH_SIZES} or more batch sizes, but got "
            f"{len(batches)} ({', '.join(f'{b:g}' for b in batches)} tokens per step)"
        )
    table, fits = _two_passes(points, groups, n_levels, level)
    law = _law(fits, level)
    counted = sorted({b for lv in fits if lv.used for b in lv.batch})  # the law's batch sizes
    notes = (*notes, *lr_edge_notes(runs, points, table, groups, KIND), *_unused(batches, counted))
    replicates, why = _jackknife(table, groups, level, counted)
    if replicates is not None:
        (c00, c01), (c10, c11) = jackknife_cov(replicates[:, 1:])
        dof, interval = len(counted) - 1, f"jackknife over {len(counted)} batch sizes"
    else:
        (c00, c01), (c10, c11) = law.cov or ((math.nan,) * 2,) * 2
        dof, interval = law.n_points - 2, "WLS, levels taken as independent (too narrow)"
        notes = (*notes, f"{KIND}: no jackknife ({why}); intervals from the WLS alone")
    t = t_quantile(level, dof)
    half_b, half_p = t * math.sqrt(c00), t * math.sqrt(c11)
    lo, hi = law.exponent - half_p, law.exponent + half_p
    return CriticalBatchFit(
        b_star=law.coef,
        b_star_ci=(law.coef * math.exp(-half_b), law.coef * math.exp(half_b)),
        alpha_b=-1 / law.exponent,
        alpha_b_ci=(-1 / lo, -1 / hi) if hi < 0 else (None, None),
        law=law,
        cov=((c00, c01), (c10, c11)),
        dof=dof,
        interval=interval,
        levels=tuple(fits),
        group_by=groups,
        n_runs=points["run_id"].nunique(),
        batch_sizes=batches,
        level=level,
        notes=(*notes, *_level_notes(fits)),
        replicates=() if replicates is None else tuple(map(tuple, replicates)),
        table=table,
    )
