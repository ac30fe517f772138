"""The training loop: one function, used by `scalesweep train` and by every Ray Train worker.

`train(config)` runs one training run and returns a `TrainSummary`. It never needs Ray: when
`torch.distributed` is initialized (Ray Train does that) it wraps the model for DDP, shards data
and evaluation by rank, and only rank 0 calls the metric callbacks.

Each step, in order: LR, eval (also at step 0, giving init_loss ℓ0), forward/backward with
gradient accumulation, clipping, optimizer step, metrics. A run whose training loss turns
non-finite or rises above ℓ0 + train.divergence_margin stops with status `diverged`; it does not
raise.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from scalesweep import data as data_lib
from scalesweep.config import ExperimentConfig, total_steps
from scalesweep.errors import UserError
from scalesweep.flops import count_params, flops_per_token
from scalesweep.model import GPT
from scalesweep.optim import build_optimizer, set_lr
from scalesweep.schedules import lr_multiplier

Status = Literal["completed", "diverged"]

# Dense bf16 peak of the GPUs we know, for MFU (vendor spec sheets, SXM parts).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "B200": 2250e12}


@dataclass(frozen=True)
class TrainSummary:
    """What one run produced; the per-trial summary names of DESIGN.md."""

    status: Status
    init_loss: float
    """ℓ0: validation loss at step 0."""
    final_val_loss: float | None
    """Validation loss after the last step; None when the run diverged."""
    last_finite_loss: float | None
    """Last finite training loss seen, for diverged runs."""
    steps: int
    """Optimizer steps taken."""
    total_steps: int
    params: int
    params_nonembed: int
    tokens: int
    """Training tokens consumed (steps · batch_size · seq_len)."""
    flops: float
    """Training FLOPs under train.flop_counting."""
    tokens_per_s: float
    wall_s: float
    diverged_step: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Callback(Protocol):
    """Hooks into the loop. `on_log` runs on rank 0 only; `on_report` runs on every rank (Ray
    Train wants every worker to report) at each evaluation and checkpoint."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_report(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None: ...


@dataclass(frozen=True)
class _World:
    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _world(config: ExperimentConfig, device: torch.device | None) -> _World:
    rank = dist.get_rank() if dist.is_initialized() else 0
    size = dist.get_world_size() if dist.is_initialized() else 1
    if device is None:
        wants_cuda = config.train.device == "cuda" or (
            config.train.device == "auto" and torch.cuda.is_available()
        )
        if wants_cuda and not torch.cuda.is_available():
            raise UserError("train.device: got 'cuda', but no CUDA device is available")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local_rank}") if wants_cuda else torch.device("cpu")
    return _World(rank=rank, size=size, device=device)


def _all_reduce_mean(values: torch.Tensor, world: _World) -> torch.Tensor:
    if world.size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values = values / world.size
    return values


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def _batch(
    tokens: np.ndarray,
    *,
    micro: int,
    seq_len: int,
    seed: int,
    step: int,
    index: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data_lib.sample_batch(
        tokens, batch_size=micro, seq_len=seq_len, seed=seed, step=step, index=index
    )
    return (
        torch.from_numpy(x).to(device, non_blocking=True),
        torch.from_numpy(y).to(device, non_blocking=True),
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    val: np.ndarray,
    config: ExperimentConfig,
    *,
    micro: int,
    world: _World,
    autocast: Any,
) -> float:
    """Mean validation loss over `train.eval_batches` fixed windows, shared out across ranks."""
    model.eval()
    total = torch.zeros(2, device=world.device)
    for index in range(world.rank, config.train.eval_batches, world.size):
        x, y = _batch(
            val,
            micro=micro,
            seq_len=config.model.seq_len,
            seed=config.train.seed,
            step=0,
            index=index,
            device=world.device,
        )
        with autocast():
            total[0] += model(x, y).ce_loss.float()
        total[1] += 1
    if world.size > 1:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    model.train()
    return (total[0] / total[1]).item()


def save_checkpoint(
    path: Path,
    *,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    step: int,
    init_loss: float,
    last_finite_loss: float | None,
) -> None:
    """Everything needed to continue bit-for-bit on CPU. The data position is the step itself:
    batches depend only on (seed, step, index), so there is no sampler state to save."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "init_loss": init_loss,
        "last_finite_loss": last_finite_loss,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load_checkpoint(
    path: Path, *, model: GPT, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[str, Any]:
    file = Path(path) / "state.pt"
    if not file.is_file():
        raise UserError(f"resume: no checkpoint at {file}")
    state = torch.load(file, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return state


def _diverged(loss: float, init_loss: float, margin: float) -> str | None:
    if not math.isfinite(loss):
        return f"non-finite training loss ({loss})"
    if loss > init_loss + margin:
        return f"training loss {loss:.4f} above init_loss {init_loss:.4f} + margin {margin}"
    return None


def train(
    config: ExperimentConfig,
    *,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    callbacks: Sequence[Callback] = (),
    device: torch.device | None = None,
) -> TrainSummary:
    """Train one model as `config` says and return its summary.

    checkpoint_dir: where `train.checkpoint_every` checkpoints go (rank 0 writes; the latest one
    is kept). resume_from: a checkpoint directory to continue from. device: overrides
    `train.device` (Ray Train passes the worker's device).
    """
    started = time.perf_counter()
    world = _world(config, device)
    shards = data_lib.load_shards(config.data.path)
    model_config = config.model
    if model_config.vocab_size is None:
        model_config = model_config.model_copy(update={"vocab_size": shards.vocab_size})
    elif model_config.vocab_size < shards.vocab_size:
        raise UserError(
            f"model.vocab_size: got {model_config.vocab_size}, but the data at "
            f"{config.data.path} has vocab_size {shards.vocab_size}"
        )
    per_rank, remainder = divmod(config.train.batch_size, world.size)
    micro = config.train.micro_batch_size or per_rank
    if remainder or per_rank % micro:
        raise UserError(
            f"train.batch_size: got {config.train.batch_size}, which does not split into "
            f"{world.size} ranks × micro-batches of {micro}"
        )
    accumulation = per_rank // micro
    n_steps = total_steps(config)
    seq_len = model_config.seq_len
    tokens_per_step = config.train.batch_size * seq_len
    flops_token = flops_per_token(model_config, config.train.flop_counting)
    mfu_flops_token = flops_per_token(model_config, "palm")
    counts = count_params(model_config)
    peak = _peak_flops(world.device)

    torch.manual_seed(config.train.seed)
    model = GPT(model_config).to(world.device)
    assert model.num_params()["total"] == counts.total  # the model's own count agrees with flops.py
    optimizer = build_optimizer(model, config.optim, fused=world.device.type == "cuda")
    step, init_loss, last_finite = 0, math.nan, None
    if resume_from is not None:
        state = load_checkpoint(resume_from, model=model, optimizer=optimizer, device=world.device)
        step, init_loss, last_finite = state["step"], state["init_loss"], state["last_finite_loss"]

    runner: torch.nn.Module = model
    if config.train.compile and world.device.type == "cuda":
        runner = torch.compile(model)  # type: ignore[assignment]
    if world.size > 1:
        device_ids = [world.device.index] if world.device.type == "cuda" else None
        runner = DistributedDataParallel(runner, device_ids=device_ids)
    use_bf16 = world.device.type == "cuda" and config.train.precision == "bf16"

    def autocast() -> Any:
        if use_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def report(step_: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        for callback in callbacks:
            callback.on_report(step_, metrics, checkpoint)

    def log(step_: int, metrics: dict[str, float]) -> None:
        if world.is_main:
            for callback in callbacks:
                callback.on_log(step_, metrics)

    def val_loss() -> float:
        return evaluate(runner, shards.val, config, micro=micro, world=world, autocast=autocast)

    if resume_from is None:
        init_loss = val_loss()
        log(0, {"val/loss": init_loss, "train/tokens": 0.0, "train/flops": 0.0})
        report(0, {"val/loss": init_loss, "init_loss": init_loss, "step": 0}, None)

    status: Status = "completed"
    reason: str | None = None
    diverged_step: int | None = None
    final_val: float | None = None
    window_start, window_tokens = time.perf_counter(), 0
    trained_tokens_at_start = step * tokens_per_step
    loss_sum = torch.zeros((), device=world.device)

    while step < n_steps:
        # 1) learning rate
        lr = config.optim.lr * lr_multiplier(config.schedule, step, n_steps)
        set_lr(optimizer, lr)
        is_log_step = (step + 1) % config.train.log_every == 0 or step + 1 == n_steps
        # 2) forward/backward over the micro-batches (DDP syncs gradients on the last one only)
        diagnostics: dict[str, torch.Tensor] = {}
        loss_sum.zero_()
        for micro_step in range(accumulation):
            x, y = _batch(
                shards.train,
                micro=micro,
                seq_len=seq_len,
                seed=config.train.seed,
                step=step,
                index=micro_step * world.size + world.rank,
                device=world.device,
            )
            last_micro = micro_step == accumulation - 1
            sync = nullcontext() if last_micro or world.size == 1 else runner.no_sync()  # type: ignore[operator]
            with sync, autocast():
                out = runner(x, y, diagnostics=is_log_step and micro_step == 0)
                (out.loss / accumulation).backward()
            loss_sum += out.ce_loss.detach() / accumulation
            if out.attn_logit_max is not None and out.output_logz is not None:
                diagnostics = {
                    "train/attn_logit_max": out.attn_logit_max,
                    "train/output_logz": out.output_logz,
                }
        # 3) clip, 4) step
        if config.optim.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm(
                [p.grad for p in model.parameters() if p.grad is not None]
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_tokens += tokens_per_step
        trained_tokens = step * tokens_per_step
        # 5) metrics, divergence check, evaluation, checkpoint
        if is_log_step:
            loss = _all_reduce_mean(loss_sum.detach().clone(), world).item()
            elapsed = time.perf_counter() - window_start
            tokens_per_s = window_tokens / elapsed
            metrics = {
                "train/loss": loss,
                "train/lr": lr,
                "train/tokens": float(trained_tokens),
                "train/flops": flops_token * trained_tokens,
                "train/grad_norm": float(grad_norm),
                "train/param_norm": float(torch.nn.utils.get_total_norm(list(model.parameters()))),
                "perf/tokens_per_s": tokens_per_s,
                **{k: float(v) for k, v in diagnostics.items()},
            }
            if peak is not None:
                metrics["perf/mfu"] = tokens_per_s * mfu_flops_token / (peak * world.size)
            window_start, window_tokens = time.perf_counter(), 0
            reason = _diverged(loss, init_loss, config.train.divergence_margin)
            if reason is None:
                last_finite = loss
            log(step, metrics)
            if reason is not None:
                status, diverged_step = "diverged", step
                break
        is_eval = step % config.train.eval_every == 0 or step == n_steps
        every = config.train.checkpoint_every
        is_checkpoint = every is not None and (step % every == 0 or step == n_steps)
        if is_eval or is_checkpoint:
            current_val = val_loss()
            if not math.isfinite(current_val):
                status, diverged_step = "diverged", step
                reason = f"non-finite validation loss ({current_val})"
                break
            log(step, {"val/loss": current_val})
            checkpoint = None
            if is_checkpoint and checkpoint_dir is not None and world.is_main:
                checkpoint = Path(checkpoint_dir) / "latest"
                save_checkpoint(
                    checkpoint,
                    model=model,
                    optimizer=optimizer,
                    step=step,
                    init_loss=init_loss,
                    last_finite_loss=last_finite,
                )
            report(step, {"val/loss": current_val, "step": step}, checkpoint)
            if step == n_steps:
                final_val = current_val

    wall = time.perf_counter() - started
    trained_tokens = step * tokens_per_step
    return TrainSummary(
        status=status,
        init_loss=init_loss,
        final_val_loss=final_val,
        last_finite_loss=last_finite,
        steps=step,
        total_steps=n_steps,
        params=counts.total,
        params_nonembed=counts.nonembed,
        tokens=trained_tokens,
        flops=flops_token * trained_tokens,
        tokens_per_s=(trained_tokens - trained_tokens_at_start) / wall,
        wall_s=wall,
        diverged_step=diverged_step,
        reason=reason,
    )
