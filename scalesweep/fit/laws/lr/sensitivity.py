"""LR sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
training instabilities", Section 2.3) and LR transfer across widths.

For each group of runs that differ only in the learning rate (and the seed):

    sensitivity = E_{η ∈ [a, b]} [ min(ℓ(η), ℓ0) − ℓ* ],   ℓ* = min_{η ∈ [a, b]} ℓ(η)

where ℓ0 is the loss at initialization, so a diverged run scores ℓ0, the worst a run can do,
and a run that ends above ℓ0 is capped there. [a, b] defaults to [3e-4, 3e-1], the range
Wortsman et al. sweep; ℓ* is the best loss *inside* it (an LR outside the range does not move
the baseline). Several runs at one LR (seeds) are averaged after capping.

The expectation is taken over the part of [a, b] the group's LRs span, `scored_range`
[η_min, η_max] (the smallest and largest LR inside [a, b]), never beyond it: no run says what
the loss is at an LR the sweep did not try, so a grid of 3e-3 … 3e-1 is scored over
[3e-3, 3e-1], not over Wortsman's [3e-4, 3e-1], and the answer says so. How:
- `grid`: the LRs are evenly spaced in log η; the score is their plain mean, Wortsman et al.'s
  computation.
- `sampled` (e.g. `search.algorithm: tpe`, which samples mostly near the optimum): the capped
  loss is interpolated linearly in log η between the sampled LRs and integrated over log η
  across the scored range. The plain mean over such samples would underestimate the
  expectation. Each group reports the fraction of log [a, b] its LRs span and the largest gap;
  a note says when the score needs a grid to be trusted.
A group with fewer than 2 LRs inside [a, b] has no score; groups scored over different ranges
are named in a note (their scores are not comparable).

Which runs: only finished ones. Completed runs with a finite loss score min(ℓ, ℓ0); runs with
status `diverged` score ℓ0. Failed runs (crashes say nothing about the LR), still-running runs
and runs with a non-finite loss that are not marked diverged are left out, counted per group
and named in the notes.

Groups: by default every run parameter (a dotted `section.key` column) that varies across the
runs, other than the LR, the seed and branch lineage: pooling what the sweep varied
(parameterization, weight decay, depth, ...) would average different LR curves. `group_by`
overrides.

Transfer: the best LR against width, LR_opt ∝ width^k (statsmodels OLS in log-log, with CI),
once per combination of the group columns that are not fixed by the width; k ≈ 0 means the
LR transfers, as muP promises, and k ≈ −1 is what standard parameterization gives with Adam.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.format import group_label
from scalesweep.fit.laws.lr.groups import (
    UNFINISHED,
    coverage,
    default_group_by,
    group_key,
    run_states,
    width_of,
)
from scalesweep.fit.laws.lr.transfer import TransferFit, transfer_fits
from scalesweep.fit.runs import finite_or_none, name_runs

DEFAULT_LR_RANGE = (3e-4, 3e-1)


@dataclass(frozen=True)
class GroupSensitivity:
    """Sensitivity and best LR of one group."""

    key: dict[str, Any]
    """Group column -> value."""
    sensitivity: float | None
    """Wortsman's score (None when no LR of the group lies in the range)."""
    best_lr: float | None
    """LR with the lowest loss among all the group's LRs (None when every run diverged)."""
    best_loss: float
    """Lowest capped loss among all the group's LRs."""
    ell_star: float | None
    """ℓ*: the lowest capped loss among the LRs inside [a, b] (the score's baseline)."""
    init_loss: float
    """ℓ0 used for this group."""
    n_lr: int
    """Distinct LRs inside the range."""
    n_runs: int
    """Runs in the group, every status included."""
    n_diverged: int
    """Runs marked diverged (scored as ℓ0)."""
    n_failed: int
    """Failed runs (left out)."""
    n_unfinished: int = 0
    """Runs left out because they had not finished (running) or had a non-finite loss
    without being marked diverged."""
    coverage: str = "grid"
    """`grid` (plain mean, Wortsman's computation) or `sampled` (integral over log η)."""
    scored_range: tuple[float, float] | None = None
    """[η_min, η_max]: the smallest and largest LR inside [a, b], the range the score is an
    expectation over (None without a score)."""
    covered: float = 0.0
    """Fraction of log [a, b] between the smallest and largest LR inside the range."""
    max_gap: float | None = None
    """Largest ratio between neighbouring LRs inside the range (None with fewer than 2)."""
    curve: tuple[tuple[float, float], ...] = ()
    """(lr, capped mean loss) per LR, for plots."""

    def to_dict(self) -> dict[str, Any]:
        keys = (
            "sensitivity",
            "best_lr",
            "best_loss",
            "ell_star",
            "n_lr",
            "n_runs",
            "n_diverged",
            "n_failed",
            "n_unfinished",
            "coverage",
            "covered",
            "max_gap",
        )
        return {
            **{k: finite_or_none(v) for k, v in self.key.items()},
            **{k: finite_or_none(getattr(self, k)) for k in keys},
            "scored_range": list(self.scored_range) if self.scored_range else None,
            m.INIT_LOSS: finite_or_none(self.init_loss),
        }


@dataclass(frozen=True)
class LrSensitivityFit:
    """Per-group scores and the LR transfer fits."""

    groups: tuple[GroupSensitivity, ...]
    """One entry per group."""
    transfer: tuple[TransferFit, ...]
    """LR_opt against width; empty without a width column or with fewer than 2 widths."""
    group_by: tuple[str, ...]
    """Group columns."""
    group_by_source: str
    """Why these columns: `--group-by`, or the run parameters that vary."""
    width_column: str | None
    """The group column read as width."""
    lr_range: tuple[float, float]
    """[a, b], as asked."""
    scored_range: tuple[float, float] | None
    """The range every group's score is taken over, when they share one (see the module
    docstring); None when the groups' ranges differ (each group has its own)."""
    level: float
    """Confidence level of the transfer intervals."""
    notes: tuple[str, ...] = field(default=())
    """What was assumed or left out."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "transfer_exponent": [t.to_dict() for t in self.transfer],
            "group_by": list(self.group_by),
            "group_by_source": self.group_by_source,
            "width_column": self.width_column,
            "lr_range": list(self.lr_range),
            "scored_range": list(self.scored_range) if self.scored_range else None,
            "level": self.level,
            "notes": list(self.notes),
        }


def _init_losses(frame: pd.DataFrame, init_loss: float | None) -> pd.Series:
    if init_loss is not None:
        if not (math.isfinite(init_loss) and init_loss > 0):
            raise UserError(f"`init_loss > 0` must hold, but got ({init_loss=})")
        return pd.Series(init_loss, index=frame.index, dtype=float)
    if m.INIT_LOSS not in frame.columns:
        raise UserError(
            "lr-sensitivity needs ℓ0, the loss at initialization: a column `init_loss` "
            "(map one with --col init_loss=SOURCE) or a constant with --init-loss VALUE "
            "(e.g. ln(vocab size))"
        )
    return pd.to_numeric(frame[m.INIT_LOSS], errors="coerce")


def _checked(
    runs: pd.DataFrame, group_by: Sequence[str] | None, lr_range: tuple[float, float]
) -> tuple[pd.DataFrame, tuple[str, ...], str]:
    """The table with numeric `lr`, the group columns and why they were chosen."""
    lo, hi = lr_range
    if not (0 < lo < hi and math.isfinite(hi)):
        raise UserError(f"`0 < lo < hi` must hold for --lr-range, but got ({lo=}, {hi=})")
    for column in ("lr", "loss"):
        if column not in runs.columns:
            raise UserError(
                f"lr-sensitivity needs a column `{column}`, but the table has columns "
                f"{sorted(map(str, runs.columns))}; map one with --col {column}=SOURCE"
            )
    if group_by is None:
        groups, source = default_group_by(runs)
    else:
        groups, source = tuple(group_by), "--group-by"
    missing = [c for c in groups if c not in runs.columns]
    if missing:
        raise UserError(
            f"--group-by: column(s) {missing} are not in the table; its columns are "
            f"{sorted(map(str, runs.columns))}"
        )
    return runs.reset_index(drop=True), groups, source


def _score(
    lrs: np.ndarray, capped: np.ndarray, lr_range: tuple[float, float]
) -> tuple[float | None, float | None, pd.Series, dict[str, Any]]:
    """(sensitivity, ℓ*, capped mean per LR, coverage) of one group's scored runs: the
    expectation over the scored range (see the module docstring)."""
    per_lr = pd.Series(capped, index=lrs).groupby(level=0).mean().sort_index()
    lo, hi = lr_range
    inside = per_lr[(per_lr.index >= lo * (1 - 1e-9)) & (per_lr.index <= hi * (1 + 1e-9))]
    cover = coverage(inside.index.to_numpy(float), lr_range)
    if inside.empty:
        return None, None, per_lr, cover
    ell_star = float(inside.min())
    if len(inside) < 2:  # one LR spans no range: nothing to take an expectation over
        return None, ell_star, per_lr, {**cover, "scored_range": None}
    if cover["coverage"] == "grid":
        return float((inside - ell_star).mean()), ell_star, per_lr, cover
    x, values = np.log(inside.index.to_numpy(float)), inside.to_numpy(float)
    integral = float(np.sum(np.diff(x) * (values[1:] + values[:-1]) / 2))
    return integral / (x[-1] - x[0]) - ell_star, ell_star, per_lr, cover


def _group(
    key: dict[str, Any],
    rows: pd.DataFrame,
    state: pd.Series,
    ell0: pd.Series,
    lr_range: tuple[float, float],
    notes: list[str],
) -> GroupSensitivity | None:
    """Score one group (see the module docstring); None when it has no finished run."""
    scored = state.isin((m.COMPLETED, m.DIVERGED))
    if not scored.any():
        notes.append(
            f"group {group_label(key)}: no finished run ("
            + ", ".join(f"{n} {status}" for status, n in rows[m.STATUS].value_counts().items())
            + ")"
            if m.STATUS in rows.columns
            else f"group {group_label(key)}: no finished run"
        )
        return None
    finite0 = ell0[scored][np.isfinite(ell0[scored])]
    if finite0.empty:
        raise UserError(
            f"lr-sensitivity: column `init_loss` has no finite value in group {group_label(key)}; "
            f"pass --init-loss VALUE"
        )
    l0 = float(finite0.median())  # ℓ0 does not depend on the LR: one value per group
    loss = pd.to_numeric(rows["loss"], errors="coerce").to_numpy(float)
    diverged = (state == m.DIVERGED).to_numpy()[scored.to_numpy()]
    capped = np.where(diverged, l0, np.minimum(loss[scored.to_numpy()], l0))
    lrs = pd.to_numeric(rows["lr"][scored]).to_numpy(float)
    sensitivity, ell_star, per_lr, cover = _score(lrs, capped, lr_range)
    if sensitivity is None:
        inside = "no LR" if ell_star is None else "a single LR"
        span = f"[{lr_range[0]:g}, {lr_range[1]:g}]"
        notes.append(f"group {group_label(key)}: {inside} inside {span}; no score")
    completed = per_lr[per_lr.index.isin(lrs[~diverged])]
    return GroupSensitivity(
        key=key,
        sensitivity=sensitivity,
        best_lr=float(completed.idxmin()) if len(completed) else None,
        best_loss=float(per_lr.min()),
        ell_star=ell_star,
        init_loss=l0,
        n_lr=cover["n_lr"],
        n_runs=len(rows),
        n_diverged=int((state == m.DIVERGED).sum()),
        n_failed=int((state == m.FAILED).sum()),
        n_unfinished=int((state == UNFINISHED).sum()),
        coverage=cover["coverage"],
        scored_range=cover["scored_range"],
        covered=cover["covered"],
        max_gap=cover["max_gap"],
        curve=tuple((float(k), float(v)) for k, v in per_lr.items()),
    )


def fit_lr_sensitivity(
    runs: pd.DataFrame,
    *,
    group_by: Sequence[str] | None = None,
    lr_range: tuple[float, float] = DEFAULT_LR_RANGE,
    init_loss: float | None = None,
    level: float = 0.95,
) -> LrSensitivityFit:
    """Wortsman LR sensitivity per group from columns lr, loss, status (optional), init_loss
    (or the constant `init_loss`) and the group columns.

    Example:
        >>> import pandas as pd
        >>> runs = pd.DataFrame({"lr": [1e-3, 1e-2, 1e-1], "loss": [3.0, 2.5, float("nan")],
        ...                      m.INIT_LOSS: 5.0, "status": ["completed"] * 2 + ["diverged"]})
        >>> fit_lr_sensitivity(runs, group_by=()).groups[0].sensitivity  # mean(.5, 0, 2.5)
        1.0
    """
    frame, groups, source = _checked(runs, group_by, lr_range)
    state = run_states(frame)
    ell0 = _init_losses(frame, init_loss)
    notes: list[str] = []
    aside = frame[state.isin((m.FAILED, UNFINISHED))]
    if len(aside):
        notes.append(
            f"lr-sensitivity: {len(aside)} run(s) not scored (failed, still running, "
            f"or a non-finite loss not marked diverged): {name_runs(aside)}"
        )
    keys = list(groups) if groups else pd.Series(0, index=frame.index)
    results = []
    for value, rows in frame.groupby(keys, dropna=False, sort=True):
        key = group_key(groups, value)
        result = _group(key, rows, state[rows.index], ell0[rows.index], lr_range, notes)
        if result is not None:
            results.append(result)
    if results and all(len(g.curve) < 2 for g in results):
        one = "; the sweep ran one learning rate" if frame["lr"].nunique() < 2 else ""
        raise UserError(
            f"LR sensitivity needs runs at 2 or more LRs per group, but each of the "
            f"{len(results)} group(s) holds a single LR (group columns: {list(groups)}){one}"
        )
    notes += _coverage_notes(results, lr_range) + _single_lr_notes(results, groups)
    scored, range_notes = _scored_range(results, lr_range)
    width = width_of(groups)
    transfer = transfer_fits(frame, results, width, groups, level=level, notes=notes)
    return LrSensitivityFit(
        groups=tuple(results),
        transfer=transfer,
        group_by=groups,
        group_by_source=source,
        width_column=width,
        lr_range=(float(lr_range[0]), float(lr_range[1])),
        scored_range=scored,
        level=level,
        notes=tuple(notes + range_notes),
    )


def _scored_range(
    results: list[GroupSensitivity], lr_range: tuple[float, float]
) -> tuple[tuple[float, float] | None, list[str]]:
    """(the range shared by every scored group or None, notes): say when the LRs leave part
    of [a, b] unscored, and when groups were scored over different ranges."""
    ranges = sorted({g.scored_range for g in results if g.scored_range is not None})
    asked = f"[{lr_range[0]:g}, {lr_range[1]:g}]"
    if len(ranges) > 1:
        listed = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in ranges)
        return None, [
            f"lr-sensitivity: the groups' LRs span different parts of {asked} ({listed}); "
            f"each score is over its group's range, so scores over different ranges are not "
            f"comparable"
        ]
    if not ranges:
        return None, []
    (lo, hi), (a, b) = ranges[0], lr_range
    if math.isclose(lo, a, rel_tol=1e-6) and math.isclose(hi, b, rel_tol=1e-6):
        return ranges[0], []
    return ranges[0], [
        f"lr-sensitivity: scored over [{lo:g}, {hi:g}], the part of {asked} the LRs span; "
        f"no run was trained at an LR in the rest of it"
    ]


def _coverage_notes(results: list[GroupSensitivity], lr_range: tuple[float, float]) -> list[str]:
    """Say plainly which scores rest on interpolation across a sparsely sampled range."""
    poor = [
        g
        for g in results
        if g.coverage == "sampled" and g.sensitivity is not None and (g.max_gap or 0) > 10
    ]
    if not poor:
        return []
    worst = max(poor, key=lambda g: g.max_gap or 0)
    return [
        f"lr-sensitivity: {len(poor)} group(s) have sampled LRs with gaps wider than ×10 "
        f"(e.g. {group_label(worst.key)}: largest gap ×{worst.max_gap:.3g}); their scores "
        f"interpolate linearly in log η across the gaps: sweep a grid for Wortsman's score"
    ]


def _single_lr_notes(results: list[GroupSensitivity], groups: tuple[str, ...]) -> list[str]:
    single = [g for g in results if len(g.curve) < 2]
    if not single or not results:
        return []
    return [
        f"lr-sensitivity: {len(single)} of {len(results)} groups hold a single LR; a group "
        f"column may be sampled per run (group columns: {list(groups)}); choose --group-by"
    ]
