"""Cooldown branches (Hägele et al. 2024 §5): scaling laws from fewer runs.

A constant LR followed by a short cooldown (20% of the run, 1-sqrt shape) matches a cosine
schedule, so a run of D_i tokens need not be trained from step 0: it is the trunk (a longer
WSD run of the same model) up to the step where the D_i-token WSD run would start its
cooldown, then that cooldown. One trunk per model and a branch per smaller budget cost the
trunk plus the cooldowns, instead of every run in full.

Exactness: a branch starts from the trunk's exact state at its fork step (model, optimizer,
step, RNG; the data position is the step), and the trunk's LR up to that step is the
standalone run's, because the standalone run is the trunk's config trained on D_i tokens with
the trunk's warmup as a step count. So a branch's curve is the standalone run's
(tests/test_branches.py checks it to 1e-6 on CPU).

Branches run inside the trunk's trial, in fork order: fork (the trunk's state is checkpointed
there and kept in memory), cool down, evaluate, return to the trunk. A trial that dies resumes
from its last checkpoint: finished branches are recorded in the trunk's state, an unfinished
one starts again from its fork. Why not one trial per branch: the fork state is in memory
already (no checkpoint round trip through shared storage), Tune has no dependencies between
trials (a branch could not start before its trunk reached the fork), and resume stays one
mechanism; there are as many trunks as model shapes × hyperparameters to keep GPUs busy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from scalesweep import metrics as m
from scalesweep.config import ExperimentConfig, total_steps
from scalesweep.errors import UserError
from scalesweep.schedules import cooldown_start, warmup_steps

if TYPE_CHECKING:  # planning needs no torch
    from scalesweep.callbacks import Callback
    from scalesweep.summary import TrainSummary
    from scalesweep.train import Trainer


@dataclass(frozen=True)
class Branch:
    """One cooldown branch of a trunk."""

    name: str
    """Its trial id (its own MLflow child run)."""
    tokens: int
    """The token budget D_i it stands for (planned)."""
    config: ExperimentConfig
    """The standalone run it equals: the trunk's config on `tokens`, warmup as a step count."""
    fork_step: int
    """The trunk step it forks from: its own cooldown's first step."""
    steps: int
    """Its total steps (those of the standalone run)."""
    budget: float | None = None
    """The isoFLOP budget C it belongs to, if any."""


def standalone_config(trunk: ExperimentConfig, tokens: int) -> ExperimentConfig:
    """The run a branch of `tokens` tokens stands for (see the module docstring)."""
    warmup = warmup_steps(trunk.schedule.warmup, total_steps(trunk))
    train = trunk.train.model_copy(update={"tokens": tokens, "steps": None})
    schedule = trunk.schedule.model_copy(update={"warmup": float(warmup)})
    return trunk.model_copy(update={"train": train, "schedule": schedule, "branches": None})


def plan_branch(trunk: ExperimentConfig, tokens: int, name: str, budget: float | None) -> Branch:
    """A branch of `trunk` at `tokens`, checked: it must fork inside the trunk's constant phase."""
    config = standalone_config(trunk, tokens)
    steps = total_steps(config)
    fork = cooldown_start(config.schedule, steps)
    trunk_steps = total_steps(trunk)
    trunk_cooldown = cooldown_start(trunk.schedule, trunk_steps)
    warmup = warmup_steps(trunk.schedule.warmup, trunk_steps)
    assert fork is not None and trunk_cooldown is not None  # WSD, checked by the config
    if not (steps < trunk_steps and warmup <= fork <= trunk_cooldown):
        raise UserError(
            f"branches: a branch of {tokens} tokens ({steps} steps, cooldown from step {fork}) "
            f"must fork inside the trunk's constant phase (steps {warmup} to {trunk_cooldown} "
            f"of {trunk_steps}); give branch budgets below the trunk's and above its warmup"
        )
    return Branch(name, tokens, config, fork, steps, budget)


def cooldown_flops(branch: Branch, flops_per_step: float) -> float:
    """What a branch costs on top of its trunk: its cooldown steps."""
    return (branch.steps - branch.fork_step) * flops_per_step


OpenBranch = Callable[[Branch], "tuple[list[Callback], Callable[[TrainSummary], None]]"]
"""branch -> (its callbacks, what to do with its summary): the trial's MLflow child run."""


def train_with_branches(
    trainer: Trainer, branches: Sequence[Branch], open_branch: OpenBranch
) -> TrainSummary:
    """Train the trunk to its end, running each branch at its fork on the way (see above)."""
    for branch in sorted(branches, key=lambda b: b.fork_step):
        if branch.name in trainer.state.branches_done:
            continue  # finished before the trial restarted
        trainer.run(until=branch.fork_step)
        callbacks, finish = open_branch(branch)
        if trainer.state.status != m.COMPLETED or trainer.state.step != branch.fork_step:
            finish(_not_reached(trainer, branch))
            continue
        if not trainer.save_fork():  # a crash inside the branch restarts it from here
            finish(_not_reached(trainer, branch))
            continue
        with trainer.branch(branch.config, callbacks) as forked:
            finish(forked.run())
        trainer.state.branches_done.append(branch.name)
        trainer.save_fork()  # ... and not after it finished
    return trainer.run()


def _not_reached(trainer: Trainer, branch: Branch) -> TrainSummary:
    """The summary of a branch its trunk never forked: diverged before, or (without a
    checkpoint at the fork) past it."""
    trunk = trainer.summary()
    fork = branch.fork_step
    if trunk.status != m.COMPLETED:
        reason = f"the trunk diverged at step {trunk.diverged_step}, before the fork at step {fork}"
        status: m.Status = m.DIVERGED
    else:
        reason = f"the trunk passed the fork at step {fork} without a checkpoint there"
        status = m.FAILED
    return replace(
        trunk,
        status=status,
        final_val_loss=None,
        final_val_loss_avg=None,
        total_steps=branch.steps,
        reason=reason,
        diverged_step=trunk.diverged_step,
        tokens=0,
        flops=0.0,
    )
