"""Every GPU row of docs/performance.md in one run, printed as one table with the GPU and the date.

Cases (each a row; its wall time is shown so the ≤ 8-minute budget on one H100 can be checked):
1. trainer MFU, GPT-2 small (124M, T1024, bf16): the plain step (no diagnostics) and ours at
   the default diagnostics cadence (every 10 steps), eager and `torch.compile`;
2. 8 small trials packed on one GPU (1/8 of it each) against the same 8 one after another;
3. sweep / direct for one trial of ≥ 2 minutes;
4. tests/test_compile.py on CUDA (compiled vs eager, recompiles, resume; bf16 vs fp32);
5. one 2-rank NCCL trial through Ray Train, when the machine has 2 GPUs.

`--dry-run` builds every case (configs parsed and planned, the trainer's model and engine built
on the CPU, the compile tests collected) and times none: it runs anywhere, so the script is known
to work before a GPU is lent. Run it through benchmarks/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sweep_overhead  # noqa: E402
import trainer_throughput  # noqa: E402

GPT2 = {"width": 768, "depth": 12, "head_dim": 64, "seq_len": 1024, "vocab_size": 50304}
Row = tuple[str, str, str, str]  # case, target, measured, command


def _sweep_args(**kw: Any) -> argparse.Namespace:
    base = {"device": "cuda", "trials": 8, "width": 256, "depth": 4, "seq_len": 256,
            "batch_size": 32, "steps": 600}  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def trainer_rows(dry: bool) -> list[Row]:
    rows: list[Row] = []
    command = "python benchmarks/trainer_throughput.py --gpu"
    for compiled in (False, True):
        case = trainer_throughput.Case(
            f"GPT-2 small shape (d768 L12 T1024) bf16{', compiled' if compiled else ', eager'}",
            GPT2, batch_size=64, micro_batch_size=32, steps=40, device="cuda", compile=compiled,
        )  # fmt: skip
        if dry:
            # the model and engine once (compile is a flag of the same engine), on the CPU
            config = trainer_throughput.experiment(case, log_every=10)
            built = f"built: config, compile={config.train.compile}"
            if not compiled:
                from scalesweep.engine import Engine

                engine = Engine(config, device=torch.device("cpu"))
                built = f"built: engine, {engine.counts.total / 1e6:.0f}M params"
            rows.append((f"{case.name}: MFU plain / ours", "ours ≥ 45%", built, command))
            continue
        base = trainer_throughput.plain(case, warmup=10)
        ours = trainer_throughput.ours(case, log_every=10, warmup=10)
        measured = (
            f"plain {trainer_throughput.mfu(case, base)}, ours {trainer_throughput.mfu(case, ours)}"
            f" (ours/plain {ours / base:.3f}; {ours:,.0f} tok/s)"
        )
        rows.append(
            (f"{case.name}: MFU plain / ours", "ours ≥ 45%, ≥ 0.95 plain", measured, command)
        )
    return rows


def _build_sweep(raw: dict[str, Any]) -> int:
    """Parse and plan a sweep and resolve every trial's config, as the driver would: its trials."""
    from scalesweep.experiment import parse_experiment
    from scalesweep.sweep.plan import plan

    experiment = parse_experiment(raw)
    return plan(experiment).n_runs


def packing_rows(dry: bool, root: Path) -> list[Row]:
    args = _sweep_args()
    command = ("python benchmarks/sweep_overhead.py --device cuda --trials 8 --width 256 "
               "--depth 4 --steps 600 --seq-len 256 --batch-size 32 --packed")  # fmt: skip
    packed = {"resources.max_concurrent_trials": 8, "resources.gpus_per_worker": 0.125,
              "resources.cpus_per_worker": 1}  # fmt: skip
    raw = sweep_overhead.sweep_raw(args, "packed", root, **packed)
    if dry:
        return [("8 small trials packed / in sequence", "≤ 0.35",
                 f"built: {_build_sweep(raw)} trials", command)]  # fmt: skip
    direct = sweep_overhead.time_direct(sweep_overhead.sweep_raw(args, "direct", root), threads=1)
    together = sweep_overhead.time_sweep(raw)
    measured = f"{together / direct:.2f} ({together:.0f} s / {direct:.0f} s)"
    return [("8 small trials packed / in sequence", "≤ 0.35", measured, command)]


def long_trial_rows(dry: bool, root: Path) -> list[Row]:
    args = _sweep_args(trials=1, width=512, depth=8, seq_len=512, batch_size=16, steps=6000)
    command = ("python benchmarks/sweep_overhead.py --device cuda --trials 1 --steps 6000 "
               "--width 512 --depth 8 --seq-len 512")  # fmt: skip
    raw = sweep_overhead.sweep_raw(args, "long", root, **{"resources.cpus_per_worker": 1})
    if dry:
        return [("sweep / direct, one trial of ≥ 2 min", "≤ 1.10",
                 f"built: {_build_sweep(raw)} trial", command)]  # fmt: skip
    direct = sweep_overhead.time_direct(sweep_overhead.sweep_raw(args, "direct", root), threads=1)
    swept = sweep_overhead.time_sweep(raw)
    measured = f"{swept / direct:.3f} (trial {direct:.0f} s direct, {swept:.0f} s swept)"
    return [("sweep / direct, one trial of ≥ 2 min", "≤ 1.10", measured, command)]


def compile_test_rows(dry: bool) -> list[Row]:
    test = "tests/test_compile.py"
    command = f"SCALESWEEP_TEST_DEVICE=cuda python -m pytest -q {test}"
    flags = ["--collect-only", "-q"] if dry else ["-q", "-p", "no:cacheprovider"]
    env = {**os.environ, "SCALESWEEP_TEST_DEVICE": "cpu" if dry else "cuda"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, *flags],
        cwd=HERE.parent, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    verdict = lines[-1] if lines else done.stderr.strip()[-200:]
    if done.returncode != 0:
        verdict = f"FAILED (exit {done.returncode}): {verdict}"
    return [("compile + bf16 tests on CUDA", "pass", verdict, command)]


def nccl_rows(dry: bool, root: Path) -> list[Row]:
    command = "python benchmarks/gpu_check.py (2 GPUs: one 2-rank NCCL trial)"
    gpus = torch.cuda.device_count()
    if not dry and gpus < 2:
        return [("2-rank NCCL trial", "completes", f"skipped: {gpus} GPU(s)", command)]
    args = _sweep_args(trials=1, steps=200)
    ddp = {"resources.workers_per_trial": 2, "resources.gpus_per_worker": 1,
           "resources.cpus_per_worker": 1, "train.micro_batch_size": 16}  # fmt: skip
    raw = sweep_overhead.sweep_raw(args, "nccl", root, **ddp)
    if dry:
        return [("2-rank NCCL trial", "completes", f"built: {_build_sweep(raw)} trial", command)]
    seconds = sweep_overhead.time_sweep(raw)
    return [("2-rank NCCL trial", "completes", f"completed in {seconds:.0f} s", command)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="build every case, time none")
    args = parser.parse_args()
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (torch.cuda.is_available() is False); use --dry-run")

    from rich.console import Console
    from rich.table import Table

    os.environ.setdefault("SCALESWEEP_CACHE_DIR", tempfile.mkdtemp())
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    rows: list[tuple[Row, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not dry:
            import ray

            ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        cases: list[Callable[[], list[Row]]] = [
            lambda: trainer_rows(dry),
            lambda: packing_rows(dry, root),
            lambda: long_trial_rows(dry, root),
            lambda: nccl_rows(dry, root),
            lambda: compile_test_rows(dry),
        ]
        for case in cases:
            start = time.perf_counter()
            produced = case()
            elapsed = time.perf_counter() - start
            rows += [(row, elapsed / len(produced)) for row in produced]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (CPU)"
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "dry run: every case built, none timed" if dry else "measured"
    table = Table(title=f"gpu_check — {device}, {date}, torch {torch.__version__} ({mode})")
    for column in ("case", "target", "result", "s", "command"):
        table.add_column(column, justify="right" if column == "s" else "left", overflow="fold")
    for (case_name, target, measured, command), seconds in rows:
        table.add_row(case_name, target, measured, f"{seconds:.0f}", command)
    Console(width=160).print(table)
    if any(row[2].startswith("FAILED") for row, _ in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
