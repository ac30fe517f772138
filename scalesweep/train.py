"""The training loop: one `Trainer`, used by `scalesweep train` and by every sweep trial.

`train(config)` runs one training run and returns a `TrainSummary`. It never needs Ray: when
`torch.distributed` is initialized (Ray Train does that) it wraps the model for DDP, shards data
and evaluation by rank, and only rank 0 calls the metric callbacks.

Each step, in order: LR, forward/backward with gradient accumulation, clipping, optimizer step,
metrics, then evaluation and checkpoint when due (step 0 is evaluated first, giving ℓ0). A run
whose training loss turns non-finite or rises above ℓ0 + train.divergence_margin stops with
status `diverged`; it does not raise. The `Trainer` keeps its whole state in `state_dict()`, so
a run can be checkpointed, resumed, or forked mid-way (cooldown branches) without another loop.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from scalesweep import checkpoint, data
from scalesweep import metrics as m
from scalesweep.averaging import WeightAverage
from scalesweep.callbacks import Callback
from scalesweep.config import ExperimentConfig, total_steps
from scalesweep.data_path import load_shards
from scalesweep.distributed import (
    World,
    all_reduce_mean,
    peak_flops,
    resolve_world,
    split_batch,
    wrap,
)
from scalesweep.evaluation import Validation
from scalesweep.flops import count_params, flops_per_token
from scalesweep.model import GPT
from scalesweep.noise_meter import NoiseMeter
from scalesweep.optim import build_optimizer, set_lr
from scalesweep.schedules import lr_multiplier
from scalesweep.summary import RunState, TrainSummary, divergence_reason


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
    """One run of `config`: build once, then `run()` (or `run(until=step)` to stop mid-way).

    checkpoint_dir: where `train.checkpoint_every` checkpoints go (rank 0 writes; the latest one
    is kept as `latest`). device: overrides `train.device` (Ray Train passes the worker's).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        callbacks: Sequence[Callback] = (),
        device: torch.device | None = None,
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.checkpoint_dir = checkpoint_dir
        self.world: World = resolve_world(config.train.device, device)
        self.shards = load_shards(config.data.path)
        vocab = data.model_vocab(config.model.vocab_size, self.shards.vocab_size, config.data.path)
        self.model_config = config.model.model_copy(update={"vocab_size": vocab})
        self.micro, self.accumulation = split_batch(
            config.train.batch_size, config.train.micro_batch_size, self.world
        )
        self.n_steps = total_steps(config)
        self.tokens_per_step = config.train.batch_size * self.model_config.seq_len
        self.flops_per_token = flops_per_token(self.model_config, config.train.flop_counting)
        self.mfu_flops_per_token = flops_per_token(self.model_config, "palm")
        self.counts = count_params(self.model_config)
        self.peak = peak_flops(self.world.device)
        torch.manual_seed(config.train.seed)
        self.model = GPT(self.model_config).to(self.world.device)
        # The model's own count agrees with flops.py (tests/test_flops.py checks every shape).
        assert self.model.num_params()["total"] == self.counts.total
        fused = self.world.device.type == "cuda"
        self.optimizer = build_optimizer(self.model, config.optim, fused=fused)
        self.runner = wrap(self.model, self.world, compile=config.train.compile)
        self.noise = NoiseMeter.create(
            self.runner, self.world, micro=self.micro, accumulation=self.accumulation,
            seq_len=self.model_config.seq_len, batch_size=config.train.batch_size,
        ) if config.train.grad_noise_scale else None  # fmt: skip
        # Evaluation runs the model without DDP (no collective a rank could skip), compiled
        # when training is: `runner` is DDP(compiled) or compiled or the model itself.
        self.eval_model = getattr(self.runner, "module", self.runner)
        self.validation = Validation(
            self.shards.val,
            batches=config.train.eval_batches,
            batch_size=config.train.eval_batch_size,
            seq_len=self.model_config.seq_len,
            world=self.world,
        )
        self.average = WeightAverage(config.averaging) if config.averaging else None
        self.state = RunState()
        self.window = _Window()
        self.last_eval: tuple[int, float] = (-1, math.nan)
        """(step, validation loss) of the latest evaluation."""
        self.started = time.perf_counter()
        self.tokens_at_start = 0

    # --- setup ---------------------------------------------------------------------------------

    def autocast(self) -> Any:
        if self.world.device.type == "cuda" and self.config.train.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "run": asdict(self.state),
            "rng": checkpoint.rng_state(),
            "averaging": self.average.state_dict() if self.average else None,
            "noise": self.noise.state_dict() if self.noise else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.state = RunState(**state["run"])
        if self.average is not None and state.get("averaging") is not None:
            self.average.load_state_dict(state["averaging"])
        if self.noise is not None and state.get("noise") is not None:
            self.noise.load_state_dict(state["noise"])
        checkpoint.set_rng_state(state["rng"])
        self.tokens_at_start = self.state.step * self.tokens_per_step

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint directory written by this trainer."""
        self.load_state_dict(checkpoint.load(path, self.world.device))

    # --- callbacks -----------------------------------------------------------------------------

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.world.is_main:
            for callback in self.callbacks:
                callback.on_log(step, metrics)

    def report(self, step: int, metrics: dict[str, float], saved: Path | None) -> None:
        for callback in self.callbacks:
            callback.on_report(step, metrics, saved)

    # --- the step ------------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        return self.config.optim.lr * lr_multiplier(self.config.schedule, step, self.n_steps)

    def evaluate(self) -> float:
        """Validation loss over the fixed windows (see `scalesweep.evaluation`)."""
        return self.validation.loss(self.eval_model, self.autocast)

    def _batch(self, tokens: Any, *, step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = data.sample_batch(
            tokens,
            batch_size=self.micro,
            seq_len=self.model_config.seq_len,
            seed=self.config.train.seed,
            step=step,
            index=index,
        )
        device = self.world.device
        return (
            torch.from_numpy(x).to(device, non_blocking=True),
            torch.from_numpy(y).to(device, non_blocking=True),
        )

    def _forward_backward(self, diagnose: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Gradients of one step, accumulated over the micro-batches (DDP syncs on the last one
        only); returns the mean loss and, when `diagnose`, the first micro-batch's diagnostics."""
        loss = torch.zeros((), device=self.world.device)
        diagnostics: dict[str, torch.Tensor] = {}
        for micro_step in range(self.accumulation):
            index = micro_step * self.world.size + self.world.rank
            x, y = self._batch(self.shards.train, step=self.state.step, index=index)
            last = micro_step == self.accumulation - 1
            sync = nullcontext() if last or self.world.size == 1 else self.runner.no_sync()  # type: ignore[operator]
            with sync, self.autocast():
                out = self.runner(x, y, diagnostics=diagnose and micro_step == 0)
                (out.loss / self.accumulation).backward()
            if micro_step == 0 and self.noise is not None:
                self.noise.after_first_backward(self.model, self.accumulation)
            loss += out.ce_loss.detach() / self.accumulation
            if out.attn_logit_max is not None and out.output_logz is not None:
                diagnostics = {m.ATTN_LOGIT_MAX: out.attn_logit_max, m.OUTPUT_LOGZ: out.output_logz}
        return loss, diagnostics

    def _clip(self) -> torch.Tensor:
        if self.config.optim.grad_clip is not None:
            return torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.config.optim.grad_clip
            )
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads)

    def step(self) -> dict[str, float] | None:
        """One optimizer step: LR, forward/backward, clip, update. Returns the metrics on a log
        step (every `train.log_every` steps and the last one), else None."""
        lr = self.lr_at(self.state.step)
        set_lr(self.optimizer, lr)
        every = self.config.train.log_every
        is_log = (self.state.step + 1) % every == 0 or self.state.step + 1 == self.n_steps
        if self.noise is not None:
            self.noise.start_step(measuring=is_log)
        loss, diagnostics = self._forward_backward(diagnose=is_log)
        grad_norm = self._clip()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        if self.average is not None:
            self.average.update(self.model, self.state.step)
        self.window.tokens += self.tokens_per_step
        if not is_log:
            return None
        noise_scale = self.noise.record(grad_norm) if self.noise else None  # syncs: after step
        tokens = float(self.state.step * self.tokens_per_step)
        tokens_per_s = self.window.rate()
        metrics = {
            m.TRAIN_LOSS: all_reduce_mean(loss, self.world).item(),
            m.LR: lr,
            m.TOKENS: tokens,
            m.FLOPS: self.flops_per_token * tokens,
            m.GRAD_NORM: float(grad_norm),
            m.PARAM_NORM: float(torch.nn.utils.get_total_norm(list(self.model.parameters()))),
            m.TOKENS_PER_S: tokens_per_s,
            **{k: float(v) for k, v in diagnostics.items()},
            **({} if noise_scale is None else {m.GRAD_NOISE_SCALE: noise_scale}),
        }
        if self.peak is not None:
            metrics[m.MFU] = tokens_per_s * self.mfu_flops_per_token / (self.peak * self.world.size)
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
            val = self.evaluate()
            if not math.isfinite(val):
                self._stop(f"non-finite validation loss ({val})")
                return False
            logged = {m.VAL_LOSS: val, **self._averaged_loss()}
            if step == self.n_steps:
                self.state.final_val_loss = val
                self.state.final_val_loss_avg = logged.get(m.VAL_LOSS_AVG)
            self.log(step, logged)
            self.last_eval = (step, val)
        saved = None
        if is_checkpoint and self.checkpoint_dir is not None:
            for callback in self.callbacks:
                callback.on_checkpoint(step)
            if self.world.is_main:
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
        """This trainer, from its current state, as the run `config` (a cooldown branch) with
        its own callbacks; the trunk's state and settings come back when the block ends."""
        trunk_state = checkpoint.snapshot(self.state_dict())
        trunk = (self.config, self.n_steps, self.callbacks, self.checkpoint_dir, self.last_eval)
        trunk_clock, forked = (self.started, self.tokens_at_start), time.perf_counter()
        self.config, self.n_steps = config, total_steps(config)
        self.callbacks, self.checkpoint_dir = list(callbacks), None
        # A branch is timed from its fork; the trunk's clock leaves the branch's time out.
        self.started, self.tokens_at_start = forked, self.state.step * self.tokens_per_step
        self.state.final_val_loss = self.state.final_val_loss_avg = None
        try:
            yield self
        finally:
            self.config, self.n_steps, self.callbacks, self.checkpoint_dir, self.last_eval = trunk
            self.load_state_dict(checkpoint.restore(trunk_state, self.world.device))
            self.started = trunk_clock[0] + (time.perf_counter() - forked)
            self.tokens_at_start = trunk_clock[1]  # after load_state_dict, which sets it

    def _averaged_loss(self) -> dict[str, float]:
        if self.average is None or not self.average.ready:
            return {}
        return {m.VAL_LOSS_AVG: self.validation.loss(self.average.model(self.model), self.autocast)}

    def begin(self) -> None:
        """Step 0: evaluate the untrained model for ℓ0 (once per run, not on resume)."""
        if not math.isnan(self.state.init_loss):
            return
        self.state.init_loss = self.evaluate()
        self.log(0, {m.VAL_LOSS: self.state.init_loss, m.TOKENS: 0.0, m.FLOPS: 0.0})
        self.report(0, {m.VAL_LOSS: self.state.init_loss, m.INIT_LOSS: self.state.init_loss,
                        "step": 0}, None)  # fmt: skip

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
            self.state.final_val_loss = self.evaluate()
            self.state.final_val_loss_avg = self._averaged_loss().get(m.VAL_LOSS_AVG)
        return self.summary()

    def summary(self) -> TrainSummary:
        wall = time.perf_counter() - self.started
        completed = self.state.status == m.COMPLETED
        tokens = self.state.step * self.tokens_per_step
        return TrainSummary(
            status=self.state.status,
            init_loss=self.state.init_loss,
            final_val_loss=self.state.final_val_loss if completed else None,
            last_finite_loss=self.state.last_finite_loss,
            steps=self.state.step,
            total_steps=self.n_steps,
            params=self.counts.total,
            params_nonembed=self.counts.nonembed,
            tokens=tokens,
            flops=self.flops_per_token * tokens,
            tokens_per_s=(tokens - self.tokens_at_start) / wall,
            wall_s=wall,
            diverged_step=self.state.diverged_step,
            reason=self.state.reason,
            final_val_loss_avg=self.state.final_val_loss_avg if completed else None,
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
