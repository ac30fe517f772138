"""Trainer throughput and MFU against a minimal plain-PyTorch step of the same model.

For each case, measured in the same process:
- `plain`: the bare loop (forward, backward, AdamW step; no schedule, clipping, diagnostics or
  metrics) on the same `GPT` module, the same batches and the same precision.
- `ours`: `scalesweep.train.train` with the default diagnostics cadence (log_every=10).
- `ours, diagnostics every step`: log_every=1, the worst case for the diagnostics' cost.
Throughput is wall-clock tokens over the steps after the first `--warmup` (allocator warm-up,
torch.compile), everything the loop does included.
MFU counts 6·N(without the input-embedding lookup) + 12·L·d·T FLOPs per token (PaLM App. B)
against the GPU's dense bf16 peak.

    python benchmarks/trainer_throughput.py                 # CPU case only
    python benchmarks/trainer_throughput.py --gpu           # + GPT-2-small (124M) on CUDA
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from scalesweep.callbacks import Callback


@dataclass(frozen=True)
class Case:
    name: str
    model: dict[str, Any]
    batch_size: int
    micro_batch_size: int
    steps: int
    device: str
    compile: bool = False


def experiment(case: Case, *, log_every: int) -> Any:
    from scalesweep.experiment import parse_experiment

    return parse_experiment(
        {
            "model": case.model,
            "optim": {"lr": 6e-4, "weight_decay": 0.1},
            "schedule": {"type": "cosine", "warmup": 0.1},
            "train": {
                "steps": case.steps,
                "batch_size": case.batch_size,
                "micro_batch_size": case.micro_batch_size,
                "eval_every": 10**9,
                "eval_batches": 1,
                "log_every": log_every,
                "device": case.device,
                "compile": case.compile,
                "divergence_margin": 100.0,
            },
        }
    ).resolve()


class Throughput(Callback):
    """Wall-clock throughput between the first logged step after `warmup` and the last one, so
    everything the loop does (diagnostics, metrics, callbacks) is inside the timed span."""

    def __init__(self, warmup: int, tokens_per_step: int, cuda: bool) -> None:
        self.warmup = warmup
        self.tokens_per_step = tokens_per_step
        self.cuda = cuda
        self.marks: list[tuple[int, float]] = []

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        if step > self.warmup and "train/loss" in metrics:
            if self.cuda:
                torch.cuda.synchronize()
            self.marks.append((step, time.perf_counter()))

    def tokens_per_s(self) -> float:
        (first_step, first_time), (last_step, last_time) = self.marks[0], self.marks[-1]
        return (last_step - first_step) * self.tokens_per_step / (last_time - first_time)


def ours(case: Case, *, log_every: int, warmup: int, noise: bool = True) -> float:
    from scalesweep.train import train

    tokens_per_step = case.batch_size * case.model["seq_len"]
    meter = Throughput(warmup, tokens_per_step, cuda=case.device == "cuda")
    config = experiment(case, log_every=log_every)
    if not noise:
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"grad_noise_scale": False})}
        )
    train(config, callbacks=[meter])
    return meter.tokens_per_s()


def plain(case: Case, *, warmup: int) -> float:
    """The minimal loop: same model, batches and precision; nothing else."""
    from scalesweep import data
    from scalesweep.data_path import load_shards
    from scalesweep.model import GPT

    config = experiment(case, log_every=10)
    shards = load_shards(config.data.path)
    vocab = config.model.vocab_size or shards.vocab_size
    model_config = config.model.model_copy(update={"vocab_size": vocab})
    device = torch.device(case.device)
    torch.manual_seed(0)
    model = GPT(model_config).to(device)
    runner: Any = torch.compile(model) if case.compile else model
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), fused=cuda)
    accumulation = case.batch_size // case.micro_batch_size
    seq = model_config.seq_len
    timed_tokens, start = 0, 0.0
    for step in range(case.steps):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        for micro in range(accumulation):
            x, y = data.sample_batch(
                shards.train,
                batch_size=case.micro_batch_size,
                seq_len=seq,
                seed=0,
                step=step,
                index=micro,
            )
            xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = runner(xt, yt).loss / accumulation
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            timed_tokens += case.batch_size * seq
    if cuda:
        torch.cuda.synchronize()
    return timed_tokens / (time.perf_counter() - start)


def mfu(case: Case, tokens_per_s: float) -> str:
    from scalesweep.config import ModelConfig
    from scalesweep.distributed import peak_flops as _peak_flops
    from scalesweep.flops import flops_per_token

    if case.device != "cuda":
        return "-"
    peak = _peak_flops(torch.device("cuda"))
    if peak is None:
        return "? (unknown GPU)"
    per_token = flops_per_token(ModelConfig(**case.model, vocab_size=50304), "palm")
    return f"{100 * tokens_per_s * per_token / peak:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="also run the 124M cases on CUDA")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    import os

    from rich.console import Console
    from rich.table import Table

    os.environ.setdefault("SCALESWEEP_CACHE_DIR", tempfile.mkdtemp())
    torch.set_num_threads(os.cpu_count() or 1)
    tiny = {"width": 128, "depth": 2, "head_dim": 32, "seq_len": 128}
    cases = [
        Case("tiny (w128 d2 T128), CPU fp32", tiny, batch_size=16, micro_batch_size=16,
             steps=80, device="cpu"),
        Case("tiny, 2 micro-batches (noise scale measured)", tiny, batch_size=16,
             micro_batch_size=8, steps=80, device="cpu"),
    ]  # fmt: skip
    if args.gpu:
        gpt2 = {"width": 768, "depth": 12, "head_dim": 64, "seq_len": 1024, "vocab_size": 50304}
        for compiled in (False, True):
            cases.append(
                Case(
                    f"GPT-2 small 124M (T1024), bf16{', compile' if compiled else ''}",
                    gpt2,
                    batch_size=64,
                    micro_batch_size=32,
                    steps=60,
                    device="cuda",
                    compile=compiled,
                )
            )
    table = Table(title="trainer throughput: ours against a plain step of the same model")
    for column in (
        "case",
        "plain tok/s",
        "ours tok/s",
        "ours / plain",
        "MFU (ours)",
        "diag every step / default",
        "noise scale on / off",
    ):
        table.add_column(column, justify="left" if column == "case" else "right")
    for case in cases:
        base = plain(case, warmup=args.warmup)
        default = ours(case, log_every=10, warmup=args.warmup)
        every = ours(case, log_every=1, warmup=args.warmup)
        noise = "-"  # one batch size: nothing to measure
        if case.micro_batch_size < case.batch_size:
            noise = f"{default / ours(case, log_every=10, warmup=args.warmup, noise=False):.3f}"
        table.add_row(
            case.name,
            f"{base:,.0f}",
            f"{default:,.0f}",
            f"{default / base:.3f}",
            mfu(case, default),
            f"{every / default:.3f}",
            noise,
        )
    Console(width=120).print(table)
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    else:
        print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__}")


if __name__ == "__main__":
    main()
