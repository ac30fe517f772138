"""LR sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
training instabilities", Section 2.3) and LR transfer across widths.

For each group (e.g. width × qk_norm × z_loss):

    sensitivity = mean over η in the grid ∩ [a, b] of  min(ℓ(η), ℓ0) − min_η ℓ(η)

where ℓ0 is the loss at initialization, so a diverged run (or a NaN loss) scores ℓ0, the worst
a run can do, and a run that ends above ℓ0 is capped there. [a, b] defaults to
[3e-4, 3e-1], the range Wortsman et al. sweep. min_η ℓ(η) is over every LR of the group. Several
runs at one LR (seeds) are averaged after capping. Failed runs (crashes, not divergence) say
nothing about the LR: they are counted (`n_failed`) and left out.

Transfer: the best LR against width, LR_opt ∝ width^k (statsmodels OLS in log-log, with CI),
once per combination of the other group columns; k ≈ 0 means the LR transfers, as muP promises.
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
from scalesweep.fit.regression import loglog_ols
from scalesweep.fit.runs import finite_or_none

DEFAULT_LR_RANGE = (3e-4, 3e-1)
WIDTH_COLUMNS = ("model.width", "width")
INTERVENTION_COLUMNS = ("model.qk_norm", "model.z_loss")


@dataclass(frozen=True)
class GroupSensitivity:
    """Sensitivity and best LR of one group."""

    key: dict[str, Any]
    """Group column -> value."""
    sensitivity: float | None
    """Wortsman's score (None when no LR of the group lies in the range)."""
    best_lr: float | None
    """LR with the lowest loss (None when every run diverged)."""
    best_loss: float
    """min_η ℓ(η) (ℓ0 when every run diverged)."""
    init_loss: float
    """ℓ0 used for this group."""
    n_lr: int
    """Distinct LRs inside the range (the points averaged)."""
    n_runs: int
    """Runs in the group, failed ones included."""
    n_diverged: int
    """Runs that diverged or ended with a non-finite loss (scored as ℓ0)."""
    n_failed: int
    """Failed runs (left out)."""
    curve: tuple[tuple[float, float], ...] = ()
    """(lr, capped mean loss) per LR, for plots."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: finite_or_none(v) for k, v in self.key.items()},
            "sensitivity": finite_or_none(self.sensitivity),
            "best_lr": finite_or_none(self.best_lr),
            "best_loss": finite_or_none(self.best_loss),
            m.INIT_LOSS: finite_or_none(self.init_loss),
            "n_lr": self.n_lr,
            "n_runs": self.n_runs,
            "n_diverged": self.n_diverged,
            "n_failed": self.n_failed,
        }


@dataclass(frozen=True)
class TransferFit:
    """LR_opt = c·width^k for one combination of the other group columns."""

    key: dict[str, Any]
    """The non-width group columns."""
    k: float
    """Exponent (0: the LR transfers across widths)."""
    coef: float
    """c."""
    se: float | None
    """Standard error of k (None with 2 widths)."""
    ci: tuple[float | None, float | None]
    """Confidence interval of k."""
    n_widths: int
    """Widths fitted."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: finite_or_none(v) for k, v in self.key.items()},
            "k": finite_or_none(self.k),
            "coef": finite_or_none(self.coef),
            "se": finite_or_none(self.se),
            "ci": [finite_or_none(x) for x in self.ci],
            "n_widths": self.n_widths,
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
    width_column: str | None
    """The group column read as width."""
    lr_range: tuple[float, float]
    """[a, b]."""
    level: float
    """Confidence level of the transfer intervals."""
    notes: tuple[str, ...] = field(default=())
    """What was assumed or left out."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "transfer_exponent": [t.to_dict() for t in self.transfer],
            "group_by": list(self.group_by),
            "width_column": self.width_column,
            "lr_range": list(self.lr_range),
            "level": self.level,
            "notes": list(self.notes),
        }


def default_group_by(columns: Sequence[str]) -> tuple[str, ...]:
    """Whichever of `model.width` (or `width`), `model.qk_norm`, `model.z_loss` exist."""
    width = next((c for c in WIDTH_COLUMNS if c in columns), None)
    return tuple(c for c in (width, *INTERVENTION_COLUMNS) if c is not None and c in columns)


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
    lo, hi = lr_range
    if not (0 < lo < hi and math.isfinite(hi)):
        raise UserError(f"`0 < lo < hi` must hold for --lr-range, but got ({lo=}, {hi=})")
    for column in ("lr", "loss"):
        if column not in runs.columns:
            raise UserError(
                f"lr-sensitivity needs a column `{column}`, but the table has columns "
                f"{sorted(map(str, runs.columns))}; map one with --col {column}=SOURCE"
            )
    groups = tuple(default_group_by(list(runs.columns)) if group_by is None else group_by)
    missing = [c for c in groups if c not in runs.columns]
    if missing:
        raise UserError(
            f"--group-by: column(s) {missing} are not in the table; its columns are "
            f"{sorted(map(str, runs.columns))}"
        )
    frame = runs.reset_index(drop=True)
    status = (
        frame[m.STATUS].astype(str)
        if m.STATUS in frame.columns
        else pd.Series(m.COMPLETED, index=frame.index)
    )
    failed = status == m.FAILED
    lr = pd.to_numeric(frame["lr"], errors="coerce")
    bad_lr = ~failed & ~(np.isfinite(lr) & (lr > 0))
    if bad_lr.any():
        index = frame.index[bad_lr][0]
        raise UserError(
            f"`lr > 0` must hold for every run, but got (lr={frame.at[index, 'lr']!r}) in row "
            f"{index}"
        )
    ell0 = _init_losses(frame, init_loss)
    loss = pd.to_numeric(frame["loss"], errors="coerce")
    diverged = ~failed & ((status == m.DIVERGED) | ~np.isfinite(loss))
    notes: list[str] = []
    if not groups:
        keys = pd.Series(0, index=frame.index)
        grouped = frame.groupby(keys)
    else:
        grouped = frame.groupby(list(groups), dropna=False, sort=True)
    results: list[GroupSensitivity] = []
    for value, rows in grouped:
        idx = rows.index
        key = dict(zip(groups, value if isinstance(value, tuple) else (value,), strict=False))
        key = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in key.items()}
        used = idx[~failed[idx]]
        # ℓ0 does not depend on the LR, so one value per group: the median of its runs'.
        finite0 = ell0[used][np.isfinite(ell0[used])]
        if used.size and finite0.empty:
            raise UserError(
                f"lr-sensitivity: column `init_loss` has no finite value in group {key}; "
                f"pass --init-loss VALUE"
            )
        if not used.size:
            notes.append(f"group {key}: every run failed; no score")
            continue
        l0 = float(finite0.median())
        capped = np.where(diverged[used], l0, np.minimum(loss[used].to_numpy(float), l0))
        per_lr = pd.Series(capped, index=lr[used].to_numpy(float)).groupby(level=0).mean()
        best_loss = float(per_lr.min())
        completed = lr[used][~diverged[used]]
        best_lr = float(per_lr.idxmin()) if len(completed) else None
        inside = per_lr[(per_lr.index >= lo * (1 - 1e-9)) & (per_lr.index <= hi * (1 + 1e-9))]
        sensitivity = float((inside - best_loss).mean()) if len(inside) else None
        if sensitivity is None:
            notes.append(f"group {key}: no LR inside [{lo:g}, {hi:g}]; no score")
        results.append(
            GroupSensitivity(
                key=key,
                sensitivity=sensitivity,
                best_lr=best_lr,
                best_loss=best_loss,
                init_loss=l0,
                n_lr=len(inside),
                n_runs=len(idx),
                n_diverged=int(diverged[idx].sum()),
                n_failed=int(failed[idx].sum()),
                curve=tuple((float(k), float(v)) for k, v in per_lr.items()),
            )
        )
    width = next((c for c in groups if c in WIDTH_COLUMNS), None)
    transfer = _transfer_fits(results, width, level=level, notes=notes)
    return LrSensitivityFit(
        groups=tuple(results),
        transfer=transfer,
        group_by=groups,
        width_column=width,
        lr_range=(float(lo), float(hi)),
        level=level,
        notes=tuple(notes),
    )


def _transfer_fits(
    results: list[GroupSensitivity], width: str | None, *, level: float, notes: list[str]
) -> tuple[TransferFit, ...]:
    if width is None:
        notes.append("no width column among the group columns: no LR transfer fit")
        return ()
    by_other: dict[tuple[Any, ...], list[GroupSensitivity]] = {}
    for result in results:
        other = tuple((k, v) for k, v in result.key.items() if k != width)
        by_other.setdefault(other, []).append(result)
    fits = []
    for other, members in by_other.items():
        usable = [m for m in members if m.best_lr is not None and m.key[width] is not None]
        widths = np.array([float(m.key[width]) for m in usable])
        if np.unique(widths).size < 2:
            notes.append(f"{dict(other)}: fewer than 2 widths with a best LR; no transfer fit")
            continue
        law = loglog_ols(widths, np.array([m.best_lr for m in usable]), level=level)
        fits.append(TransferFit(dict(other), law.exponent, law.coef, law.se, law.ci, len(usable)))
    return tuple(fits)
