"""From a runs table and its per-step `val/loss` curves to the curves a schedule law fits:
each run's LRs (recomputed from its schedule params), its loss after warmup, the runs left out
(and why), the model groups, and the runs each group is fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.laws.diagnostics import sort_key
from scalesweep.fit.laws.lr.groups import default_group_by
from scalesweep.fit.laws.schedule import lrs as lr
from scalesweep.fit.options import schedule_model
from scalesweep.fit.runs import PLANNED_FLOPS, PLANNED_TOKENS

MIN_POINTS = 5
"""Loss points after warmup a run needs: a law of up to 7 parameters fits curves, not finals."""
LENGTH_COLUMNS = ("train.tokens", "train.steps", PLANNED_TOKENS, PLANNED_FLOPS)
"""Not model settings: a cooldown branch is the same model trained on fewer tokens."""
PEAK_COLUMNS = ("optim.lr", "lr")
STEP_COLUMNS = (m.STEPS, "train.steps")


@dataclass(frozen=True, eq=False)
class RunCurve:
    """One run as the laws see it (compared by identity: it holds arrays)."""

    name: str
    schedule: dict[str, Any]
    """Its `schedule` section."""
    peak: float
    """optim.lr."""
    lrs: np.ndarray = field(repr=False)
    """η_0 … η_{T-1} (absolute)."""
    steps: np.ndarray
    """Steps after warmup where its validation loss was logged."""
    loss: np.ndarray
    key: dict[str, Any] = field(default_factory=dict)
    """Its group: {column: value}."""

    @property
    def label(self) -> str:
        return lr.describe(self.schedule)

    @property
    def total_steps(self) -> int:
        return int(self.lrs.size)


def _first(row: Mapping[str, Any], columns: Sequence[str]) -> Any:
    return next((row[c] for c in columns if c in row and pd.notna(row[c])), None)


def _logged_lrs(name: str, logged: pd.DataFrame | None) -> tuple[np.ndarray, int] | str:
    """(η_0 … η_{T-1}, warmup steps) from a `train/lr` curve logged at every step (the value at
    step s is the LR of step s-1), or why not."""
    if logged is None or logged.empty:
        return f"{name}: no schedule.type in the runs table and no train/lr curve"
    at, values = logged["step"].to_numpy(int), logged[m.LR].to_numpy(float)
    order = np.argsort(at)
    at, values = at[order], values[order]
    if not (np.array_equal(at, np.arange(1, at.size + 1)) and np.all(values > 0)):
        return (
            f"{name}: no schedule.type in the runs table, and train/lr is not logged at every "
            "step (train.log_every = 1) to read its LRs from"
        )
    return values, int(np.argmax(values))


def _schedule_lrs(
    row: Mapping[str, Any], name: str, logged: pd.DataFrame | None
) -> tuple[dict[str, Any], np.ndarray, int] | str:
    """(its schedule section, η_0 … η_{T-1}, warmup steps): recomputed from the `schedule.*`
    params, else read from a `train/lr` logged at every step; or why neither can be had."""
    spec, peak, steps = lr.schedule_of(row), _first(row, PEAK_COLUMNS), _first(row, STEP_COLUMNS)
    if spec is None:
        found = _logged_lrs(name, logged)
        if isinstance(found, str):
            return found
        return {"type": "logged train/lr"}, *found
    if peak is None or steps is None:
        return f"{name}: no optim.lr or steps in the runs table"
    try:
        schedule = schedule_model(spec, name)
    except UserError as error:
        return f"{error} (a schedule the laws cannot express)"
    total = int(float(steps))
    lrs = lr.lrs(schedule, float(peak), total)
    return {k: getattr(schedule, k) for k in spec}, lrs, lr.warmup_of(schedule, total)


def _run_curve(
    row: Mapping[str, Any], points: pd.DataFrame, logged: pd.DataFrame | None
) -> RunCurve | str:
    """The run's curve, or why it is left out."""
    name = str(row.get("trial_id", row["run_id"]))
    if (status := row.get(m.STATUS)) and status != m.COMPLETED:
        return f"{name}: {status} (its curve is no law's)"
    found = _schedule_lrs(row, name, logged)
    if isinstance(found, str):
        return found
    schedule, lrs, warmup = found
    loss = points[m.VAL_LOSS].to_numpy(float)
    at = points["step"].to_numpy(int)
    if not np.all(np.isfinite(loss)):
        return f"{name}: non-finite validation loss at step {at[~np.isfinite(loss)][0]}"
    keep = (at > warmup) & (at <= lrs.size)
    if keep.sum() < MIN_POINTS:
        return (
            f"{name}: {int(keep.sum())} validation-loss points after warmup, the laws need "
            f">= {MIN_POINTS} (log more with train.eval_every)"
        )
    order = np.argsort(at[keep])
    return RunCurve(
        name=name,
        schedule=schedule,
        peak=float(lrs.max()),
        lrs=lrs,
        steps=at[keep][order],
        loss=loss[keep][order],
    )


def run_curves(
    runs: pd.DataFrame, curves: pd.DataFrame | None, lr_curves: pd.DataFrame | None = None
) -> tuple[list[RunCurve], list[str]]:
    """(the runs the laws can use, a note per run left out); `lr_curves` (`run_id, step,
    train/lr`) serve the runs without `schedule.*` params."""
    if curves is None or curves.empty or "run_id" not in runs.columns:
        raise UserError(
            "schedule-law: needs per-step val/loss curves (an MLflow sweep, or --curves with "
            "run_id, step and val/loss for a CSV source whose table has a run_id column)"
        )
    by_run = dict(tuple(curves.groupby("run_id")))
    logged = {} if lr_curves is None else dict(tuple(lr_curves.groupby("run_id")))
    used, notes = [], []
    for row in runs.to_dict("records"):
        points = by_run.get(row["run_id"])
        if points is None:
            notes.append(f"{row.get('trial_id', row['run_id'])}: no val/loss curve, left out")
            continue
        found = _run_curve(row, points, logged.get(row["run_id"]))
        if isinstance(found, str):
            notes.append(f"left out {found}")
        else:
            used.append(found)
    if not used:
        more = f"; … ({len(notes)} runs in all)" if len(notes) > 3 else ""
        raise UserError("schedule-law: no run can be fitted: " + "; ".join(notes[:3]) + more)
    return used, notes


def group_columns(runs: pd.DataFrame, group_by: Sequence[str] | None) -> tuple[str, ...]:
    """`group_by`, else every varied run parameter but the LR, the seed, branch lineage, the
    schedule and the run's length (one model under several schedules is one group)."""
    if group_by is not None:
        missing = [c for c in group_by if c not in runs.columns]
        if missing:
            raise UserError(f"--group-by: {missing} are not columns of the runs table")
        return tuple(group_by)
    found, _ = default_group_by(runs)
    return tuple(
        c for c in found if not c.startswith(lr.SCHEDULE_PREFIX) and c not in LENGTH_COLUMNS
    )


def grouped(
    curves: Sequence[RunCurve], runs: pd.DataFrame, columns: Sequence[str]
) -> list[list[RunCurve]]:
    """The curves by group, each tagged with its key; groups in the order of their keys' values,
    runs in table order."""
    names = runs.get("trial_id", runs["run_id"]).astype(str)
    rows = zip(runs.index, names, strict=True)
    keys = {name: {c: _plain(runs.at[i, c]) for c in columns} for i, name in rows}
    groups: dict[str, list[RunCurve]] = {}
    for c in curves:
        key = keys[c.name]
        tagged = RunCurve(c.name, c.schedule, c.peak, c.lrs, c.steps, c.loss, key)
        groups.setdefault(repr(sorted(key.items())), []).append(tagged)
    return sorted(groups.values(), key=lambda g: sort_key(list(g[0].key.values())))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _matches(run: RunCurve, row: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    for key, wanted in selector.items():
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        try:
            if not math.isclose(float(value), float(wanted), rel_tol=1e-9):
                return False
        except ValueError:
            if str(value) != wanted:
                return False
    return True


def select(
    group: Sequence[RunCurve], runs: pd.DataFrame, fit_on: Sequence[Mapping[str, str]]
) -> list[RunCurve]:
    """The group's fit runs: those matching any `--fit-on` selector (all of its KEY=VALUE), else
    the two whose LRs differ most (`schedule_distance`)."""
    if fit_on:
        rows = {str(r.get("trial_id", r["run_id"])): r for r in runs.to_dict("records")}
        for selector in fit_on:
            absent = [k for k in selector if k not in runs.columns]
            if absent:
                columns = [c for c in runs.columns if str(c).startswith(lr.SCHEDULE_PREFIX)]
                raise UserError(
                    f"--fit-on: {absent} are not columns of the runs table (its schedule "
                    f"columns: {columns})"
                )
        return [c for c in group if any(_matches(c, rows[c.name], s) for s in fit_on)]
    if len(group) < 2:
        return list(group)
    pair = max(combinations(group, 2), key=lambda p: schedule_distance(*p))
    return list(pair)


def schedule_distance(a: RunCurve, b: RunCurve) -> float:
    """Mean |η_a - η_b| / peak over the steps both ran: 0 for the same schedule, largest for a
    constant LR against a full decay (a trunk against its earliest branch)."""
    n = min(a.total_steps, b.total_steps)
    peak = max(a.peak, b.peak)
    return float(np.mean(np.abs(a.lrs[:n] - b.lrs[:n])) / peak)
