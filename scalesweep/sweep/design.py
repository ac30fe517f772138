"""Which runs next, from a sweep file and its runs in MLflow: the edge of `scalesweep.fit.design`.

design_space(experiment)            the file's shapes × budgets as numbers (`fit.design`'s
                                    `Shape`s), checked: a model-size key, a target above them
finished_points(experiment, table)  the runs so far as (params, tokens, loss, flops) and
                                    the (shape, budget) pairs they cover
propose(...)                        the recommendation and each proposal as a `PlannedTrial`,
                                    its grid keys (the LR) at the best value so far
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.experiment import Experiment
from scalesweep.fit.design.candidates import Candidate, Shape, candidates
from scalesweep.fit.design.information import Objective
from scalesweep.fit.design.recommend import Recommendation, recommend
from scalesweep.flops import count_params, flops_per_token, paired_params
from scalesweep.sweep.plan import PlannedTrial, planned_trial, vocab_size

SHAPE_KEYS = ("model.width", "model.depth")
"""What names a shape in the runs table (a run's `head_dim` follows from the file)."""


@dataclass(frozen=True)
class Space:
    """The candidates the file allows: its `budget.shapes` at its `budget.flops`."""

    shapes: list[Shape]
    cells: dict[str, dict[str, Any]]
    """Each shape's dotted model keys, by its label."""
    budgets: list[float]
    min_tokens_per_param: float | None
    max_tokens_per_param: float | None
    vocab: int

    def pool(self, done: frozenset[tuple[str, float]]) -> list[Candidate]:
        return candidates(
            self.shapes,
            self.budgets,
            min_tokens_per_param=self.min_tokens_per_param,
            max_tokens_per_param=self.max_tokens_per_param,
            done=done,
        )


def label(width: Any, depth: Any) -> str:
    return f"w{int(width)}-d{int(depth)}"


def design_space(experiment: Experiment, target_flops: float) -> Space:
    """The file's shapes and budgets; a file without model sizes, or a target not above its
    largest budget, is refused naming the key."""
    config = experiment.config
    budget = config.budget
    if budget is None:
        swept = [k for k in experiment.spaces if k.startswith("model.")]
        raise UserError(
            f"{experiment.source}: the search space has no model-size key: the recommender "
            "proposes (shape, budget) pairs from `budget.shapes` × `budget.flops` (an isoFLOP "
            f"ladder, see search_spaces/isoflop.yaml), and the file has no `budget` section"
            + (f" (it sweeps {swept})" if swept else "")
        )
    largest = max(budget.flops)
    if not (math.isfinite(target_flops) and target_flops > largest):
        raise UserError(
            f"--target-flops: got {target_flops:.3g}, but the forecast is for a budget above the "
            f"ladder's, and budget.flops reaches {largest:.3g}; pass a larger C"
        )
    vocab = vocab_size(config)
    convention = config.train.flop_counting
    shapes, cells = [], {}
    for shape in budget.shapes:
        keys = {f"model.{k}": v for k, v in shape.model_dump().items() if v is not None}
        model = experiment.config.model.model_copy(
            update={k.removeprefix("model."): v for k, v in keys.items()}
        )
        name = label(shape.width, shape.depth)
        n = paired_params(count_params(model, vocab), convention)
        shapes.append(Shape(name, float(n), flops_per_token(model, convention, vocab)))
        cells[name] = keys
    return Space(
        shapes,
        cells,
        [float(c) for c in budget.flops],
        budget.min_tokens_per_param,
        budget.max_tokens_per_param,
        vocab,
    )


def finished_points(
    space: Space, table: pd.DataFrame
) -> tuple[pd.DataFrame, frozenset[tuple[str, float]]]:
    """(params, tokens, loss, flops) of the completed runs, N as the convention pairs it, and
    the (shape, budget) pairs every run of the sweep (finished or not) already covers."""
    from scalesweep.fit.runs import apply_column_map, choose_n

    columns = ["params", "tokens", "loss", "flops"]
    if table.empty or not set(SHAPE_KEYS) <= set(table.columns):
        return pd.DataFrame(columns=columns), frozenset()
    runs = apply_column_map(table, {})
    budgets = np.array(space.budgets)
    source = next((c for c in (m.PLANNED_FLOPS, m.TRAINED_FLOPS) if c in runs.columns), None)
    planned = (
        pd.to_numeric(runs[source], errors="coerce") if source else pd.Series(np.nan, runs.index)
    )
    done = set()
    for (width, depth), c in zip(
        runs[list(SHAPE_KEYS)].itertuples(index=False), planned, strict=True
    ):
        if pd.notna(c) and c > 0:
            nearest = float(budgets[np.argmin(np.abs(np.log(budgets / c)))])
            done.add((label(width, depth), nearest))
    ok = runs[m.STATUS].eq(m.COMPLETED) & pd.to_numeric(runs.get("loss"), errors="coerce").gt(0)
    if not ok.any():
        return pd.DataFrame(columns=columns), frozenset(done)
    chosen, _ = choose_n(runs[ok])
    return chosen[columns].astype(float).reset_index(drop=True), frozenset(done)


def read_runs(experiment: Experiment) -> pd.DataFrame:
    """The sweep's runs table from its MLflow store (every invocation of it); empty when the
    store or the experiment does not exist yet (a first round)."""
    from scalesweep import tracking
    from scalesweep.sources import read_table

    uri = tracking.resolve_tracking_uri(experiment.config.tracking.uri)
    try:
        return read_table(experiment.config.name, tracking_uri=uri)
    except UserError:
        return pd.DataFrame()


@dataclass(frozen=True)
class Proposal:
    recommendation: Recommendation
    trials: list[PlannedTrial]
    """The proposals as trials of the sweep, in the recommendation's order."""
    notes: list[str] = field(default_factory=list)


def grid_values(experiment: Experiment, table: pd.DataFrame, params: float) -> dict[str, Any]:
    """The file's grid keys (the LR, say) for a run of `params`: the value of the best
    completed run of the nearest size so far, or the grid's middle value before any."""
    out: dict[str, Any] = {}
    ok = pd.DataFrame()
    if not table.empty and "loss" in table and "params" in table:
        ok = table[table[m.STATUS].eq(m.COMPLETED) & table["loss"].gt(0)]
    for key, space in experiment.grid_spaces().items():
        values = space.grid_values()
        out[key] = values[len(values) // 2]
        if key in ok.columns and not ok.empty:
            distance = np.abs(np.log(ok["params"].astype(float) / params))
            near = ok[distance <= distance.min() + 1e-9]
            out[key] = near.loc[near["loss"].idxmin(), key]
    return out


def propose(
    experiment: Experiment,
    table: pd.DataFrame,
    *,
    k: int,
    target_flops: float,
    objective: Objective = "n_opt",
    level: float = 0.95,
) -> Proposal:
    """The `k` runs that narrow the forecast at `target_flops` most per FLOP, as trials."""
    from scalesweep.fit.runs import apply_column_map

    space = design_space(experiment, target_flops)
    points, done = finished_points(space, table)
    pool = space.pool(done)
    recommendation = recommend(
        points, pool, target_flops=target_flops, k=k, objective=objective, level=level
    )
    runs = apply_column_map(table, {}) if not table.empty else table
    notes: list[str] = []
    trials = [_trial(experiment, space, r.candidate, runs, notes) for r in recommendation.proposals]
    return Proposal(recommendation, trials, notes)


def _trial(
    experiment: Experiment, space: Space, c: Candidate, runs: pd.DataFrame, notes: list[str]
) -> PlannedTrial:
    per_token = c.shape.flops_per_token
    cell = {
        **space.cells[c.shape.label],
        **grid_values(experiment, runs, c.params),
        "train.tokens": round(c.budget / per_token),
        "train.steps": None,
    }
    return planned_trial(experiment, cell, c.budget, space.vocab, notes)
