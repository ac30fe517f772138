"""What a run trains, built once per process: the data, the model, its optimizer, the compiled or
DDP runner, the validation windows, the weight averages and the noise meter, with the arithmetic
of one step (batches, forward/backward with gradient accumulation, clipping, the update).

`scalesweep.train.Trainer` is one run on an `Engine`: its schedule and length, its state, when it
logs, evaluates and checkpoints. A cooldown branch is a second `Trainer` on its trunk's engine
(`Trainer.branch`), so a trial compiles and wraps its model once however many branches it runs;
`Engine.forked` puts the engine's tensors back at the fork when the branch is done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch

from scalesweep import checkpoint, data
from scalesweep import metrics as m
from scalesweep.averaging import WeightAverage
from scalesweep.config import ExperimentConfig
from scalesweep.data_path import load_shards
from scalesweep.distributed import World, peak_flops, resolve_world, split_batch, wrap
from scalesweep.evaluation import Validation
from scalesweep.flops import count_params, flops_per_token
from scalesweep.model import GPT
from scalesweep.noise_meter import NoiseMeter
from scalesweep.optim import build_optimizer


class Engine:
    """The data, model and optimizer of `config` (see the module docstring).

    Every setting it reads (data, model, optim, batch and micro-batch, seed, precision, compile,
    evaluation windows, averaging, noise scale) is the same for a trunk and its branches, which
    differ only in their length and schedule. device: overrides `train.device` (Ray Train passes
    the worker's).
    """

    def __init__(self, config: ExperimentConfig, *, device: torch.device | None = None) -> None:
        self.config = config
        self.world: World = resolve_world(config.train.device, device)
        self.shards = load_shards(config.data.path)
        vocab = data.model_vocab(config.model.vocab_size, self.shards.vocab_size, config.data.path)
        self.model_config = config.model.model_copy(update={"vocab_size": vocab})
        self.micro, self.accumulation = split_batch(
            config.train.batch_size, config.train.micro_batch_size, self.world
        )
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
        self.noise = self._noise_meter() if config.train.grad_noise_scale else None
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

    def _noise_meter(self) -> NoiseMeter | None:
        return NoiseMeter.create(
            self.runner,
            self.world,
            micro=self.micro,
            accumulation=self.accumulation,
            seq_len=self.model_config.seq_len,
            batch_size=self.config.train.batch_size,
        )

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, RNG, averages and noise-scale moments: a checkpoint but the run's
        own `RunState`."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": checkpoint.rng_state(),
            "averaging": self.average.state_dict() if self.average else None,
            "noise": self.noise.state_dict() if self.noise else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.average is not None and state.get("averaging") is not None:
            self.average.load_state_dict(state["averaging"])
        if self.noise is not None and state.get("noise") is not None:
            self.noise.load_state_dict(state["noise"])
        checkpoint.set_rng_state(state["rng"])

    @contextlib.contextmanager
    def forked(self) -> Iterator[None]:
        """Whatever the block trains, the engine's state (model, optimizer, RNG, averages,
        noise-scale moments) is back as it was before the block when it ends. The copy is kept
        in memory (`checkpoint.snapshot`), on the engine's device when restored."""
        fork = checkpoint.snapshot(self.state_dict())
        try:
            yield
        finally:
            self.load_state_dict(checkpoint.restore(fork, self.world.device))

    # --- evaluation ----------------------------------------------------------------------------

    def autocast(self) -> Any:
        """bf16 autocast per `train.precision` (`auto`: on CUDA only), else nothing."""
        precision = self.config.train.precision
        device = self.world.device.type
        if precision == "bf16" or (precision == "auto" and device == "cuda"):
            return torch.autocast(device, dtype=torch.bfloat16)
        return nullcontext()

    def evaluate(self) -> float:
        """Validation loss over the fixed windows (see `scalesweep.evaluation`)."""
        return self.validation.loss(self.eval_model, self.autocast)

    def averaged_loss(self) -> dict[str, float]:
        """`val/loss_avg` of the averaged weights, once there are any; else nothing."""
        if self.average is None or not self.average.ready:
            return {}
        return {m.VAL_LOSS_AVG: self.validation.loss(self.average.model(self.model), self.autocast)}

    # --- the step ------------------------------------------------------------------------------

    def batch(self, tokens: Any, *, step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
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

    def forward_backward(
        self, step: int, *, diagnose: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Gradients of step `step`, accumulated over the micro-batches (DDP syncs on the last
        one only); returns the mean loss and, when `diagnose`, the first micro-batch's
        diagnostics. The noise meter, if any, measures when `diagnose` (a log step)."""
        if self.noise is not None:
            self.noise.start_step(measuring=diagnose)
        loss = torch.zeros((), device=self.world.device)
        diagnostics: dict[str, torch.Tensor] = {}
        for micro_step in range(self.accumulation):
            index = micro_step * self.world.size + self.world.rank
            x, y = self.batch(self.shards.train, step=step, index=index)
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

    def clip(self) -> torch.Tensor:
        """Clip to `optim.grad_clip` when set; the gradient norm before clipping either way."""
        if self.config.optim.grad_clip is not None:
            return torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.config.optim.grad_clip
            )
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads)

    def update(self, step: int) -> None:
        """The optimizer step that makes the weights of step `step`; the averages take them."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.average is not None:
            self.average.update(self.model, step)
