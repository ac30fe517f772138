"""Validation loss on a fixed set of windows: the same tokens for every run of a sweep.

The set is `train.eval_batches × train.eval_batch_size` windows of seq_len + 1 tokens, evenly
spaced over the validation split. It depends on nothing else (not the training seed, the
micro-batch or the number of ranks), so two runs of a sweep are compared on the same tokens.
Ranks take every world-size-th window and the sums are all-reduced.

The unwrapped (or compiled) model evaluates, never the DDP wrapper: DDP's forward broadcasts
buffers, a collective that a rank without a window would skip, and the ranks would hang.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from scalesweep.data import windows
from scalesweep.distributed import World


def window_starts(n_tokens: int, n_windows: int, seq_len: int) -> np.ndarray:
    """Start of each validation window: evenly spaced, the last one ending at the split's end.

    Example:
        >>> window_starts(1001, 4, 100).tolist()
        [0, 300, 600, 900]
    """
    if n_tokens < seq_len + 1:
        raise ValueError(
            f"a window needs seq_len + 1 = {seq_len + 1} tokens, but the validation split "
            f"holds {n_tokens}"
        )
    return np.linspace(0, n_tokens - seq_len - 1, n_windows).round().astype(np.int64)


class Validation:
    """This rank's share of the fixed validation windows, and the loss over all of them."""

    def __init__(
        self, tokens: np.ndarray, *, batches: int, batch_size: int, seq_len: int, world: World
    ) -> None:
        starts = window_starts(len(tokens), batches * batch_size, seq_len)
        self.tokens = tokens
        self.mine = starts[world.rank :: world.size]
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.world = world

    def _batches(self) -> Any:
        for first in range(0, len(self.mine), self.batch_size):
            x, y = windows(self.tokens, self.mine[first : first + self.batch_size], self.seq_len)
            yield (
                torch.from_numpy(x).to(self.world.device),
                torch.from_numpy(y).to(self.world.device),
            )

    @torch.no_grad()
    def loss(self, model: torch.nn.Module, autocast: Callable[[], Any]) -> float:
        """Mean cross-entropy of `model` over every window of every rank."""
        was_training = model.training
        model.eval()
        total = torch.zeros(2, device=self.world.device, dtype=torch.float64)
        for x, y in self._batches():
            with autocast():
                total[0] += model(x, y).ce_loss.double() * len(x)
            total[1] += len(x)
        if self.world.size > 1:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        model.train(was_training)
        return (total[0] / total[1]).item()
