"""Does the sweep driver slow down as trials pile up? A sweep of N tiny identical trials (a few
steps each) on the local Ray, MLflow on SQLite (or --tracking-uri, e.g. the PostgreSQL server of
clusters/mlflow/).

At each trial's end the driver's own CPU time (this process: Tune's scheduling, the search,
the progress line, the MLflow parent run; trials run in their own Tune processes) and the wall
clock are recorded. Per trial, around trial 10 (trials 5–15) and around trial N (the last 10):
the driver's CPU seconds per trial and the wall seconds between trial ends. The trials are the
same work, so a driver whose cost grows with the number of trials shows up as a ratio above 1.
Target: flat within 20% (ratio ≤ 1.2).

    python benchmarks/sweep_scale.py                       # 300 trials, SQLite
    python benchmarks/sweep_scale.py --tracking-uri postgresql://...  # an MLflow server's store
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def sweep_raw(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    return {
        "name": "sweep_scale",
        "storage_path": str(root / "runs"),
        "model": {"width": 16, "depth": 1, "head_dim": 8, "seq_len": 16},
        "optim": {"lr": 1e-3},
        "schedule": {"type": "constant", "warmup": 0.0},
        "train": {
            "seed": {"grid": list(range(args.trials))},
            "steps": args.steps,
            "batch_size": 4,
            "eval_every": args.steps,
            "eval_batches": 1,
            "eval_batch_size": 4,
            "log_every": args.steps,
            "device": "cpu",
        },
        "resources": {"cpus_per_worker": 1, "max_concurrent_trials": args.concurrent},
        "tracking": {"uri": args.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()

    import ray
    from rich.console import Console
    from rich.table import Table

    from scalesweep.experiment import parse_experiment
    from scalesweep.sweep.driver import run_sweep
    from scalesweep.sweep.plan import plan
    from scalesweep.sweep.progress import SweepProgress

    os.environ.setdefault("SCALESWEEP_CACHE_DIR", tempfile.mkdtemp())
    marks: list[tuple[float, float]] = []  # (driver CPU s, wall s) at each trial's end
    end = SweepProgress._end

    def timed_end(self: SweepProgress, trial: Any, status: str, value: float | None) -> None:
        end(self, trial, status, value)
        marks.append((time.process_time(), time.perf_counter()))

    SweepProgress._end = timed_end  # type: ignore[method-assign]
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        experiment = parse_experiment(sweep_raw(args, Path(tmp)))
        start = time.perf_counter()
        outcome = run_sweep(experiment, plan(experiment))
        total = time.perf_counter() - start
    done = sum(r["status"] == "completed" for r in outcome.rows)

    def per_trial(lo: int, hi: int) -> tuple[float, float]:
        """Driver CPU s and wall s per trial between the ends of trials lo and hi (1-based)."""
        (c0, w0), (c1, w1) = marks[lo - 1], marks[hi - 1]
        return (c1 - c0) / (hi - lo), (w1 - w0) / (hi - lo)

    n = len(marks)
    early, late = per_trial(5, 15), per_trial(n - 10, n)
    store = experiment.config.tracking.uri.split(":")[0]
    title = f"sweep scale: {n} trials ({done} completed) of {args.steps} steps, "
    title += f"{args.concurrent} at a time, {total:.0f} s, MLflow on {store}"
    table = Table(title=title)
    for column in ("per trial", "around trial 10", f"around trial {n}", "ratio"):
        table.add_column(column, justify="left" if column == "per trial" else "right")
    names = ("driver CPU s", "wall s between trial ends")
    for name, a, b in zip(names, early, late, strict=True):
        table.add_row(name, f"{a:.3f}", f"{b:.3f}", f"{b / a:.2f}")
    Console(width=120).print(table)
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(marks)]
    print(f"median wall between trial ends {statistics.median(gaps):.3f} s; load "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
