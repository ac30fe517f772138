"""Weight averaging along a run, evaluated beside the trained weights, never instead of them.

Hägele et al. 2024 (§4) find that averaging the weights along a constant-LR run closes much of
the gap to a cooled-down run, at no extra training. Two kinds, from `averaging.kind`:

- `swa`: the mean of the snapshots taken every `every` steps over the last `window` steps (a
  sliding window, "latest weight averaging"; Kaddour 2022). It keeps window/every snapshots
  in host memory, so that count is capped.
- `ema`: an exponential moving average updated every `every` steps with decay 1 − every/window,
  a horizon of about `window` steps; one copy of the weights.

At each evaluation the trainer loads the average into a shadow copy of the model and logs its
validation loss as `val/loss_avg`. Every rank keeps the same average (the weights are the same
on every rank), so the ranks evaluate it together like the trained weights.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import torch

from scalesweep.config import AveragingConfig


class WeightAverage:
    """The running average of one model's parameters (see the module docstring)."""

    def __init__(self, config: AveragingConfig) -> None:
        self.config = config
        self.snapshots: deque[list[torch.Tensor]] = deque()
        self.total: list[torch.Tensor] | None = None
        """SWA: the sum of `snapshots`; EMA: the average itself."""
        self.shadow: torch.nn.Module | None = None

    @property
    def ready(self) -> bool:
        return self.total is not None

    def update(self, model: torch.nn.Module, step: int) -> None:
        """Take the weights after optimizer step `step` into the average, every `every` steps."""
        if step % self.config.every:
            return
        weights = [p.detach().to("cpu", torch.float32, copy=True) for p in model.parameters()]
        if self.config.kind == "ema":
            decay = 1.0 - self.config.every / self.config.window
            if self.total is None:
                self.total = weights
            else:
                torch._foreach_lerp_(self.total, weights, 1.0 - decay)
            return
        self.snapshots.append(weights)
        if self.total is None:
            self.total = [w.clone() for w in weights]
        else:
            torch._foreach_add_(self.total, weights)
        if len(self.snapshots) > self.config.window // self.config.every:
            torch._foreach_sub_(self.total, self.snapshots.popleft())

    def model(self, trained: torch.nn.Module) -> torch.nn.Module:
        """A copy of `trained` holding the averaged weights (made once, refilled each call)."""
        assert self.total is not None, "no weights averaged yet"
        if self.shadow is None:
            self.shadow = copy.deepcopy(trained)
        scale = 1.0 / len(self.snapshots) if self.config.kind == "swa" else 1.0
        with torch.no_grad():
            for target, average in zip(self.shadow.parameters(), self.total, strict=True):
                target.copy_(average * scale)
        return self.shadow

    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": list(self.snapshots), "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.snapshots = deque(state["snapshots"])
        self.total = state["total"]
