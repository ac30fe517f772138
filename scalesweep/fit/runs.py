"""The runs table, checked before a fit: one row per trial, canonical columns.

`scalesweep.tracking.runs_table` reads it from MLflow and the fit command reads CSV or Parquet;
from here on everything in `scalesweep.fit` is a pure function of DataFrames. `prepare` checks
the columns a fit needs and keeps the finished runs, never dropping one silently; `choose_n`
says which parameter count is N; `cell_tokens` and `best_per_cell` find the planned (N, D)
cells of a sweep, whose runs differ only in the other hyperparameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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
BUDGET_TOLERANCE = 1.1  # runs whose FLOPs differ by less than 10 % share a budget
SAME_SIZE = 1.01
"""Sizes and token counts within 1 % of each other are one value (qk-layernorm's few extra
parameters do not make another model size)."""
PLANNED_TOKENS = "planned.tokens"
"""The token budget D a trial was planned with (trained tokens round it up to whole steps)."""
PLANNED_FLOPS = "planned.flops"
"""The isoFLOP budget C a trial belongs to (absent or empty outside isoFLOP sweeps)."""
FLOP_COUNTING = "train.flop_counting"
"""The convention the runs' `flops` were counted under (see scalesweep/flops.py)."""
PARAMS_NO_EMBEDDING = "params_no_embedding"
"""Every parameter but the input embedding: the N of the `chinchilla` and `palm` conventions."""
N_BY_CONVENTION = {
    "6N": m.PARAMS,
    "kaplan": m.PARAMS_NONEMBED,
    "chinchilla": PARAMS_NO_EMBEDDING,
    "palm": PARAMS_NO_EMBEDDING,
}
"""The N each FLOP convention pairs with (`scalesweep.flops.paired_params`)."""


class Prepared(NamedTuple):
    """A runs table ready for one fit: canonical columns present, checked, other runs aside."""

    frame: pd.DataFrame
    """Rows the fit uses (completed runs, or every run when there is no `status` column)."""
    excluded: pd.DataFrame
    """Runs set aside (diverged, failed, still running, or completed without a finite value):
    not fitted, but counted and named in `notes`."""
    notes: tuple[str, ...]
    """What was derived or set aside (e.g. tokens = flops / (6·params)); printed by the CLI."""


@dataclass(frozen=True)
class Basis:
    """What an answer was computed from; every fit states it in its text and JSON."""

    n: str
    """The column read as N, and why (e.g. `params_nonembed (train.flop_counting = kaplan)`)."""
    flop_counting: str | None
    """The convention of the runs' FLOPs (C), or None when the table does not say."""
    runs: str
    """Which runs the fit used (e.g. the best run per (N, D) cell, and how many)."""

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "flop_counting": self.flop_counting, "runs": self.runs}


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


def describe(frame: pd.DataFrame, index: Any) -> str:
    """`row 3 (trial_id=...)`: enough for a user to find the run."""
    where = f"row {index}"
    if "trial_id" in frame.columns:
        where += f" (trial_id={frame.at[index, 'trial_id']})"
    return where


def name_runs(frame: pd.DataFrame, limit: int = 5) -> str:
    """The trial ids (else row numbers) of `frame`, the first `limit` of them."""
    names = frame["trial_id"].astype(str) if "trial_id" in frame.columns else frame.index
    shown = ", ".join(map(str, list(names)[:limit]))
    return shown + (f", … ({len(frame)} in all)" if len(frame) > limit else "")


def _with_tokens(out: pd.DataFrame, numeric: Sequence[str], kind: str) -> str | None:
    """Derive `tokens` = flops / (6·params) when a fit needs it and the table lacks it."""
    if "tokens" not in numeric or "tokens" in out.columns:
        return None
    if "flops" not in out.columns or "params" not in out.columns:
        raise UserError(
            f"{kind} fit needs a column `tokens` (or `flops` and `params` to derive "
            f"tokens = flops / (6·params)), but the table has columns "
            f"{sorted(map(str, out.columns))}; map one with --col tokens=SOURCE"
        )
    flops = pd.to_numeric(out["flops"], errors="coerce")
    out["tokens"] = flops / (6.0 * pd.to_numeric(out["params"], errors="coerce"))
    return "`tokens` was absent: derived as flops / (6·params) (C = 6ND)"


def _finished(
    out: pd.DataFrame, numeric: Sequence[str], kind: str
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(used, set aside, notes): with a `status` column only completed runs with finite values
    are used; every other run is counted by status and named."""
    if m.STATUS not in out.columns:
        return out, out.iloc[0:0], []
    status = out[m.STATUS].astype(str)
    values = out[list(numeric)].apply(pd.to_numeric, errors="coerce").astype(float)
    # Missing or ±inf (text that is not a number stays in, and is an error in `_numeric`).
    empty = out[list(numeric)].isna() | (values.notna() & ~np.isfinite(values))
    label = status.where(~((status == m.COMPLETED) & empty.any(axis=1)), "")
    aside = label != m.COMPLETED
    notes = []
    for name, rows in out[aside].groupby(label[aside], sort=True):
        what = f"status {name}" if name else f"completed without a finite value of {list(numeric)}"
        notes.append(f"{kind}: {len(rows)} run(s) not fitted, {what}: {name_runs(rows)}")
    return out[~aside], out[aside], notes


def _numeric(out: pd.DataFrame, numeric: Sequence[str], positive: Sequence[str], kind: str) -> None:
    """Convert the `numeric` columns in place; errors name the column, the value and the run."""
    for column in numeric:
        values = pd.to_numeric(out[column], errors="coerce")
        bad_text = values.isna() & out[column].notna()
        if bad_text.any():
            index = out.index[bad_text][0]
            raise UserError(
                f"column `{column}` must be numeric, but got {out.at[index, column]!r} in "
                f"{describe(out, index)}"
            )
        nonfinite = ~np.isfinite(values.to_numpy(dtype=float))
        if nonfinite.any():
            index = out.index[nonfinite][0]
            raise UserError(
                f"column `{column}` must be a finite number for every run the {kind} fit uses, "
                f"but got {values[index]} in {describe(out, index)}"
            )
        if column in positive and (values <= 0).any():
            index = out.index[values <= 0][0]
            raise UserError(
                f"`{column} > 0` must hold for every run, but got ({column}={values[index]}) in "
                f"{describe(out, index)}"
            )
        out[column] = values.astype(float)


def prepare(
    frame: pd.DataFrame,
    *,
    kind: str,
    numeric: Sequence[str],
    positive: Sequence[str] = (),
    min_rows: int = 1,
) -> Prepared:
    """Check the columns a fit of `kind` needs, derive `tokens` from `flops` when absent, and
    keep the finished runs: with a `status` column, only completed runs with finite values are
    fitted; diverged, failed and still-running runs are set aside, counted and named.

    Errors name the column: missing, non-numeric, non-finite in a run the fit uses (a table
    without `status`), non-positive where `positive`, or fewer than `min_rows` usable runs.
    """
    out = frame.copy()
    derived = _with_tokens(out, numeric, kind)
    notes = [derived] if derived else []
    missing = [c for c in numeric if c not in out.columns]
    if missing:
        hint = " ".join(f"--col {c}=SOURCE" for c in missing)
        raise UserError(
            f"{kind} fit needs column(s) {missing}, but the table has columns "
            f"{sorted(map(str, out.columns))}; map them with {hint}"
        )
    out, excluded, aside = _finished(out, numeric, kind)
    notes += aside
    out = out.copy()
    _numeric(out, numeric, positive, kind)
    if len(out) < min_rows:
        raise UserError(
            f"{kind} fit needs at least {min_rows} usable runs (columns {list(numeric)}), but "
            f"got {len(out)} ({len(excluded)} set aside: diverged, failed or unfinished)"
        )
    return Prepared(out.reset_index(drop=True), excluded.reset_index(drop=True), tuple(notes))


def flop_counting(frame: pd.DataFrame) -> str | None:
    """The runs' FLOP convention (`train.flop_counting`), None when the table does not say;
    a table that mixes conventions cannot be fitted as one (its budgets are not comparable)."""
    if FLOP_COUNTING not in frame.columns:
        return None
    values = sorted(set(frame[FLOP_COUNTING].dropna().astype(str)))
    if len(values) > 1:
        raise UserError(
            f"column `{FLOP_COUNTING}` must have one value for the runs fitted together, but got "
            f"{values}; fit each convention on its own (--parent-run-id, or filter the table)"
        )
    return values[0] if values else None


def choose_n(frame: pd.DataFrame, n_col: str | None = None) -> tuple[pd.DataFrame, str]:
    """The table with `params` set to the N the fit should use, and a note saying which.

    `n_col` (the CLI's `--n-col`) wins; else the column the runs' FLOP convention pairs with
    (`N_BY_CONVENTION`: total for 6N, non-embedding for kaplan, all but the input embedding
    for chinchilla and palm, derived as (params + params_nonembed) / 2 because the model's
    embedding and untied head have the same size); else `params` as the table has it.
    """
    convention = flop_counting(frame)
    column = n_col or (N_BY_CONVENTION.get(convention) if convention else None)
    why = "--n-col" if n_col else f"{FLOP_COUNTING} = {convention}"
    if column is None:
        return frame, f"`params` as given (no `{FLOP_COUNTING}` column; --n-col to choose)"
    out = frame.copy()
    if column == PARAMS_NO_EMBEDDING and column not in out.columns:
        sources = [c for c in (m.PARAMS, m.PARAMS_NONEMBED) if c not in out.columns]
        if sources:
            raise UserError(
                f"N under {why} is every parameter but the input embedding, derived from "
                f"columns {[m.PARAMS, m.PARAMS_NONEMBED]}, but the table lacks {sources}; "
                f"choose N with --n-col COLUMN"
            )
        out[column] = (out[m.PARAMS].astype(float) + out[m.PARAMS_NONEMBED].astype(float)) / 2
    elif column not in out.columns:
        raise UserError(
            f"N: the table has no column `{column}` ({why}); its columns are "
            f"{sorted(map(str, out.columns))}"
        )
    out["params"] = out[column]
    return out, f"`{column}` ({why})"


def planned(frame: pd.DataFrame, column: str) -> np.ndarray | None:
    """The plan's value of each run (`planned.tokens`, `planned.flops`) when every run has a
    positive one; None otherwise (a table from elsewhere, or runs of several plans)."""
    if column not in frame.columns:
        return None
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
    return values if np.isfinite(values).all() and (values > 0).all() else None


def cell_tokens(frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The planned token budget D of each run, and how it was found: `planned.tokens` when the
    table has it; else, when the batch size (`bs`) varies, each size's trained tokens grouped
    within 10 % (a trial trains whole steps, so its trained tokens exceed the plan by up to
    one batch and differ by batch size); else the trained tokens as they are."""
    plan = planned(frame, PLANNED_TOKENS)
    if plan is not None:
        return plan, f"D cells from `{PLANNED_TOKENS}`"
    tokens = frame["tokens"].to_numpy(float)
    if "bs" not in frame.columns or frame["bs"].nunique() < 2:
        return tokens, f"D cells from trained `tokens` (no `{PLANNED_TOKENS}` column)"
    labels = np.empty(len(frame))
    for rows in frame.groupby("params", sort=False).indices.values():
        labels[rows] = group_budgets(tokens[rows])
    return labels, (
        f"D cells from trained `tokens` within 10 % per N (no `{PLANNED_TOKENS}`; `bs` varies)"
    )


def best_per_cell(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The lowest-loss run of each cell (`keys`), with the cell's run count as `n_runs`, in
    the table's row order (a fit's sums then run in the same order as on the whole table)."""
    grouped = frame.groupby(list(keys), sort=True)
    best = frame.loc[grouped["loss"].idxmin()].copy()
    best["n_runs"] = grouped.size().to_numpy()
    return best.sort_index().reset_index(drop=True)


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
