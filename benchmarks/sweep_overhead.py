"""What Ray Tune + Ray Train + MLflow cost on top of the training itself.

Measured in one run, on the same machine:
1. `direct`: the same K trials run one after another through `scalesweep.train.train`.
2. `sweep, 1 at a time`: the K trials as a sweep with max_concurrent_trials=1. The overhead
   ratio is this wall time over (1); (this − direct) / K is the cost of starting a trial.
3. `sweep, packed`: the K trials with every trial running at once (CPU: one core each; GPU:
   a 1/K fraction each), against (1): how much packing small trials buys.
4. Per-report cost: one trial reporting every step against one reporting twice, divided by
   the extra reports.

    python benchmarks/sweep_overhead.py                      # CPU, tiny trials
    python benchmarks/sweep_overhead.py --device cuda --trials 8 --width 256 --depth 4 \
        --steps 600 --seq-len 256 --batch-size 32            # GPU packing, 8 small trials
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
        "resources": {"cpus_per_worker": 1, "gpus_per_worker": gpus, "max_concurrent_trials": 1},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "log_every_s": 5},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        raw[section][key] = value
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


def time_direct(raw: dict[str, Any]) -> float:
    from scalesweep.experiment import parse_experiment
    from scalesweep.train import train

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
    parser.add_argument(
        "--report-steps",
        type=int,
        default=60,
        help="steps of the per-report-cost trial (it reports every step)",
    )
    args = parser.parse_args()

    import ray
    from rich.console import Console
    from rich.table import Table

    os.environ.setdefault("SCALESWEEP_CACHE_DIR", tempfile.mkdtemp())
    cpus = os.cpu_count() or 2
    ray.init(
        num_cpus=max(cpus, args.trials) if args.device == "cpu" else cpus,
        include_dashboard=False,
        log_to_driver=False,
    )
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        direct = time_direct(sweep_raw(args, "direct", root))
        serial = time_sweep(sweep_raw(args, "serial", root))
        packed_overrides: dict[str, Any] = {"resources.max_concurrent_trials": args.trials}
        if args.device == "cuda":
            packed_overrides["resources.gpus_per_worker"] = round(1 / args.trials, 4)
        packed = time_sweep(sweep_raw(args, "packed", root, **packed_overrides))
        one = {"optim.lr": 3e-3, "train.steps": args.report_steps}
        few = time_sweep(
            sweep_raw(args, "few_reports", root, **one, **{"train.eval_every": args.report_steps})
        )
        many = time_sweep(sweep_raw(args, "many_reports", root, **one, **{"train.eval_every": 1}))
    per_report = (many - few) / (args.report_steps - 1)
    rows = [
        ("direct: K trials through train(), one after another", f"{direct:.1f} s", "1.00"),
        ("sweep, one trial at a time", f"{serial:.1f} s", f"{serial / direct:.2f}"),
        ("sweep, all K trials at once", f"{packed:.1f} s", f"{packed / direct:.2f}"),
        (
            "trial start cost: (serial sweep − direct) / K",
            f"{(serial - direct) / args.trials:.1f} s",
            "",
        ),
        ("cost of one ray.train.report (eval every step vs twice)", f"{per_report:.3f} s", ""),
    ]
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
