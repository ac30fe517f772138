"""How an LR-sensitivity fit splits and scores runs: run states, default groups, LR coverage.

Kept apart from `lr_sensitivity` so that each rule is one small function with its own tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.runs import describe

LR_COLUMNS = ("lr", "optim.lr")
SEED_COLUMNS = ("seed", "train.seed")
WIDTH_COLUMNS = ("model.width", "width")
LINEAGE_PREFIX = "branch."
"""Cooldown-branch lineage (`branch.of`, `branch.fork_step`, ...): where a run was forked, not a
setting; its tokens already tell the run apart."""
FALLBACK_GROUPS = ("width", "qk_norm", "z_loss")
"""Group columns of a table without sweep params (no dotted `section.key` columns)."""
UNFINISHED = "unfinished"
"""The state of a run that is not scored: still running, or without a finite loss while not
marked diverged."""
GRID_STEP_TOLERANCE = 1.25
"""LRs are a grid when their largest log step is at most this multiple of the smallest."""


def run_states(frame: pd.DataFrame) -> pd.Series:
    """Per run: `completed` (a finite loss; scored min(ℓ, ℓ0)), `diverged` (status diverged;
    scored ℓ0), `failed` or `unfinished` (both left out). Without a `status` column a run with
    a finite loss counts as completed and any other is unfinished."""
    loss = pd.to_numeric(frame["loss"], errors="coerce").to_numpy(float)
    finite = pd.Series(np.isfinite(loss), index=frame.index)
    if m.STATUS in frame.columns:
        status = frame[m.STATUS].astype(str)
    else:
        status = pd.Series(m.COMPLETED, index=frame.index)
    state = pd.Series(UNFINISHED, index=frame.index, dtype=object)
    state[(status == m.COMPLETED) & finite] = m.COMPLETED
    state[status == m.DIVERGED] = m.DIVERGED
    state[status == m.FAILED] = m.FAILED
    lr = pd.to_numeric(frame["lr"], errors="coerce")
    bad = state.isin((m.COMPLETED, m.DIVERGED)) & ~(np.isfinite(lr) & (lr > 0))
    if bad.any():
        index = frame.index[bad][0]
        raise UserError(
            f"`lr > 0` must hold for every finished run, but got "
            f"(lr={frame.at[index, 'lr']!r}) in {describe(frame, index)}"
        )
    return state


def default_group_by(frame: pd.DataFrame) -> tuple[tuple[str, ...], str]:
    """(columns, why): every run parameter (dotted `section.key` column) that takes more than
    one value across the runs, except the LR, the seed and branch lineage; a table without such
    columns falls back to whichever of width, qk_norm, z_loss it has."""
    params = [str(c) for c in frame.columns if "." in str(c)]
    if not params:
        found = tuple(c for c in FALLBACK_GROUPS if c in frame.columns)
        return found, f"no run parameters (dotted columns) in the table: {list(found) or 'none'}"
    skip = {*LR_COLUMNS, *SEED_COLUMNS}
    varying = tuple(
        c
        for c in sorted(params)
        if c not in skip and not c.startswith(LINEAGE_PREFIX) and frame[c].nunique(dropna=False) > 1
    )
    width = next((c for c in WIDTH_COLUMNS if c in varying), None)
    ordered = tuple([width] if width else []) + tuple(c for c in varying if c != width)
    return ordered, "every run parameter that varies, except the LR, the seed and branch lineage"


def group_key(groups: Sequence[str], value: Any) -> dict[str, Any]:
    """{column: value} of one group, NaN as None."""
    values = value if isinstance(value, tuple) else (value,)
    key = dict(zip(groups, values, strict=False))
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in key.items()}


def width_of(groups: Sequence[str]) -> str | None:
    """The group column read as width."""
    return next((c for c in groups if c in WIDTH_COLUMNS), None)


def coverage(lrs: np.ndarray, lr_range: tuple[float, float]) -> dict[str, Any]:
    """How the distinct LRs inside [a, b] cover it: `grid` when they are evenly spaced in log η
    (largest step within `GRID_STEP_TOLERANCE` of the smallest), else `sampled`; the
    `scored_range`, the part of [a, b] between the smallest and largest of them (the score is
    taken over it, never over the rest: no LR there says what the loss is); `covered`, that
    part's fraction of log [a, b]; and `max_gap`, the largest ratio between neighbouring LRs
    (None with fewer than 2).

    Example (Wortsman et al.'s range, a grid that leaves its first decade unsampled):
        >>> cover = coverage(np.array([3e-3, 3e-2, 3e-1]), (3e-4, 3e-1))
        >>> cover["coverage"], cover["scored_range"], round(cover["covered"], 3)
        ('grid', (0.003, 0.3), 0.667)
    """
    lo, hi = math.log(lr_range[0]), math.log(lr_range[1])
    x = np.unique(np.log(lrs))
    if x.size == 0:
        return {
            "coverage": "sampled",
            "covered": 0.0,
            "max_gap": None,
            "n_lr": 0,
            "scored_range": None,
        }
    steps = np.diff(x)
    even = steps.size > 0 and steps.max() <= GRID_STEP_TOLERANCE * steps.min()
    return {
        "coverage": "grid" if even else "sampled",
        "covered": float((x[-1] - x[0]) / (hi - lo)),
        "max_gap": float(math.exp(steps.max())) if steps.size else None,
        "n_lr": int(x.size),
        "scored_range": (float(np.min(lrs)), float(np.max(lrs))),
    }
