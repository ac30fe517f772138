"""Loss curves as contours: the steps and tokens each run of a sweep takes to reach a loss.

Shared by the `critical-batch` and `kaplan-ns` fits. One pure function each:
  1. `curve_points`: each completed run's validation curve, its batch in tokens and its group
     (by default its non-embedding size: runs of one model that differ in batch and LR).
  2. `steps_to_reach`: the first step at which a run reaches each loss level, read from the
     decreasing isotonic regression of its curve (evaluation noise would make a raw curve
     cross a level several times), interpolated log-log between the fit's block centres.
  3. `reach_table`: per (group, batch size, level), the fewest steps over the runs of that
     batch size: the best LR, since the method needs the LR tuned at every batch size.
  4. `lr_edge_notes`: the batch sizes whose fastest run has the smallest or largest LR that
     batch size tried (the best LR may lie beyond the grid, so its steps are overestimated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.runs import prepare

LR_COLUMNS = ("lr", "optim.lr")
"""Where a run's LR is (the canonical alias first)."""
GROUP_CANDIDATES = (m.PARAMS_NONEMBED, "model.width", "width", m.PARAMS)
"""The default group: the first of these the runs table has."""


def default_group_by(columns: Sequence[str]) -> tuple[str, ...]:
    """The model-size column runs are grouped by (see `GROUP_CANDIDATES`); () when none."""
    return next(((c,) for c in GROUP_CANDIDATES if c in columns), ())


def batch_tokens(runs: pd.DataFrame, kind: str) -> pd.Series:
    """Tokens per optimizer step of each run: trained `tokens` / `steps` from the summary, else
    `train.batch_size` × `model.seq_len` from the params."""
    summary, config = (m.TRAINED_TOKENS, m.STEPS), ("train.batch_size", "model.seq_len")
    if all(c in runs.columns for c in summary):
        tokens, steps = (pd.to_numeric(runs[c], errors="coerce") for c in summary)
        batch = tokens / steps.where(steps > 0)
    elif all(c in runs.columns for c in config):
        batch = pd.to_numeric(runs[config[0]], errors="coerce") * pd.to_numeric(
            runs[config[1]], errors="coerce"
        )
    else:
        raise UserError(
            f"{kind} needs each run's batch in tokens: columns {list(summary)} (the trial "
            f"summary) or {list(config)}, but the table has {sorted(map(str, runs.columns))}"
        )
    bad = ~(batch > 0)
    if bad.any():
        row = runs.loc[bad].iloc[0]
        raise UserError(
            f"{kind}: the batch in tokens must be > 0, but trial {row.get('trial_id')} has "
            f"{batch[bad].iloc[0]} ({', '.join(f'{c}={row.get(c)}' for c in (*summary, *config))})"
        )
    return batch.astype(float)


def curve_points(
    runs: pd.DataFrame, curves: pd.DataFrame | None, columns: Sequence[str], *, kind: str
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """(points, notes): one row per (completed run, logged step > 0) with `run_id, trial_id,
    batch, step, loss` and the runs-table `columns` (the group); notes say which runs were set
    aside. `curves` has `run_id, step` and `val/loss` (see `FitData.curves`)."""
    if curves is None or curves.empty:
        raise UserError(
            f"{kind} needs per-step `{m.VAL_LOSS}` curves: an MLflow sweep source, or a file "
            f"source with --curves FILE (columns run_id, step, {m.VAL_LOSS})"
        )
    for name, frame, needed in (
        ("runs table", runs, ("run_id", *columns)),
        ("curves", curves, ("run_id", "step", m.VAL_LOSS)),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise UserError(
                f"{kind}: the {name} needs column(s) {missing}, but has "
                f"{sorted(map(str, frame.columns))}"
            )
    ready = prepare(runs, kind=kind, numeric=())
    frame = ready.frame.assign(batch=batch_tokens(ready.frame, kind))
    if "trial_id" not in frame.columns:
        frame["trial_id"] = frame["run_id"]
    keep = list(dict.fromkeys(["run_id", "trial_id", "batch", *columns]))
    points = curves[["run_id", "step", m.VAL_LOSS]].merge(frame[keep], on="run_id")
    points = points.rename(columns={m.VAL_LOSS: "loss"})
    points = points[(points["step"] > 0) & np.isfinite(points["loss"])]
    if points.empty:
        raise UserError(f"{kind}: no completed run of the runs table has a curve")
    ordered = points.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    return ordered, ready.notes


def steps_to_reach(steps: np.ndarray, losses: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The first step at which a curve (steps > 0, increasing) reaches each level; NaN for a
    level never reached, or reached by the first point already (when is unknown).

    The curve is the decreasing isotonic regression of the losses; each constant block of it
    stands at its centre (mean log step), and a level is interpolated log-log (exact for a
    power law) between the last centre above it and the first at or below it.

    Example:
        >>> steps_to_reach(np.array([10.0, 100, 1000]), np.array([4.0, 3.0, 2.0]),
        ...                np.array([3.5, 1.0, 5.0])).round(2)
        array([29.12,   nan,   nan])
    """
    from scipy.optimize import isotonic_regression

    fitted = isotonic_regression(np.asarray(losses, float), increasing=False).x
    log_steps = np.log(np.asarray(steps, float))
    block = np.concatenate([[0], np.cumsum(np.diff(fitted) != 0)])
    values = np.log(pd.Series(fitted).groupby(block).first().to_numpy())
    centres = pd.Series(log_steps).groupby(block).mean().to_numpy()
    out = np.full(len(levels), np.nan)
    for i, level in enumerate(np.log(np.asarray(levels, float))):
        below = np.flatnonzero(values <= level)
        if below.size == 0 or below[0] == 0:
            continue
        j = below[0]
        t = (values[j - 1] - level) / (values[j - 1] - values[j])
        out[i] = math.exp(centres[j - 1] + t * (centres[j] - centres[j - 1]))
    return out


def loss_levels(points: pd.DataFrame, n_levels: int) -> np.ndarray:
    """`n_levels` losses, log-spaced from the lowest loss any run reached to the highest loss
    of any run's first logged point."""
    by_run = points.groupby("run_id")["loss"]
    low, high = float(by_run.min().min()), float(by_run.first().max())
    if not low < high:
        raise UserError(f"the curves span no range of loss ({low} to {high})")
    return np.geomspace(low, high, n_levels + 2)[1:-1]


def reach_table(points: pd.DataFrame, levels: np.ndarray, group_by: Sequence[str]) -> pd.DataFrame:
    """Per (group, batch, level) reached: the fewest steps over the runs of that batch size
    (the best LR), the tokens E = B·S, and the run that did it."""
    rows = []
    for run_id, run in points.groupby("run_id", sort=False):
        reached = steps_to_reach(run["step"].to_numpy(), run["loss"].to_numpy(), levels)
        first = run.iloc[0]
        for level, steps in zip(levels, reached, strict=True):
            if np.isfinite(steps):
                group = {c: first[c] for c in group_by}
                rows.append(
                    {
                        **group,
                        "batch": first["batch"],
                        "level": level,
                        "steps": steps,
                        "run_id": run_id,
                    }
                )
    columns = [*group_by, "batch", "level", "steps", "run_id"]
    table = pd.DataFrame(rows, columns=columns)
    best = table.loc[table.groupby([*group_by, "batch", "level"])["steps"].idxmin()]
    return best.assign(tokens=best["batch"] * best["steps"]).reset_index(drop=True)


def fastest_runs(table: pd.DataFrame, group_by: Sequence[str]) -> pd.DataFrame:
    """Per (group, batch size) of a `reach_table`, the run fastest to the most loss levels (the
    best LR at that batch size): columns group, `batch`, `run_id`, `wins`."""
    wins = table.groupby([*group_by, "batch", "run_id"]).size().rename("wins").reset_index()
    ordered = wins.sort_values("wins", ascending=False, kind="stable")
    return ordered.groupby([*group_by, "batch"]).head(1).reset_index(drop=True)


def lr_edge_notes(
    runs: pd.DataFrame,
    points: pd.DataFrame,
    table: pd.DataFrame,
    group_by: Sequence[str],
    kind: str,
) -> tuple[str, ...]:
    """A note naming the batch sizes whose fastest run has the smallest or largest LR that the
    batch size (in its group) tried, as the Step Law fit notes edge cells: the best LR may lie
    beyond the grid there, so the steps to each loss are overestimated and B_crit is biased.
    Nothing without an LR column or with one LR per batch size."""
    column = next((c for c in LR_COLUMNS if c in runs.columns), None)
    if column is None or table.empty:
        return ()
    lr = pd.to_numeric(runs.set_index("run_id")[column], errors="coerce")
    tried = points[[*group_by, "batch", "run_id"]].drop_duplicates()
    tried = tried.assign(lr=tried["run_id"].map(lr))
    spans = tried.groupby([*group_by, "batch"])["lr"].agg(["min", "max", "nunique"])
    best = fastest_runs(table, group_by)
    joined = best.assign(lr=best["run_id"].map(lr)).join(spans, on=[*group_by, "batch"])
    at_edge = (joined["lr"] == joined["min"]) | (joined["lr"] == joined["max"])
    edge = joined[(joined["nunique"] > 1) & at_edge]
    if edge.empty:
        return ()
    sides = []
    for side, column in (("largest", "max"), ("smallest", "min")):
        batches = sorted(edge.loc[edge["lr"] == edge[column], "batch"].unique())
        if batches:
            sides.append(f"the {side} at B = {', '.join(f'{b:.3g}' for b in batches)}")
    return (
        f"{kind}: at {len(edge)} of {len(joined)} (group, batch size) pairs the fastest run's LR "
        f"is at the edge of the LRs that batch size tried ({'; '.join(sides)} tokens per step): "
        "the best LR may lie beyond the grid there, so the steps to each loss are overestimated "
        "(sweep the LR further)",
    )
