"""YAML search spaces -> Ray Tune param space and searcher.

Grid spaces (`grid`, `logspace`) and isoFLOP budgets are expanded into *cells* before Tune sees
them (see plan.py); the other spaces are sampled within each cell:

- `grid` / `random`: Tune's own variant generator, `tune.grid_search` over the cells and Tune
  distributions for the sampled keys, `num_samples` per cell.
- `tpe` / `gp` / `cmaes`: one `OptunaSearch` per cell, each with its own seeded Optuna sampler.
  OptunaSearch refuses a space that contains `tune.grid_search`, so grid × Optuna is done on
  purpose this way: TPE over the LR within each width, say, never across widths.
"""

from __future__ import annotations

import pickle
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from scalesweep.errors import UserError
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
    if algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ValueError(f"no Optuna sampler for {algorithm!r}")


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

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
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
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as stream:
            pickle.dump(self.__dict__, stream)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as stream:
            self.__dict__.update(pickle.load(stream))


def build_search(
    experiment: Experiment,
    cells: list[dict[str, Any]],
    samples_per_cell: int,
    *,
    max_concurrent: int,
) -> tuple[dict[str, Any], Searcher | BasicVariantGenerator, int]:
    """(param_space, search_alg, num_samples) for `tune.Tuner`. The concurrency cap lives in
    the search algorithm: Tune ignores `max_concurrent_trials` for a BasicVariantGenerator
    passed in, and wraps a Searcher in a ConcurrencyLimiter itself."""
    search = experiment.config.search
    sampled = experiment.sampled_spaces()
    if search.algorithm in ("grid", "random"):
        param_space = {CELL_KEY: tune.grid_search(cells)}
        param_space.update({key: tune_domain(s) for key, s in sampled.items()})
        generator = BasicVariantGenerator(random_state=search.seed, max_concurrent=max_concurrent)
        return param_space, generator, samples_per_cell
    if not sampled:
        raise UserError(
            f"search.algorithm: got {search.algorithm!r}, but no key is sampled (every space "
            "is a grid or logspace); use `algorithm: grid`, or write the keys to tune as "
            "loguniform/uniform/int/choice"
        )
    searcher = CellwiseSearch(
        cells,
        sampled,
        algorithm=search.algorithm,
        samples_per_cell=samples_per_cell,
        metric=search.metric,
        mode=search.mode,
        seed=search.seed,
    )
    return {}, searcher, len(cells) * samples_per_cell
