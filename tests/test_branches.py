"""Cooldown branches (Hägele et al. 2024): exact forks, the trunk unchanged, resume, plans."""

from __future__ import annotations

import time

import pytest

from scalesweep.branches import plan_branch, standalone_config, train_with_branches
from scalesweep.callbacks import Callback
from scalesweep.errors import UserError
from scalesweep.experiment import parse_experiment
from scalesweep.sweep.plan import plan
from scalesweep.train import Trainer, train

TRUNK = {
    "model": {"width": 32, "depth": 1, "head_dim": 16, "seq_len": 32},
    "optim": {"lr": 0.01},
    "schedule": {
        "type": "wsd",
        "warmup": 0.1,
        "cooldown_fraction": 0.2,
        "cooldown_shape": "1-sqrt",
    },
    "train": {
        "tokens": 128 * 100,
        "batch_size": 4,
        "eval_every": 10,
        "eval_batches": 1,
        "log_every": 1,
    },
}
BRANCH_TOKENS = (128 * 40, 128 * 70)  # 40 and 70 steps of 4 × 32 tokens


def config(**sections):
    raw = {key: {**TRUNK.get(key, {}), **sections.get(key, {})} for key in {*TRUNK, *sections}}
    return parse_experiment(raw).resolve()


class Recorder(Callback):
    def __init__(self) -> None:
        self.losses: dict[int, float] = {}
        self.val: dict[int, float] = {}
        self.val_steps: list[int] = []  # every val/loss logged, repeats included

    def on_log(self, step, metrics):
        if "train/loss" in metrics:
            self.losses[step] = metrics["train/loss"]
        if "val/loss" in metrics:
            self.val[step] = metrics["val/loss"]
            self.val_steps.append(step)


class Branches:
    """open_branch for train_with_branches: a Recorder per branch, summaries kept."""

    def __init__(self, crash_in: str | None = None, crash_at: int = 0) -> None:
        self.recorders: dict[str, Recorder] = {}
        self.summaries: dict = {}
        self.crash_in, self.crash_at = crash_in, crash_at

    def __call__(self, branch):
        recorder = self.recorders.setdefault(branch.name, Recorder())
        callbacks = [recorder]
        if branch.name == self.crash_in:
            callbacks.append(Crash(self.crash_at))
        return callbacks, lambda summary: self.summaries.__setitem__(branch.name, summary)


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_log(self, step, metrics):
        if step == self.at:
            raise KeyboardInterrupt("the process dies here")


def branches_of(trunk):
    return [plan_branch(trunk, d, f"b{d}", None) for d in BRANCH_TOKENS]


def test_a_branch_is_the_standalone_run_and_the_trunk_goes_on_unchanged():
    # Rule: each branch's loss curve after its fork and its final validation loss equal, to
    # 1e-6 on CPU, a standalone run of its tokens whose WSD cooldown starts at the fork step;
    # the trunk's curve and final loss equal a trunk trained without branches.
    trunk = config()
    branches = branches_of(trunk)
    opened = Branches()
    trunk_recorder = Recorder()
    summary = train_with_branches(Trainer(trunk, callbacks=[trunk_recorder]), branches, opened)
    for branch in branches:
        alone = Recorder()
        standalone = train(standalone_config(trunk, branch.tokens), callbacks=[alone])
        forked = opened.recorders[branch.name].losses
        assert min(forked) == branch.fork_step + 1 and max(forked) == branch.steps
        expected = {s: v for s, v in alone.losses.items() if s > branch.fork_step}
        assert forked == pytest.approx(expected, rel=1e-6, abs=1e-7)
        assert opened.summaries[branch.name].final_val_loss == pytest.approx(
            standalone.final_val_loss, rel=1e-6
        )
        assert opened.summaries[branch.name].tokens == standalone.tokens
    plain = Recorder()
    alone_trunk = train(trunk, callbacks=[plain])
    assert trunk_recorder.losses == pytest.approx(plain.losses, rel=1e-6, abs=1e-7)
    assert summary.final_val_loss == pytest.approx(alone_trunk.final_val_loss, rel=1e-6)
    steps = trunk_recorder.val_steps  # a fork step is evaluated (and logged) once
    assert len(steps) == len(set(steps)) and set(plain.val_steps) <= set(steps)


def test_a_branch_and_its_trunk_each_time_their_own_tokens():
    # Rule: a branch's throughput is its own tokens (from the fork) over its own wall time,
    # and the trunk's is the trunk's tokens over the trunk's time without its branches.
    trunk = config()
    branches = branches_of(trunk)
    opened = Branches()
    started = time.perf_counter()
    summary = train_with_branches(Trainer(trunk), branches, opened)
    elapsed = time.perf_counter() - started
    per_step = trunk.train.batch_size * trunk.model.seq_len
    for branch in branches:
        own = opened.summaries[branch.name]
        trained = (branch.steps - branch.fork_step) * per_step
        assert own.tokens_per_s * own.wall_s == pytest.approx(trained, rel=1e-9)
        assert own.wall_s < summary.wall_s
    assert summary.tokens_per_s * summary.wall_s == pytest.approx(summary.tokens, rel=1e-9)
    # Disjoint stretches of the same call: the trunk's own time and each branch's.
    assert summary.wall_s + sum(opened.summaries[b.name].wall_s for b in branches) <= elapsed


def test_a_killed_trunk_resumes_and_reruns_only_the_unfinished_branch(tmp_path):
    # Rule: the process dies inside the second branch; resumed from the trunk's checkpoint
    # (written at that branch's fork), the first branch is not run again, the second starts
    # again from its fork, and both end as in an uninterrupted run.
    trunk = config(train={"checkpoint_every": 30})
    branches = branches_of(trunk)
    straight = Branches()
    train_with_branches(Trainer(trunk), branches, straight)

    crashing = Branches(crash_in=branches[1].name, crash_at=branches[1].fork_step + 5)
    with pytest.raises(KeyboardInterrupt):
        train_with_branches(Trainer(trunk, checkpoint_dir=tmp_path), branches, crashing)
    assert set(crashing.summaries) == {branches[0].name}
    resumed_trainer = Trainer(trunk, checkpoint_dir=tmp_path)
    resumed_trainer.resume(tmp_path / "latest")
    assert resumed_trainer.state.step == branches[1].fork_step
    resumed = Branches()
    summary = train_with_branches(resumed_trainer, branches, resumed)
    assert set(resumed.summaries) == {branches[1].name}  # the first is not run again
    assert resumed.summaries[branches[1].name].final_val_loss == pytest.approx(
        straight.summaries[branches[1].name].final_val_loss, rel=1e-6
    )
    assert summary.status == "completed" and summary.steps == 100


def test_a_trunk_that_diverges_before_a_fork_records_the_branch_as_diverged():
    # Rule: nothing is lost: a branch the trunk never reached gets a summary (diverged, with
    # the reason), so its MLflow run says what happened.
    trunk = config(optim={"lr": 50.0}, schedule={"warmup": 0})
    opened = Branches()
    summary = train_with_branches(Trainer(trunk), branches_of(trunk), opened)
    assert summary.status == "diverged"
    assert [s.status for s in opened.summaries.values()] == ["diverged", "diverged"]
    assert all("before the fork" in s.reason for s in opened.summaries.values())


def test_a_branch_must_fork_in_the_constant_phase():
    # Rule: a branch as long as the trunk, or one whose cooldown would start inside the
    # warmup, is refused naming `branches`.
    trunk = config()
    with pytest.raises(UserError, match="branches"):
        plan_branch(trunk, 128 * 100, "same", None)
    with pytest.raises(UserError, match="branches"):
        plan_branch(trunk, 128 * 5, "short", None)


ISO = {
    "name": "isocool",
    "model": {"head_dim": 16, "seq_len": 32, "vocab_size": 256},
    "schedule": {"type": "wsd", "warmup": 0.05, "cooldown_fraction": 0.2},
    "train": {"batch_size": 4, "flop_counting": "6N"},
    "budget": {
        "flops": [2e11, 2.8e11, 4e11, 5.6e11, 8e11],
        "shapes": [{"width": 32, "depth": 1}, {"width": 48, "depth": 1}],
    },
}


def test_isoflop_branches_cost_well_under_the_from_scratch_sweep():
    # Rule: with budgets 1.4× apart, one trunk per shape at its largest budget and a 20%
    # cooldown branch at each other budget cost ≤ 0.55× training every (budget, shape) from
    # scratch (Hägele et al. report 0.53-0.60); every (budget, shape) is still a run.
    scratch = plan(parse_experiment({**ISO, "schedule": {"type": "wsd", "warmup": 0.05}}))
    branched = plan(parse_experiment({**ISO, "branches": {"budgets_from": "isoflop"}}))
    assert len(branched.trials) == 2 and branched.n_runs == scratch.n_trials == 10
    assert branched.from_scratch_flops == pytest.approx(scratch.total_flops, rel=1e-9)
    assert branched.total_flops / branched.from_scratch_flops <= 0.55
    assert {b.budget for t in branched.trials for b in t.branches} == {2e11, 2.8e11, 4e11, 5.6e11}


def test_branches_need_a_wsd_schedule():
    # Rule: a cosine run has no constant phase to fork from: refused naming schedule.type.
    with pytest.raises(UserError, match=r"schedule\.type"):
        parse_experiment({**ISO, "schedule": {"type": "cosine"},
                          "branches": {"budgets_from": "isoflop"}})  # fmt: skip
