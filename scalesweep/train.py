"""The training loop: one `Trainer`, used by `scalesweep train` and by every sweep trial.

`train(config)` runs one training run and returns a `TrainSummary`. It never needs Ray: when
`torch.distributed` is initialized (Ray Train does that) it wraps the model for DDP, shards data
and evaluation by rank, and only rank 0 calls the metric callbacks.

A `Trainer` is one run (its schedule and length, its `RunState`, its callbacks, when it logs,
evaluates and checkpoints) on an `Engine` (`scalesweep.engine`: the data, model, optimizer and
the arithmetic of a step, built once per process). Each step, in order: LR, forward/backward
with gradient accumulation, clipping, optimizer step, metrics, then evaluation and checkpoint
when due (step 0 is evaluated first, giving ℓ0). A run whose training loss turns non-finite or
rises above ℓ0 + train.divergence_margin stops with status `diverged`; it does not raise. The
whole state is in `state_dict()`, so a run can be checkpointed, resumed, or forked mid-way
(cooldown branches: a second `Trainer` on the same engine, see `Trainer.branch`) without
another loop.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from scalesweep import checkpoint
from scalesweep import metrics as m
from scalesweep.callbacks import Callback
from scalesweep.config import ExperimentConfig, total_steps
from scalesweep.distributed import all_reduce_mean
from scalesweep.engine import Engine
from scalesweep.errors import UserError
from scalesweep.optim import set_lr
from scalesweep.schedules import lr_multiplier
from scalesweep.summary import RunState, TrainSummary, divergence_reason, track_diagnostics


@dataclass
class _Window:
    """Wall-clock throughput between logged steps."""

    started: float = field(default_factory=time.perf_counter)
    tokens: int = 0

    def rate(self) -> float:
        rate = self.tokens / (time.perf_counter() - self.started)
        self.started, self.tokens = time.perf_counter(), 0
        return rate


class Trainer:
    """One run of `config` on an `Engine`: build once, then `run()` (or `run(until=step)` to stop
    mid-way).

    checkpoint_dir: where `train.checkpoint_every` checkpoints go (rank 0 writes; the latest one
    is kept as `latest`). device: overrides `train.device` (Ray Train passes the worker's).
    engine: the engine to run on, already built (a cooldown branch runs on its trunk's, see
    `branch`); else one is built from `config` and `device`. state: where the run starts (a
    branch: its trunk's state at the fork); else step 0.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        callbacks: Sequence[Callback] = (),
        device: torch.device | None = None,
        checkpoint_dir: Path | None = None,
        engine: Engine | None = None,
        state: RunState | None = None,
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.checkpoint_dir = checkpoint_dir
        self.engine = engine if engine is not None else Engine(config, device=device)
        self.n_steps = total_steps(config)
        self.state = state if state is not None else RunState()
        self.window = _Window()
        self.last_eval: tuple[int, float] = (-1, math.nan)
        """(step, validation loss) of the latest evaluation."""
        self.started = time.perf_counter()
        """When this run started in this process; moved on by each branch's time (see `branch`)."""
        self.tokens_at_start = self.state.step * self.engine.tokens_per_step

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**self.engine.state_dict(), "run": asdict(self.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state)
        self.state = RunState(**state["run"])
        self.tokens_at_start = self.state.step * self.engine.tokens_per_step

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint directory written by this trainer."""
        try:
            self.load_state_dict(checkpoint.load(path, self.engine.world.device))
        except checkpoint.UnreadableCheckpoint as error:
            raise UserError(f"resume: cannot use the checkpoint {error}") from None

    def resume_newest(self, candidates: Sequence[Path]) -> list[str]:
        """Continue from the newest of `candidates` that loads (else from step 0), setting aside
        those that do not; returns a line for each one set aside. What a restarted trial does:
        a checkpoint cut short by a crash or a full disk must not fail the trial."""
        world = self.engine.world
        state, notes = checkpoint.load_newest(candidates, world.device, owner=world.is_main)
        if state is not None:
            self.load_state_dict(state)
        return notes

    # --- callbacks -----------------------------------------------------------------------------

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.engine.world.is_main:
            for callback in self.callbacks:
                callback.on_log(step, metrics)

    def report(self, step: int, metrics: dict[str, float], saved: Path | None) -> None:
        for callback in self.callbacks:
            callback.on_report(step, metrics, saved)

    # --- the step ------------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        return self.config.optim.lr * lr_multiplier(self.config.schedule, step, self.n_steps)

    def step(self) -> dict[str, float] | None:
        """One optimizer step: LR, forward/backward, clip, update. Returns the metrics on a log
        step (every `train.log_every` steps and the last one), else None."""
        engine, step = self.engine, self.state.step
        lr = self.lr_at(step)
        set_lr(engine.optimizer, lr)
        is_log = (step + 1) % self.config.train.log_every == 0 or step + 1 == self.n_steps
        loss, diagnostics = engine.forward_backward(step, diagnose=is_log)
        grad_norm = engine.clip()
        engine.update(step + 1)
        self.state.step += 1
        self.window.tokens += engine.tokens_per_step
        if not is_log:
            return None
        noise_scale = engine.noise.record(grad_norm) if engine.noise else None  # syncs: after step
        tokens = float(self.state.step * engine.tokens_per_step)
        tokens_per_s = self.window.rate()
        metrics = {
            m.TRAIN_LOSS: all_reduce_mean(loss, engine.world).item(),
            m.LR: lr,
            m.TOKENS: tokens,
            m.FLOPS: engine.flops_per_token * tokens,
            m.GRAD_NORM: float(grad_norm),
            m.PARAM_NORM: float(torch.nn.utils.get_total_norm(list(engine.model.parameters()))),
            m.TOKENS_PER_S: tokens_per_s,
            **{k: float(v) for k, v in diagnostics.items()},
            **({} if noise_scale is None else {m.GRAD_NOISE_SCALE: noise_scale}),
        }
        if engine.peak is not None:
            mfu_flops = tokens_per_s * engine.mfu_flops_per_token
            metrics[m.MFU] = mfu_flops / (engine.peak * engine.world.size)
        return metrics

    # --- the loop ------------------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        self.state.status, self.state.reason = m.DIVERGED, reason
        self.state.diverged_step = self.state.step

    def _record(self, metrics: dict[str, float]) -> bool:
        """Log a step's metrics; False when the training loss says the run diverged."""
        loss = metrics[m.TRAIN_LOSS]
        reason = divergence_reason(loss, self.state.init_loss, self.config.train.divergence_margin)
        if math.isfinite(loss):  # also when it is already above the margin
            self.state.last_finite_loss = loss
        track_diagnostics(self.state, metrics)
        self.log(self.state.step, metrics)
        if reason is not None:
            self._stop(reason)
        return reason is None

    def _evaluate_and_save(self, *, force_checkpoint: bool = False) -> bool:
        """Evaluate and checkpoint when due (at most one evaluation a step); False when the
        validation loss is non-finite."""
        step, every = self.state.step, self.config.train.checkpoint_every
        is_eval = step % self.config.train.eval_every == 0 or step == self.n_steps
        is_checkpoint = force_checkpoint or (
            every is not None and (step % every == 0 or step == self.n_steps)
        )
        if not (is_eval or is_checkpoint):
            return True
        if self.last_eval[0] == step:
            val = self.last_eval[1]
        else:
            val = self.engine.evaluate()
            if not math.isfinite(val):
                self._stop(f"non-finite validation loss ({val})")
                return False
            logged = {m.VAL_LOSS: val, **self.engine.averaged_loss()}
            if step == self.n_steps:
                self.state.final_val_loss = val
                self.state.final_val_loss_avg = logged.get(m.VAL_LOSS_AVG)
            self.log(step, logged)
            self.last_eval = (step, val)
        saved = None
        if is_checkpoint and self.checkpoint_dir is not None:
            for callback in self.callbacks:
                callback.on_checkpoint(step)
            if self.engine.world.is_main:
                saved = Path(self.checkpoint_dir) / "latest"
                checkpoint.save(saved, self.state_dict())
        self.report(step, {m.VAL_LOSS: val, "step": step}, saved)
        return True

    def save_fork(self) -> bool:
        """A checkpoint at this step, where a cooldown branch forks (see scalesweep/branches.py);
        False when the validation loss there is non-finite."""
        return self._evaluate_and_save(force_checkpoint=True)

    @contextlib.contextmanager
    def branch(self, config: ExperimentConfig, callbacks: Sequence[Callback]) -> Iterator[Trainer]:
        """The run `config` (a cooldown branch) from this trainer's current state: a second
        `Trainer` on the same engine, with its own callbacks, state and clock, and no
        checkpoints. When the block ends the engine is back at the fork (`Engine.forked`), and
        this trainer's clock leaves the branch's time out; nothing else of this trainer changes."""
        forked = time.perf_counter()
        state = replace(self.state, final_val_loss=None, final_val_loss_avg=None, branches_done=[])
        try:
            with self.engine.forked():
                yield Trainer(config, callbacks=callbacks, engine=self.engine, state=state)
        finally:
            self.started += time.perf_counter() - forked

    def begin(self) -> None:
        """Step 0: evaluate the untrained model for ℓ0 (once per run, not on resume)."""
        if not math.isnan(self.state.init_loss):
            return
        init_loss = self.engine.evaluate()
        self.state.init_loss = init_loss
        self.log(0, {m.VAL_LOSS: init_loss, m.TOKENS: 0.0, m.FLOPS: 0.0})
        self.report(0, {m.VAL_LOSS: init_loss, m.INIT_LOSS: init_loss, "step": 0}, None)

    def run(self, until: int | None = None) -> TrainSummary:
        """Train to `until` (default: the end), stopping early if the run diverges."""
        self.begin()
        end = self.n_steps if until is None else min(until, self.n_steps)
        self.window = _Window()
        while self.state.status == m.COMPLETED and self.state.step < end:
            metrics = self.step()
            if metrics is not None and not self._record(metrics):
                break
            if not self._evaluate_and_save():
                break
        finished = self.state.step == self.n_steps and self.state.status == m.COMPLETED
        if finished and self.state.final_val_loss is None:  # resumed from the last checkpoint
            self.state.final_val_loss = self.engine.evaluate()
            self.state.final_val_loss_avg = self.engine.averaged_loss().get(m.VAL_LOSS_AVG)
        return self.summary()

    def summary(self) -> TrainSummary:
        wall = time.perf_counter() - self.started
        completed = self.state.status == m.COMPLETED
        tokens = self.state.step * self.engine.tokens_per_step
        return TrainSummary(
            status=self.state.status,
            init_loss=self.state.init_loss,
            final_val_loss=self.state.final_val_loss if completed else None,
            last_finite_loss=self.state.last_finite_loss,
            steps=self.state.step,
            total_steps=self.n_steps,
            params=self.engine.counts.total,
            params_nonembed=self.engine.counts.nonembed,
            tokens=tokens,
            flops=self.engine.flops_per_token * tokens,
            tokens_per_s=(tokens - self.tokens_at_start) / wall,
            wall_s=wall,
            diverged_step=self.state.diverged_step,
            reason=self.state.reason,
            final_val_loss_avg=self.state.final_val_loss_avg if completed else None,
            max_attn_logit=self.state.max_attn_logit,
            final_output_logz=self.state.final_output_logz,
        )


def train(
    config: ExperimentConfig,
    *,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    callbacks: Sequence[Callback] = (),
    device: torch.device | None = None,
) -> TrainSummary:
    """Train one model as `config` says and return its summary (see `Trainer`).

    resume_from: a checkpoint directory to continue from.
    """
    trainer = Trainer(config, callbacks=callbacks, device=device, checkpoint_dir=checkpoint_dir)
    if resume_from is not None:
        trainer.resume(resume_from)
    return trainer.run()
