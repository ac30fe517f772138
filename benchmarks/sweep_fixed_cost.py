"""Where the whole `scalesweep sweep` command spends the time that is not training, start to
exit, for a sweep of K short trials run one at a time (the user's view: the command as typed).

The command's output lines are timestamped as they arrive; the parts are the gaps between
them: planning (until the "N trials" line), start (until the first trial ends: Ray's start, the
parent run, the first trial's process, plus one trial's training), the trials (first to last
trial end), the closing table and report (until the last line printed) and the exit (last line
to the process's end).

    python benchmarks/sweep_fixed_cost.py [--trials 4] [--steps 150] [--runs 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

PARTS = ("plan", "start + first trial", "other trials", "table and report", "exit", "total")


def sweep_file(folder: Path, trials: int, steps: int) -> Path:
    raw = {
        "name": "fixed_cost",
        "model": {"width": 32, "depth": 2, "head_dim": 16, "seq_len": 64},
        "optim": {"lr": {"grid": [round(0.01 * 0.7**i, 5) for i in range(trials)]}},
        "schedule": {"type": "cosine", "warmup": 0.1},
        "train": {"steps": steps, "batch_size": 16, "eval_every": steps, "eval_batches": 2},
        "resources": {"cpus_per_worker": 1, "max_concurrent_trials": 1},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}"},
        "storage_path": str(folder / "runs"),
    }
    path = folder / "fixed_cost.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# The command as installed, and as it was before its quick exit (`main()` then `sys.exit`).
COMMANDS = {
    "scalesweep": [str(Path(sys.executable).parent / "scalesweep")],
    "main() + sys.exit": [
        sys.executable, "-c", "import sys; from scalesweep.cli import main; sys.exit(main())"
    ],
}  # fmt: skip


def one_run(command: list[str], trials: int, steps: int) -> list[float]:
    """The parts' seconds for one run of the command, in the order of PARTS."""
    with tempfile.TemporaryDirectory() as tmp:
        path = sweep_file(Path(tmp), trials, steps)
        command = [*command, "sweep", str(path)]
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        planned = ends = last = None
        trial_ends = []
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - start
            planned = planned or (now if " trials, " in line else None)
            if line.startswith("sweep: ") and " done " in line:
                trial_ends.append(now)
            last = now
        ends = time.perf_counter() - start
        if proc.wait() != 0 or planned is None or len(trial_ends) < trials or last is None:
            raise SystemExit(f"the sweep did not run as expected (exit {proc.returncode})")
    first, final = trial_ends[0], trial_ends[-1]
    return [planned, first - planned, final - first, last - final, ends - last, ends]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    runs, names = [], []
    for i in range(args.runs):  # alternated, so load drifts hit both alike
        for name, command in COMMANDS.items():
            runs.append(one_run(command, args.trials, args.steps))
            names.append(f"{name} #{i + 1}")
    table = Table(title=f"`scalesweep sweep`, {args.trials} trials of {args.steps} steps, s")
    table.add_column("part")
    for name in names:
        table.add_column(name, justify="right")
    for name, values in zip(PARTS, zip(*runs, strict=True), strict=True):
        table.add_row(name, *(f"{v:.2f}" for v in values))
    Console(width=100).print(table)


if __name__ == "__main__":
    main()
