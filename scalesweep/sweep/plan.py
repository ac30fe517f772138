"""Expand a sweep file into its grid cells and isoFLOP trials, without Ray (pure).

A *cell* is one point of the grid: the Cartesian product of every `grid`/`logspace` space and,
when the file has a `budget` section, every kept (FLOP budget, shape) pair. The searcher then
runs `search.num_samples` trials per cell, sampling the other spaces.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from scalesweep import metrics as m
from scalesweep.branches import Branch, cooldown_flops, plan_branch
from scalesweep.config import BranchesConfig, ExperimentConfig, batch_split, total_steps
from scalesweep.errors import UserError
from scalesweep.experiment import Experiment, set_dotted
from scalesweep.flops import count_params, flops_per_token, paired_params

# Short names for the keys that most often differ between trials, for readable trial names.
SHORT_NAMES = {
    "model.width": "w",
    "model.depth": "d",
    "optim.lr": "lr",
    "optim.weight_decay": "wd",
    "model.qk_norm": "qkn",
    "model.z_loss": "z",
    "train.tokens": "tok",
    "train.seed": "seed",
    m.BRANCH_TOKENS: "b",
}


@dataclass(frozen=True)
class PlannedTrial:
    name: str
    cell: dict[str, Any]
    """The dotted keys this cell sets."""
    config: ExperimentConfig
    """The cell's resolved config (sampled keys at their first value): resolved and validated
    here, once; a trial sets its sampled keys on it (`trial_config`)."""
    params: int
    tokens: int
    """Tokens actually trained: whole steps of batch_size · seq_len."""
    flops: float
    steps: int
    budget: float | None = None
    """The isoFLOP budget C this trial belongs to, if any."""
    branches: tuple[Branch, ...] = ()
    """Its cooldown branches (with a `branches` section): runs at smaller budgets forked from
    this trial, the trunk."""
    branch_flops: float = 0.0
    """What the branches add: their cooldowns."""

    @property
    def budgets(self) -> list[tuple[int, float | None]]:
        """(tokens, isoFLOP budget) of each branch, what a trial needs to rebuild them."""
        return [(b.tokens, b.budget) for b in self.branches]


@dataclass(frozen=True)
class Plan:
    trials: list[PlannedTrial]
    sampled_keys: list[str]
    samples_per_cell: int
    notes: list[str] = field(default_factory=list)

    @property
    def cells(self) -> list[dict[str, Any]]:
        return [t.cell for t in self.trials]

    @property
    def n_trials(self) -> int:
        return len(self.trials) * self.samples_per_cell

    @property
    def n_runs(self) -> int:
        """MLflow child runs: the trials and their cooldown branches."""
        return sum(1 + len(t.branches) for t in self.trials) * self.samples_per_cell

    @property
    def total_flops(self) -> float:
        """Exact when nothing is sampled; with sampled keys, per-cell FLOPs × samples."""
        return sum(t.flops + t.branch_flops for t in self.trials) * self.samples_per_cell

    @property
    def from_scratch_flops(self) -> float:
        """The same runs each trained from step 0 (what `branches` saves against)."""
        full = sum(t.flops * (1 + sum(b.steps for b in t.branches) / t.steps) for t in self.trials)
        return full * self.samples_per_cell


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def trial_name(assignment: dict[str, Any]) -> str:
    """Deterministic, readable name from a trial's dotted assignment: the same trial gets the
    same name on every run, so a resumed sweep finds its runs (no timestamps, no random ids)."""
    canonical = json.dumps(assignment, sort_keys=True, default=str)
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:8]
    parts = [
        f"{SHORT_NAMES[key]}{_format_value(assignment[key])}"
        for key in SHORT_NAMES
        if key in assignment
    ]
    return "-".join([*parts, digest])


def vocab_size(config: ExperimentConfig) -> int:
    from scalesweep.data import model_vocab
    from scalesweep.data_path import load_shards

    data_vocab = load_shards(config.data.path).vocab_size
    return model_vocab(config.model.vocab_size, data_vocab, config.data.path)


def _check_windows(trials: list[PlannedTrial]) -> None:
    """Every trial's window (seq_len + 1 tokens) must fit in both splits of its data: else every
    attempt of the trial would fail inside Ray, after its start."""
    from scalesweep.data_path import load_shards

    longest: dict[str, PlannedTrial] = {}
    for trial in trials:
        path = trial.config.data.path
        if path not in longest or trial.config.model.seq_len > longest[path].config.model.seq_len:
            longest[path] = trial
    for path, trial in longest.items():
        shards, seq_len = load_shards(path), trial.config.model.seq_len
        for split, tokens in (("validation", shards.val), ("training", shards.train)):
            if seq_len + 1 > len(tokens):
                raise UserError(
                    f"model.seq_len: got {seq_len} (trial {trial.name}), but a window needs "
                    f"seq_len + 1 tokens and the {split} split of data.path={path!r} holds "
                    f"{len(tokens):,}"
                )


def _check_count(count: int, config: ExperimentConfig) -> None:
    """The grid × budget cells × samples, against `search.max_trials` (the grid alone was
    checked when the file was read)."""
    if count > config.search.max_trials:
        raise UserError(
            f"search.max_trials: the sweep holds {count:,} trials (grid × budget cells × "
            f"samples), more than the limit of {config.search.max_trials:,}; shrink it, or "
            "raise search.max_trials if you mean it"
        )


def _check_batch_splits(config: ExperimentConfig) -> None:
    """The batch must split into the trial's ranks × micro-batches (else every rank would find
    out, and fail, only once the trial started)."""
    ranks, batch = config.resources.workers_per_trial, config.train.batch_size
    if batch_split(batch, config.train.micro_batch_size, ranks) is None:
        micro = config.train.micro_batch_size or batch // ranks
        raise UserError(
            f"train.batch_size: got {batch}, which does not split into "
            f"resources.workers_per_trial={ranks} ranks × micro-batches of {micro or 'none'}"
        )


def planned_params(config: ExperimentConfig, budget: float | None) -> dict[str, Any]:
    """The plan's intent as params: the token budget D, and the FLOP budget C of an isoFLOP
    trial. Fits group runs by these, not by the whole steps each batch size rounds to."""
    tokens = config.train.tokens
    if tokens is None:
        tokens = total_steps(config) * config.train.batch_size * config.model.seq_len
    planned: dict[str, Any] = {m.PLANNED_TOKENS: tokens}
    if budget is not None:
        planned[m.PLANNED_FLOPS] = budget
    return planned


def trial_config(cell_config: ExperimentConfig, sampled: dict[str, Any]) -> ExperimentConfig:
    """A trial's config: its cell's resolved config with the searcher's sampled keys set."""
    if not sampled:
        return cell_config
    tree = cell_config.model_dump(mode="json")
    for key, value in sampled.items():
        set_dotted(tree, key, value)
    return ExperimentConfig.model_validate(tree)


def _budget_cells(experiment: Experiment, vocab: int, notes: list[str]) -> list[dict[str, Any]]:
    """(budget, shape) pairs with train.tokens = C / FLOPs-per-token, filtered by tokens/param."""
    budget = experiment.config.budget
    if budget is None:
        return [{}]
    cells = []
    convention = experiment.config.train.flop_counting
    for c, (i, shape) in itertools.product(budget.flops, enumerate(budget.shapes)):
        shape_keys = {f"model.{k}": v for k, v in shape.model_dump().items() if v is not None}
        try:
            model = experiment.config.model.model_copy(
                update={k.removeprefix("model."): v for k, v in shape_keys.items()}
            )
            model = type(model).model_validate(model.model_dump())
        except ValidationError as error:  # the model's rule, named for this shape
            rule = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
            raise UserError(f"budget.shapes[{i}] {shape.model_dump()}: {rule}") from None
        per_token = flops_per_token(model, convention, vocab)
        tokens = round(c / per_token)
        # tokens per parameter in the N the convention counts (C ≈ 6·N·D)
        ratio = tokens / paired_params(count_params(model, vocab), convention)
        low, high = budget.min_tokens_per_param, budget.max_tokens_per_param
        if (low is not None and ratio < low) or (high is not None and ratio > high):
            notes.append(
                f"left out width={shape.width} depth={shape.depth} at C={c:.3g}: "
                f"{ratio:.3g} tokens/param outside [{low}, {high}]"
            )
            continue
        cells.append({**shape_keys, "train.tokens": tokens, "train.steps": None, "_budget": c})
    if not cells:
        raise UserError("budget: every (flops, shape) pair was left out by the tokens/param bounds")
    return cells


def _trunk(trial: PlannedTrial, budgets: list[tuple[int, float | None]]) -> PlannedTrial:
    per_step = trial.flops / trial.steps
    branches = tuple(
        plan_branch(trial.config, tokens, trial_name({**trial.cell, m.BRANCH_TOKENS: tokens}), c)
        for tokens, c in sorted(budgets, key=lambda pair: pair[0])
    )
    flops = sum(cooldown_flops(b, per_step) for b in branches)
    return replace(trial, branches=branches, branch_flops=flops)


def with_branches(trials: list[PlannedTrial], branches: BranchesConfig) -> list[PlannedTrial]:
    """The trials as trunks with their cooldown branches: every trial with a branch at each
    of `branches.tokens`, or (`budgets_from: isoflop`) the trials that differ only in their
    budget as one trunk, the largest, with a branch at each other budget."""
    if branches.tokens is not None:
        return [_trunk(t, [(d, None) for d in branches.tokens]) for t in trials]
    groups: dict[str, list[PlannedTrial]] = {}
    for trial in trials:
        shape = {k: v for k, v in trial.cell.items() if k not in ("train.tokens", "train.steps")}
        groups.setdefault(json.dumps(shape, sort_keys=True, default=str), []).append(trial)
    trunks = []
    for members in groups.values():
        trunk = max(members, key=lambda t: t.tokens)
        budgets = [(int(t.config.train.tokens or t.tokens), t.budget) for t in members]
        trunk_budget = (int(trunk.config.train.tokens or trunk.tokens), trunk.budget)
        trunks.append(_trunk(trunk, [pair for pair in budgets if pair != trunk_budget]))
    return trunks


def planned_trial(
    experiment: Experiment,
    cell: dict[str, Any],
    budget: float | None,
    vocab: int,
    notes: list[str],
) -> PlannedTrial:
    """One cell resolved (sampled keys at their first value) and counted; a note when whole
    steps miss its isoFLOP budget by more than 1 %."""
    probe = {key: space.probe_values()[0] for key, space in experiment.sampled_spaces().items()}
    resolved = experiment.resolve({**probe, **cell})
    _check_batch_splits(resolved)
    steps = total_steps(resolved)
    tokens = steps * resolved.train.batch_size * resolved.model.seq_len
    per_token = flops_per_token(resolved.model, resolved.train.flop_counting, vocab)
    trial = PlannedTrial(
        name=trial_name(cell),
        cell=cell,
        config=resolved,
        params=count_params(resolved.model, vocab).total,
        tokens=tokens,
        flops=per_token * tokens,
        steps=steps,
        budget=budget,
    )
    if budget is not None and not math.isclose(per_token * tokens, budget, rel_tol=0.01):
        notes.append(
            f"{trial.name}: whole steps give {per_token * tokens:.3g} FLOPs for C={budget:.3g}"
        )
    return trial


def plan(experiment: Experiment) -> Plan:
    """Every grid cell of the sweep, with its size, tokens, FLOPs and steps."""
    config = experiment.config
    notes: list[str] = []
    vocab = vocab_size(config)
    grid = experiment.grid_spaces()
    grid_points = [
        dict(zip(grid, values, strict=True))
        for values in itertools.product(*(space.grid_values() for space in grid.values()))
    ]
    samples = config.search.num_samples
    sampled = experiment.sampled_spaces()
    if not sampled and config.search.algorithm not in ("grid", "random"):
        raise UserError(
            f"search.algorithm: got {config.search.algorithm!r}, but no key is sampled (every "
            "space is a grid or logspace); use `algorithm: grid`, or write the keys to tune as "
            "loguniform/uniform/int/choice"
        )
    if samples > 1 and (config.search.algorithm == "grid" or not sampled):
        # Repeats of a cell differ only by their training seed (else they would be one trial).
        seeds = [config.train.seed + i for i in range(samples)]
        grid_points = [{**p, "train.seed": s} for p in grid_points for s in seeds]
        samples = 1
    budget_cells = _budget_cells(experiment, vocab, notes)
    _check_count(len(grid_points) * len(budget_cells) * samples, config)
    trials = []
    for point, budget_cell in itertools.product(grid_points, budget_cells):
        budget = budget_cell.pop("_budget", None) if budget_cell else None
        trials.append(planned_trial(experiment, {**point, **budget_cell}, budget, vocab, notes))
    _check_windows(trials)
    if config.branches is not None:
        trials = with_branches(trials, config.branches)
    return Plan(trials=trials, sampled_keys=list(sampled), samples_per_cell=samples, notes=notes)
