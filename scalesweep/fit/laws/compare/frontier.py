"""The variant column, its baseline, and each variant's frontier at each compute budget.

Budgets are the isoFLOP fit's (`isoflop.approach2.budget_labels`: `planned.flops`, else the
runs' FLOPs grouped within 10 %). Within a (variant, budget) cell a *configuration* is one
setting of every other swept key (LR, width, ...) but the seed; its loss is the mean over its
seeds, and the frontier is the best configuration's loss, as the isoFLOP and Step Law fits take
the best run per cell.

Resampling (`Cells.resample`): each configuration's mean is redrawn as the mean of as many runs
as it has, each run's deviation drawn from the pool of every run's log deviation from its own
configuration's mean. The runs are resampled within each variant and budget (the candidates
stay the same, so the bootstrap measures the seed noise of the frontier, not the grid's
choice); their noise is pooled over variants, budgets and configurations, because a sweep has
1 to 3 seeds per configuration (the bootstrap of 2 values has 3 outcomes, and sees no noise at
all in one run) while the relative noise of a final loss is alike across them. Two small-sample
corrections: a deviation from a mean of n runs has (n−1)/n of a run's variance, so it is scaled
by √(n/(n−1)) (Davison and Hinkley 1997, §3.3's adjusted residuals); and the pool estimates the
noise from few degrees of freedom, so the draws are widened by Student's t quantile over the
normal one at the fit's level (16 degrees of freedom, the known-truth test's: 8 % wider). On
the known-truth test's runs M = 1 was inside the 95 % interval at the largest budget in 19 of
20 repetitions (20 of 20 with a shared E; docs/compare.md).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.laws.isoflop.approach2 import budget_labels
from scalesweep.fit.laws.lr.groups import LINEAGE_PREFIX, SEED_COLUMNS
from scalesweep.fit.numerics.regression import t_quantile
from scalesweep.fit.runs import PLANNED_FLOPS, SAME_SIZE, group_budgets, prepare

FALSE_NAMES = ("false", "0", "0.0", "none", "off")


def label(value: Any) -> str:
    """A variant value as the answer names it (`True`, `cosine`, `0.1`)."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_column(runs: pd.DataFrame, column: str | None) -> pd.Series:
    """The variant labels of every run; errors name `--variant` and the rule."""
    if not column:
        varied = [c for c in map(str, runs.columns) if "." in c and runs[c].nunique() > 1]
        raise UserError(
            f"--kind compare needs --variant COLUMN, the column whose values are compared "
            f"(varied run parameters here: {varied or 'none'})"
        )
    if column not in runs.columns:
        names = list(map(str, runs.columns))
        close = difflib.get_close_matches(column, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise UserError(
            f"--variant {column!r}: the table has no such column{hint} (its run parameters: "
            f"{sorted(c for c in names if '.' in c)})"
        )
    labels = runs[column].map(label)
    values = sorted(labels.dropna().unique())
    if len(values) < 2:
        raise UserError(
            f"--variant {column}: a comparison needs at least 2 values of `{column}`, but every "
            f"run has {values[0] if values else 'no value'}"
        )
    return labels


def choose_baseline(labels: pd.Series, baseline: str | None, column: str) -> tuple[str, str]:
    """(the baseline value, why it was chosen): `--baseline`, else the "off" value (False,
    0), else the most common value (ties: the first in the table)."""
    values = list(dict.fromkeys(labels))
    if baseline is not None:
        match = [v for v in values if v.lower() == str(baseline).lower()]
        if not match:
            raise UserError(
                f"--baseline {baseline!r}: `{column}` has no such value; its values are {values}"
            )
        return match[0], "--baseline"
    off = [v for v in values if v.lower() in FALSE_NAMES]
    if off:
        return off[0], "the switched-off value"
    counts = labels.value_counts()
    common = [v for v in values if counts[v] == counts.max()]
    return common[0], "the most common value" if len(common) == 1 else "the first value"


@dataclass(frozen=True)
class Cells:
    """The runs of each (variant, budget) cell, by configuration."""

    variants: tuple[str, ...]
    """Variant values, the baseline first."""
    budgets: np.ndarray
    """(B,) the compute budgets C, ascending."""
    cells: tuple[tuple[tuple[np.ndarray, ...], ...], ...]
    """[v][b] -> the losses of each configuration (one array of its runs per configuration)."""
    best_config: tuple[tuple[dict[str, Any], ...], ...]
    """[v][b] -> the frontier configuration's keys (LR, width, ...)."""
    best_runs: tuple[tuple[pd.DataFrame, ...], ...]
    """[v][b] -> the frontier configuration's runs (for throughput)."""

    def frontier(self) -> np.ndarray:
        """(V, B) the best configuration's mean loss per cell."""
        return np.array([[min(c.mean() for c in cell) for cell in row] for row in self.cells])

    def residuals(self) -> tuple[np.ndarray, int]:
        """(every run's log deviation from its configuration's mean, scaled by √(n/(n−1)),
        pooled over variants, budgets and configurations; their degrees of freedom)."""
        parts = [
            (np.log(x) - np.log(x).mean()) * np.sqrt(len(x) / (len(x) - 1))
            for row in self.cells
            for cell in row
            for x in cell
            if len(x) > 1
        ]
        dof = sum(len(x) - 1 for x in parts)
        return (np.concatenate(parts), dof) if parts else (np.zeros(1), 0)

    def resample(self, rng: np.random.Generator, k: int, level: float) -> np.ndarray:
        """(k, V, B) frontiers from k resamples (see the module docstring)."""
        from scipy.stats import norm

        out = np.empty((k, len(self.variants), len(self.budgets)))
        pool, dof = self.residuals()
        pool = pool * (t_quantile(level, dof) / norm.ppf(0.5 + level / 2) if dof else 1.0)
        for v, row in enumerate(self.cells):
            for b, cell in enumerate(row):
                means = [
                    x.mean() * np.exp(pool[rng.integers(0, pool.size, (k, len(x)))].mean(axis=1))
                    for x in cell
                ]
                out[:, v, b] = np.min(means, axis=0)
        return out

    def upto(self, n: int) -> Cells:
        """The cells of the `n` smallest budgets (a backtest's refit)."""
        return Cells(
            self.variants,
            self.budgets[:n],
            tuple(row[:n] for row in self.cells),
            tuple(row[:n] for row in self.best_config),
            tuple(row[:n] for row in self.best_runs),
        )

    @property
    def min_seeds(self) -> int:
        return min(len(c) for row in self.cells for cell in row for c in cell)


def config_columns(runs: pd.DataFrame, variant: str) -> list[str]:
    """The swept keys a configuration is made of: every run parameter that varies, but the
    variant, the seed, branch lineage and the plan's own bookkeeping."""
    return [
        str(c)
        for c in runs.columns
        if "." in str(c)
        and str(c) != variant
        and str(c) not in SEED_COLUMNS
        and not str(c).startswith((LINEAGE_PREFIX, "planned.", "scalesweep."))
        and runs[c].astype(str).nunique() > 1
    ]


def _shared_budgets(
    frame: pd.DataFrame, labels: np.ndarray, variants: Sequence[str], notes: list[str]
) -> np.ndarray:
    """The budgets every variant has a completed run at; the others named in `notes`."""
    budgets = np.unique(labels)
    keep = []
    for budget in budgets:
        at = frame["_variant"][labels == budget]
        missing = [v for v in variants if v not in set(at)]
        if missing:
            notes.append(
                f"compare: budget C = {budget:.3g} left out: no completed run of "
                f"{', '.join(missing)} there"
            )
        else:
            keep.append(budget)
    return np.array(keep)


def build_cells(
    runs: pd.DataFrame, variant: str, baseline: str, labels: pd.Series, notes: list[str]
) -> Cells:
    """The (variant, budget) cells of the completed runs; errors when fewer than 2 budgets hold
    every variant."""
    frame = runs.assign(_variant=labels.to_numpy())
    prepared = prepare(frame, kind="compare", numeric=("flops", "loss"), positive=("flops", "loss"))
    notes += prepared.notes
    frame = prepared.frame
    variants = (baseline, *sorted(v for v in frame["_variant"].unique() if v != baseline))
    gone = sorted(set(labels.dropna()) - set(variants))
    if gone:
        notes.append(f"compare: {variant} = {', '.join(gone)} left out: no completed run")
    if len(variants) < 2:
        raise UserError(f"--variant {variant}: only {baseline} has completed runs")
    budget, source = budget_labels(frame)
    notes.append(f"compare: {source}")
    shared = _shared_budgets(frame, budget, variants, notes)
    if len(shared) < 2:
        raise UserError(
            f"--variant {variant}: a compute multiplier needs every value of `{variant}` at 2 "
            f"or more budgets, but {len(shared)} budget(s) hold completed runs of all of "
            f"{list(variants)} (budgets: {', '.join(f'{b:.3g}' for b in np.unique(budget))})"
            + _param_hint(frame, variant)
        )
    keys = config_columns(frame, variant)
    cells, best, best_runs = [], [], []
    for v in variants:
        row, row_best, row_runs = [], [], []
        for b in shared:
            rows = frame[(frame["_variant"] == v) & (budget == b)]
            groups = list(rows.groupby(keys, sort=True, dropna=False)) if keys else [((), rows)]
            losses = [g["loss"].to_numpy(float) for _, g in groups]
            i = int(np.argmin([x.mean() for x in losses]))
            key = groups[i][0] if isinstance(groups[i][0], tuple) else (groups[i][0],)
            row.append(tuple(losses))
            row_best.append(dict(zip(keys, key, strict=True)))
            row_runs.append(groups[i][1])
        cells.append(tuple(row))
        best.append(tuple(row_best))
        best_runs.append(tuple(row_runs))
    return Cells(variants, shared, tuple(cells), tuple(best), tuple(best_runs))


def _param_hint(frame: pd.DataFrame, variant: str) -> str:
    """When the variant changes N, its runs' FLOPs fall in budgets of their own."""
    if m.PARAMS not in frame.columns:
        return ""
    ratio = param_change(frame, variant)
    if ratio is None or ratio < SAME_SIZE:
        return ""
    return (
        f"; `{variant}` changes the parameter count (up to {ratio:.2f}× at the same shape), so "
        f"its runs' FLOPs land in budgets of their own: plan the budgets (`planned.flops`, an "
        f"isoFLOP sweep) so that each variant's C is counted at the same budget"
    )


def param_change(frame: pd.DataFrame, variant: str) -> float | None:
    """The largest ratio of parameter counts between runs of one shape (the other model keys,
    the planned budget and the trained tokens within 1 % equal), or None when the table has
    no `params`: what the variant alone does to N."""
    if m.PARAMS not in frame.columns:
        return None
    keys = [frame[c].astype(str) for c in config_columns(frame, variant) if c.startswith("model.")]
    for column in (PLANNED_FLOPS, "tokens"):
        if column in frame.columns:
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
            if np.isfinite(values).all() and (values > 0).all():
                keys.append(pd.Series(group_budgets(values, SAME_SIZE), index=frame.index))
    params = pd.to_numeric(frame[m.PARAMS], errors="coerce")
    grouped = params.groupby(keys) if keys else params.groupby(np.zeros(len(frame)))
    spread = grouped.max() / grouped.min()
    return float(spread.max()) if len(spread) else None


SWEEP_SECTIONS = ("model.", "optim.", "schedule.")
"""The sections whose switches a sweep's own report compares (`sweep_variant`)."""


def sweep_variant(runs: pd.DataFrame) -> str | None:
    """The column a sweep's own report compares: the first boolean or categorical model, optim
    or schedule key with every value completed at 2 or more budgets; None when there is none."""
    if "flops" not in runs.columns:
        return None
    try:
        frame = prepare(runs, kind="compare", numeric=("flops", "loss"), positive=("flops",)).frame
    except UserError:
        return None
    if frame.empty:
        return None
    budget, _ = budget_labels(frame)
    for column in map(str, frame.columns):
        if not column.startswith(SWEEP_SECTIONS):
            continue
        values = frame[column].map(label)
        distinct = set(values.dropna())
        numeric = pd.to_numeric(pd.Series(sorted(distinct)), errors="coerce").notna().all()
        switch = {v.lower() for v in distinct} <= {"true", "false"}
        if len(distinct) < 2 or (numeric and not switch):
            continue
        complete = [b for b in np.unique(budget) if set(values[budget == b]) >= distinct]
        if len(complete) >= 2:
            return column
    return None
