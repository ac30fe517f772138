"""The runs table, checked before a fit: one row per trial, canonical columns.

`scalesweep.tracking.runs_table` reads it from MLflow and the fit command reads CSV or Parquet;
from here on everything in `scalesweep.fit` is a pure function of DataFrames. `prepare` checks
the columns a fit needs and sets diverged and failed runs aside, never silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError

# Canonical column <- the names other tools use for it, applied only when the canonical column
# is absent. `N`/`D` are the Step Law CSV's names; the dotted names are the sweep's params.
ALIASES: dict[str, tuple[str, ...]] = {
    "loss": (m.FINAL_VAL_LOSS,),
    "lr": ("optim.lr",),
    "width": ("model.width",),
    "bs": ("train.batch_size",),
    "params": ("N",),
    "tokens": ("D",),
}
# Statuses written by the sweep; diverged and failed runs are kept in the table and counted.
BAD_STATUSES = (m.DIVERGED, m.FAILED)
BUDGET_TOLERANCE = 1.1  # runs whose FLOPs differ by less than 10 % share a budget


class Prepared(NamedTuple):
    """A runs table ready for one fit: canonical columns present, checked, bad runs set aside."""

    frame: pd.DataFrame
    """Rows the fit uses (completed runs, or every run when there is no `status` column)."""
    excluded: pd.DataFrame
    """Diverged or failed runs: not fitted, but counted and reported, never silently dropped."""
    notes: tuple[str, ...]
    """What was derived or assumed (e.g. tokens = flops / (6·params)); printed by the CLI."""


def parse_column_map(items: Iterable[str]) -> dict[str, str]:
    """`["params=Model Size", ...]` (the CLI's `--col`) -> {"params": "Model Size"}."""
    mapping: dict[str, str] = {}
    for item in items:
        canonical, sep, source = item.partition("=")
        if not sep or not canonical.strip() or not source.strip():
            raise UserError(f"--col: `canonical=source` must hold, but got {item!r}")
        mapping[canonical.strip()] = source.strip()
    return mapping


def apply_column_map(frame: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """Copy source columns to canonical names: explicit `columns` first, then `ALIASES`."""
    out = frame.copy()
    for canonical, source in columns.items():
        if source not in out.columns:
            raise UserError(
                f"--col {canonical}={source}: the table has no column {source!r}; "
                f"its columns are {sorted(map(str, out.columns))}"
            )
        out[canonical] = out[source]
    for canonical, sources in ALIASES.items():
        if canonical in out.columns:
            continue
        for source in sources:
            if source in out.columns:
                out[canonical] = out[source]
                break
    return out


def _describe(frame: pd.DataFrame, index: Any) -> str:
    """`row 3 (trial_id=...)`: enough for a user to find the run."""
    where = f"row {index}"
    if "trial_id" in frame.columns:
        where += f" (trial_id={frame.at[index, 'trial_id']})"
    return where


def prepare(
    frame: pd.DataFrame,
    *,
    kind: str,
    numeric: Sequence[str],
    positive: Sequence[str] = (),
    min_rows: int = 1,
) -> Prepared:
    """Check the columns a fit of `kind` needs, derive `tokens` from `flops` when absent, and
    set diverged/failed runs aside (counted in `excluded`).

    Errors name the column: missing, non-numeric, NaN in a run the fit uses, non-positive
    where `positive`, or fewer than `min_rows` usable runs.
    """
    out = frame.copy()
    notes: list[str] = []
    if "tokens" in numeric and "tokens" not in out.columns:
        if "flops" in out.columns and "params" in out.columns:
            out["tokens"] = pd.to_numeric(out["flops"], errors="coerce") / (
                6.0 * pd.to_numeric(out["params"], errors="coerce")
            )
            notes.append("`tokens` was absent: derived as flops / (6·params) (C = 6ND)")
        else:
            raise UserError(
                f"{kind} fit needs a column `tokens` (or `flops` and `params` to derive "
                f"tokens = flops / (6·params)), but the table has columns "
                f"{sorted(map(str, out.columns))}; map one with --col tokens=SOURCE"
            )
    missing = [c for c in numeric if c not in out.columns]
    if missing:
        hint = " ".join(f"--col {c}=SOURCE" for c in missing)
        raise UserError(
            f"{kind} fit needs column(s) {missing}, but the table has columns "
            f"{sorted(map(str, out.columns))}; map them with {hint}"
        )
    if m.STATUS in out.columns:
        bad = out[m.STATUS].astype(str).isin(BAD_STATUSES)
        excluded, out = out[bad], out[~bad]
        if len(excluded):
            counts = excluded[m.STATUS].value_counts().to_dict()
            notes.append(f"{kind}: {len(excluded)} run(s) not fitted: {counts}")
    else:
        excluded = out.iloc[0:0]
    for column in numeric:
        values = pd.to_numeric(out[column], errors="coerce")
        bad_text = values.isna() & out[column].notna()
        if bad_text.any():
            index = out.index[bad_text][0]
            raise UserError(
                f"column `{column}` must be numeric, but got {out.at[index, column]!r} in "
                f"{_describe(out, index)}"
            )
        nonfinite = ~np.isfinite(values.to_numpy(dtype=float))
        if nonfinite.any():
            index = out.index[nonfinite][0]
            raise UserError(
                f"column `{column}` must be a finite number for every run the {kind} fit uses, "
                f"but got {values[index]} in {_describe(out, index)}"
            )
        if column in positive and (values <= 0).any():
            index = out.index[values <= 0][0]
            raise UserError(
                f"`{column} > 0` must hold for every run, but got ({column}={values[index]}) in "
                f"{_describe(out, index)}"
            )
        out[column] = values.astype(float)
    if len(out) < min_rows:
        raise UserError(
            f"{kind} fit needs at least {min_rows} usable runs (columns {list(numeric)}), but "
            f"got {len(out)} ({len(excluded)} diverged/failed set aside)"
        )
    return Prepared(out.reset_index(drop=True), excluded.reset_index(drop=True), tuple(notes))


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def group_budgets(flops: np.ndarray, tolerance: float = BUDGET_TOLERANCE) -> np.ndarray:
    """Budget label (geometric mean) per run: sorted FLOPs split where consecutive values
    differ by more than `tolerance`× (a sweep's runs miss their budget by a few steps)."""
    order = np.argsort(flops)
    logs = np.log(flops[order])
    cluster = np.concatenate([[0], np.cumsum(np.diff(logs) > math.log(tolerance))])
    means = np.exp(pd.Series(logs).groupby(cluster).transform("mean").to_numpy())
    labels = np.empty_like(flops, dtype=float)
    labels[order] = means
    return labels
