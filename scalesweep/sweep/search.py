"""YAML search spaces -> Ray Tune param space and searcher.

Grid spaces (`grid`, `logspace`) and isoFLOP budgets are expanded into *cells* before Tune sees
them (see plan.py); the other spaces are sampled within each cell:

- nothing sampled: Tune's own variant generator over the cells (`tune.grid_search`).
- sampled keys: one Optuna sampler per cell (`random`, `tpe`, `gp` or `cmaes`, seeded
  `search.seed + cell index`), `num_samples` trials per cell. OptunaSearch refuses a space that
  contains `tune.grid_search`, so grid × Optuna is done on purpose this way: TPE over the LR
  within each width, say, never across widths.

A resumed sweep builds its search afresh from what MLflow holds: finished trials are told to
their cell's sampler (and count against its samples), trials that were running are suggested
again with their exact values, and only the rest is sampled. Tune's own experiment restore is
not used (see docs/architecture.md, "Resume").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from scalesweep.experiment import Experiment, SearchSpace

CELL_KEY = "cell"


def tune_domain(space: SearchSpace) -> Any:
    """A sampled YAML space as a Tune distribution."""
    if space.kind == "loguniform":
        return tune.loguniform(*space.args)
    if space.kind == "uniform":
        return tune.uniform(*space.args)
    if space.kind == "int":
        low, high = space.args
        return tune.randint(low, high + 1)  # YAML bounds are inclusive, randint's upper is not
    if space.kind == "choice":
        return tune.choice(list(space.args))
    raise ValueError(f"{space.kind} is a grid space, not sampled")


def optuna_sampler(algorithm: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for `search.algorithm`, seeded (OptunaSearch ignores its own seed
    when given a sampler)."""
    if algorithm in ("grid", "random"):
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ValueError(f"no Optuna sampler for {algorithm!r}")


@dataclass(frozen=True)
class Done:
    """A trial of an earlier run of the sweep, read back from MLflow."""

    cell: dict[str, Any]
    sampled: dict[str, Any]
    value: float | None
    """The searcher's objective; None for a trial that did not finish (suggested again)."""


class CellwiseSearch(Searcher):
    """One Optuna searcher per grid cell; cells take turns until each ran `samples_per_cell`."""

    def __init__(
        self,
        cells: list[dict[str, Any]],
        sampled: dict[str, SearchSpace],
        *,
        algorithm: str,
        samples_per_cell: int,
        metric: str,
        mode: str,
        seed: int,
        history: Sequence[Done] = (),
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        space = {key: tune_domain(s) for key, s in sampled.items()}
        self.cells = cells
        self.samples_per_cell = samples_per_cell
        self.searchers = [
            OptunaSearch(
                space=space,
                metric=metric,
                mode=mode,
                sampler=optuna_sampler(algorithm, seed + index),
            )
            for index in range(len(cells))
        ]
        self.started = [0] * len(cells)
        self.owner: dict[str, int] = {}
        self.requeued: list[list[dict[str, Any]]] = [[] for _ in cells]
        self.requeued_ids: set[str] = set()
        for done in history:
            index = cells.index(done.cell)
            self.started[index] += 1
            if done.value is None:
                self.requeued[index].append(done.sampled)
            else:
                self.searchers[index].add_evaluated_point(done.sampled, done.value)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for index, queue in enumerate(self.requeued):
            if queue:  # a trial that was running when the sweep stopped: its exact values
                self.owner[trial_id] = index
                self.requeued_ids.add(trial_id)
                return {CELL_KEY: self.cells[index], **queue.pop(0)}
        open_cells = [i for i, n in enumerate(self.started) if n < self.samples_per_cell]
        if not open_cells:
            return Searcher.FINISHED  # type: ignore[return-value]
        index = min(open_cells, key=lambda i: self.started[i])  # round robin over the cells
        sampled = self.searchers[index].suggest(trial_id)
        if sampled is None:
            return None
        self.started[index] += 1
        self.owner[trial_id] = index
        return {CELL_KEY: self.cells[index], **sampled}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self.owner and trial_id not in self.requeued_ids:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id not in self.owner:
            return
        searcher = self.searchers[self.owner[trial_id]]
        if trial_id in self.requeued_ids:
            value = (result or {}).get(self.metric)
            if value is not None and not error:
                params = {
                    k: v for k, v in (result or {}).get("config", {}).items() if k != CELL_KEY
                }
                searcher.add_evaluated_point(params, value)
            return
        searcher.on_trial_complete(trial_id, result, error)


def build_search(
    experiment: Experiment,
    cells: list[dict[str, Any]],
    samples_per_cell: int,
    *,
    max_concurrent: int,
    history: Sequence[Done] = (),
) -> tuple[dict[str, Any], Searcher | BasicVariantGenerator, int]:
    """(param_space, search_alg, num_samples) for `tune.Tuner`, over the trials not yet
    finished. The concurrency cap lives in the search algorithm: Tune ignores
    `max_concurrent_trials` for a BasicVariantGenerator passed in, and wraps a Searcher in a
    ConcurrencyLimiter itself."""
    search = experiment.config.search
    sampled = experiment.sampled_spaces()
    if not sampled:
        finished = [done.cell for done in history if done.value is not None]
        param_space = {CELL_KEY: tune.grid_search([c for c in cells if c not in finished])}
        generator = BasicVariantGenerator(random_state=search.seed, max_concurrent=max_concurrent)
        return param_space, generator, 1
    searcher = CellwiseSearch(
        cells,
        sampled,
        algorithm=search.algorithm,
        samples_per_cell=samples_per_cell,
        metric=search.metric,
        mode=search.mode,
        seed=search.seed,
        history=history,
    )
    return {}, searcher, len(cells) * samples_per_cell - sum(d.value is not None for d in history)
