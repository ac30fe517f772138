"""This process's place in a run: rank, world size and device, from `torch.distributed`.

Ray Train (or torchrun) initializes the process group; a plain `scalesweep train` is rank 0 of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from scalesweep.config import batch_split
from scalesweep.errors import UserError

# Dense bf16 peak of the GPUs we know, for MFU (vendor spec sheets, SXM parts).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "B200": 2250e12}


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_world(wanted: str, device: torch.device | None) -> World:
    """Rank and size from the process group (1 process without one); the device given, else
    `train.device` (`auto`: CUDA when there is one, at LOCAL_RANK)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    size = dist.get_world_size() if dist.is_initialized() else 1
    if device is None:
        wants_cuda = wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available())
        if wants_cuda and not torch.cuda.is_available():
            raise UserError("train.device: got 'cuda', but no CUDA device is available")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local_rank}") if wants_cuda else torch.device("cpu")
    return World(rank=rank, size=size, device=device)


def all_reduce_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of `value` over ranks (a copy; `value` is left as it was)."""
    value = value.detach().clone()
    if world.size > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / world.size
    return value


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU, for MFU; None on CPU or an unknown GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def split_batch(batch_size: int, micro_batch_size: int | None, world: World) -> tuple[int, int]:
    """(sequences per forward pass, micro-batches per step) on each rank.

    Example:
        >>> split_batch(32, 4, World(0, 2, torch.device("cpu")))
        (4, 4)
    """
    split = batch_split(batch_size, micro_batch_size, world.size)
    if split is None:
        raise UserError(
            f"train.batch_size: got {batch_size}, which does not split into {world.size} ranks "
            f"× micro-batches of {micro_batch_size or batch_size // world.size}"
        )
    return split


def wrap(model: torch.nn.Module, world: World, *, compile: bool) -> torch.nn.Module:
    """The module a step runs: compiled when asked (any device), inside DDP on several ranks."""
    runner = model
    if compile:
        runner = torch.compile(model)  # type: ignore[assignment]
    if world.size > 1:
        device_ids = [world.device.index] if world.device.type == "cuda" else None
        runner = DistributedDataParallel(runner, device_ids=device_ids)
    return runner
