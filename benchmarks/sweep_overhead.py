"""What Ray Tune + Ray Train + MLflow cost on top of the training itself, on both trial paths.

Measured in one run, on the same machine, for the same K trials (one LR each):
1. `direct`: the K trials one after another through `scalesweep.train.train`, on as many
   threads as a trial gets.
2. `sweep, in place`: the K trials as a sweep, one at a time, each training inside its Tune
   trial process (workers_per_trial 1). The overhead ratio is this wall time over (1);
   (this − direct) / K is what starting a trial costs on this path.
3. `direct, 2 micro-batches` and `sweep, distributed`: the same trials as 2 gloo ranks through
   Ray Train (workers_per_trial 2), against one process accumulating the ranks' two
   micro-batches (the same windows): the start cost of a Ray Train worker group.
4. `--packed`: the K trials all at once (GPU: a 1/K fraction of it each), against (1).

    python benchmarks/sweep_overhead.py                      # CPU, tiny trials, both paths
    python benchmarks/sweep_overhead.py --device cuda --trials 8 --width 256 --depth 4 \
        --steps 600 --seq-len 256 --batch-size 32 --packed   # GPU packing, 8 small trials
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def sweep_raw(args: argparse.Namespace, name: str, root: Path, **overrides: Any) -> dict[str, Any]:
    lrs = [float(f"{3e-3 * 0.8**i:.4g}") for i in range(args.trials)]
    gpus = 0.0 if args.device == "cpu" else 1.0
    raw: dict[str, Any] = {
        "name": name,
        "storage_path": str(root / "runs"),
        "model": {
            "width": args.width,
            "depth": args.depth,
            "head_dim": 16 if args.width < 128 else 64,
            "seq_len": args.seq_len,
        },
        "optim": {"lr": {"grid": lrs}},
        "schedule": {"type": "cosine", "warmup": 0.05},
        "train": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "eval_every": args.steps,
            "eval_batches": 2,
            "log_every": 10,
            "device": args.device,
        },
        "resources": {"gpus_per_worker": gpus, "max_concurrent_trials": 1},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "log_every_s": 5},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        raw.setdefault(section, {})[key] = value
    return raw


def time_sweep(raw: dict[str, Any]) -> float:
    from scalesweep.experiment import parse_experiment
    from scalesweep.sweep.driver import run_sweep
    from scalesweep.sweep.plan import plan

    experiment = parse_experiment(raw)
    start = time.perf_counter()
    outcome = run_sweep(experiment, plan(experiment))
    elapsed = time.perf_counter() - start
    bad = [r for r in outcome.rows if r["status"] != "completed"]
    if bad:
        raise RuntimeError(f"benchmark trials did not complete: {bad}")
    return elapsed


def time_direct(raw: dict[str, Any], *, threads: int) -> float:
    import torch

    from scalesweep.experiment import parse_experiment
    from scalesweep.train import train

    torch.set_num_threads(threads)
    experiment = parse_experiment(raw)
    start = time.perf_counter()
    for lr in experiment.spaces["optim.lr"].grid_values():
        train(experiment.resolve({"optim.lr": lr}))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--packed", action="store_true", help="also time all K trials at once")
    args = parser.parse_args()

    import ray
    from rich.console import Console
    from rich.table import Table

    os.environ.setdefault("SCALESWEEP_CACHE_DIR", tempfile.mkdtemp())
    cpus = os.cpu_count() or 2
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    cpus_per_trial = cpus if args.device == "cpu" else 1
    in_place = {"resources.cpus_per_worker": cpus_per_trial}
    distributed = {"resources.workers_per_trial": 2, "resources.cpus_per_worker": cpus / 2 - 0.01,
                   "train.micro_batch_size": args.batch_size // 2}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        direct = time_direct(sweep_raw(args, "direct", root), threads=cpus_per_trial)
        serial = time_sweep(sweep_raw(args, "in_place", root, **in_place))
        accumulated = time_direct(
            sweep_raw(args, "direct2", root, **{"train.micro_batch_size": args.batch_size // 2}),
            threads=cpus_per_trial,
        )
        ddp = time_sweep(sweep_raw(args, "distributed", root, **distributed))
        packed = None
        if args.packed:
            overrides: dict[str, Any] = {"resources.max_concurrent_trials": args.trials}
            if args.device == "cuda":
                overrides["resources.gpus_per_worker"] = round(1 / args.trials, 4)
            packed = time_sweep(sweep_raw(args, "packed", root, **overrides))
    k = args.trials
    rows = [
        ("direct: K trials through train(), one after another", f"{direct:.1f} s", "1.00"),
        ("sweep, in place (a trial in its Tune process), one at a time", f"{serial:.1f} s",
         f"{serial / direct:.2f}"),
        ("  start cost per trial, in place: (sweep − direct) / K",
         f"{(serial - direct) / k:.2f} s", ""),
        ("direct, 2 micro-batches a step (the windows of 2 ranks)", f"{accumulated:.1f} s",
         f"{accumulated / direct:.2f}"),
        ("sweep, distributed (2 gloo ranks through Ray Train), one at a time", f"{ddp:.1f} s",
         f"{ddp / direct:.2f}"),
        ("  start cost per trial, distributed: (sweep − direct 2 micro) / K",
         f"{(ddp - accumulated) / k:.2f} s", ""),
    ]  # fmt: skip
    if packed is not None:
        rows.append(("sweep, all K trials at once", f"{packed:.1f} s", f"{packed / direct:.2f}"))
    table = Table(
        title=f"sweep overhead: K={args.trials} trials of width {args.width}, depth "
        f"{args.depth}, {args.steps} steps on {args.device}"
    )
    table.add_column("measurement")
    table.add_column("wall time", justify="right")
    table.add_column("ratio to direct", justify="right")
    for row in rows:
        table.add_row(*row)
    Console(width=120).print(table)
    print(yaml.safe_dump({"args": vars(args)}, sort_keys=False).strip())


if __name__ == "__main__":
    main()
