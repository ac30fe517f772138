"""Gradient norms at two batch sizes, measured during training for the noise scale.

`scalesweep.noise_scale` turns |G_small|² and |G_big|² into B_simple; this module finds the two
norms in a training step at almost no cost, on log steps only:

- one process with gradient accumulation over k micro-batches: the first micro-batch's
  gradient (k² times the accumulated gradient right after its backward) against the step's;
- several ranks (DDP): each rank's local gradient, read by a communication hook before the
  all-reduce, against the all-reduced one; the ranks' local norms are averaged.

One process without accumulation has a single batch size: nothing is measured. Batch sizes are
in tokens, the unit of the critical batch size (`scalesweep fit --kind critical-batch`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from scalesweep.distributed import World, all_reduce_mean
from scalesweep.noise_scale import NoiseScaleEMA, noise_scale_terms


def _sq_norm(params: Any) -> torch.Tensor:
    grads = [p.grad.detach().float() for p in params if p.grad is not None]
    return torch.stack([g.pow(2).sum() for g in grads]).sum()


class NoiseMeter:
    """|G_small|² and |G_big|² of a log step, and the running B_simple (see the docstring)."""

    def __init__(self, small_tokens: int, big_tokens: int, world: World) -> None:
        self.small_tokens, self.big_tokens, self.world = small_tokens, big_tokens, world
        self.ema = NoiseScaleEMA(decay=0.9)
        self.measuring = False
        self.small_sq: torch.Tensor | None = None

    @classmethod
    def create(
        cls,
        runner: torch.nn.Module,
        world: World,
        *,
        micro: int,
        accumulation: int,
        seq_len: int,
        batch_size: int,
    ) -> NoiseMeter | None:
        """A meter for this run, or None when it has one batch size only."""
        big = batch_size * seq_len
        if world.size > 1:
            meter = cls(micro * accumulation * seq_len, big, world)
            runner.register_comm_hook(meter, _local_norm_hook)  # type: ignore[operator]
            return meter
        return cls(micro * seq_len, big, world) if accumulation > 1 else None

    def start_step(self, measuring: bool) -> None:
        self.measuring, self.small_sq = measuring, None

    def after_first_backward(self, model: torch.nn.Module, accumulation: int) -> None:
        """One process: the first micro-batch's gradient is the accumulated one × k."""
        if self.measuring and self.world.size == 1:
            self.small_sq = _sq_norm(model.parameters()) * accumulation**2

    def record(self, grad_norm: torch.Tensor) -> float | None:
        """Feed this step's norms to the running estimate; B_simple once it is defined."""
        self.measuring = False
        if self.small_sq is None:
            return None
        small = all_reduce_mean(self.small_sq, self.world)  # the mean of the ranks' local norms
        big = float(grad_norm) ** 2
        terms = noise_scale_terms(float(small), big, self.small_tokens, self.big_tokens)
        return self.ema.update(terms)

    def state_dict(self) -> dict[str, float]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)


# No annotations: DDP checks them against its own types, and `from __future__ import
# annotations` turns them into strings it refuses (GradBucket in, Future[Tensor] out).
def _local_norm_hook(meter, bucket):
    """DDP communication hook: note the bucket's local squared norm, then all-reduce as DDP
    does by default (the sum of the buckets of a step is the rank's local |G|²)."""
    if meter.measuring:
        local = bucket.buffer().detach().float().pow(2).sum()
        meter.small_sq = local if meter.small_sq is None else meter.small_sq + local
    return default_hooks.allreduce_hook(None, bucket)  # type: ignore[arg-type]
