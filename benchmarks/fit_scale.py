"""`scalesweep fit --kind all` and the sweep report on a sweep of many runs (default 10,000).

The runs are written once to `--cache DIR/mlflow.db` (reused when it already holds `--runs`
runs) through the same calls a sweep makes (`tracking.start_parent_run`, per trial
`tracking.ChildRun.open` / `metric_log()` / `finish`, `tracking.finish_parent`), by
`--writers` processes under one parent run. The sweep: a known law L(N, D) with an LR bowl and
a batch-size bowl and 0.2 % noise, budgets × widths × LRs × batch sizes × seeds, each run with
a per-step curve of `--points` evaluations (val/loss, train/flops, train/loss and the two
logit diagnostics). Then, each in its own process (wall time and the peak RSS of the child by
`os.wait4`):
  1. `scalesweep fit NAME --tracking-uri URI --kind all --out DIR`;
  2. the sweep report (`scalesweep.sweep.report.sweep_report`) on the parent run;
  3. with `--reads`, in this process: the val/loss and train/flops curves of every run read in
     bulk (what fit does) and with one `get_metric_history` per run and key (what it did).

    python benchmarks/fit_scale.py [--runs 10000] [--cache /tmp/fit_scale] [--writers 4]
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.config import TrackingConfig

NAME = "fit-scale"
SETTINGS = TrackingConfig(log_every_s=60, outage_timeout_s=120)
E, A, ALPHA, B, BETA = 1.8, 400.0, 0.34, 2000.0, 0.37
SEQ = 256


def design(runs: int) -> list[dict[str, Any]]:
    """`runs` trials: budgets × widths × LRs × batch sizes, repeated over seeds."""
    rng = np.random.default_rng(0)
    cells = list(
        itertools.product(
            (1e15, 1e16, 1e17, 1e18),  # budget
            (64, 128, 256, 512, 1024),  # width
            1e-4 * 2.0 ** np.arange(10),  # lr
            (16, 32, 64, 128, 256),  # batch size
        )
    )
    trials = []
    for index in range(runs):
        budget, width, lr, bs = cells[index % len(cells)]
        seed = index // len(cells)
        n = 48 * width**2
        d = budget / (6 * n)
        lr_opt = 3e-3 * (n / 1e6) ** -0.5
        bowl = 0.05 * math.log(lr / lr_opt) ** 2 + 0.02 * math.log(bs / 64) ** 2
        final = (E + A / n**ALPHA + B / d**BETA + bowl) * math.exp(rng.normal(0, 2e-3))
        trials.append(
            {
                "name": f"trial-{index:05d}",
                "params": {
                    "model.width": width,
                    "model.depth": 4,
                    "optim.lr": float(lr),
                    "train.batch_size": bs,
                    "train.tokens": round(d),
                    "train.seed": seed,
                    "planned.flops": budget,
                    "planned.tokens": round(d),
                },
                "summary": {
                    "init_loss": 9.0,
                    "final_val_loss": final,
                    "params": n,
                    "params_nonembed": n,
                    "tokens": round(d),
                    "flops": 6.0 * n * d,
                },
                "n": n,
                "d": d,
                "bowl": bowl,
            }
        )
    return trials


def curve(trial: dict[str, Any], points: int) -> list[tuple[int, dict[str, float]]]:
    n, d, bowl = trial["n"], trial["d"], trial["bowl"]
    steps = max(points, math.ceil(d / (trial["params"]["train.batch_size"] * SEQ)))
    out = []
    for i in range(1, points + 1):
        step = round(steps * i / points)
        seen = d * step / steps
        loss = E + A / n**ALPHA + B / seen**BETA + bowl
        out.append(
            (
                step,
                {
                    m.VAL_LOSS: loss,
                    m.TRAIN_LOSS: loss * 1.01,
                    m.FLOPS: 6.0 * n * seen,
                    "train/attn_logit_max": 5.0 + math.log1p(step),
                    "train/output_logz": 1.0 + 0.01 * step,
                },
            )
        )
    return out


def write_part(args: tuple[str, str, str, list[dict[str, Any]], int]) -> int:
    """One writer process: the child runs of `trials` under `parent`, as a sweep's trial does."""
    uri, parent, spool, trials, points = args
    for trial in trials:
        params = trial["params"]
        run = tracking.ChildRun.open(
            uri=uri,
            experiment=NAME,
            parent_run_id=parent,
            storage=spool,
            name=trial["name"],
            params=params,
            tags=tracking.trial_tags(params, {}),
            tracking=SETTINGS,
        )
        log = run.metric_log()
        for step, values in curve(trial, points):
            log.on_log(step, values)
        assert run.finish(log, {**trial["summary"], m.STATUS: m.COMPLETED})
    return len(trials)


def ensure_store(cache: Path, runs: int, writers: int, points: int) -> tuple[str, str, float]:
    """The store's URI and parent run id, written now (timed) or found in the cache."""
    uri = f"sqlite:///{cache / 'mlflow.db'}"
    marker = cache / f"done-{runs}-{points}"
    if marker.exists():
        return uri, marker.read_text().strip(), 0.0
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("mlflow.db*"):
        old.unlink()
    start = time.perf_counter()
    client = tracking.connect(uri)
    parent = tracking.start_parent_run(client, NAME, params={}, tags={}, artifacts={})
    trials = design(runs)
    parts = [
        (uri, parent, str(cache / "spool"), trials[i::writers], points) for i in range(writers)
    ]
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        done = 0
        for count in pool.imap_unordered(write_part, parts):
            done += count
    assert done == runs
    tracking.finish_parent(client, parent, finished=True)
    marker.write_text(parent)
    return uri, parent, time.perf_counter() - start


REPORT = (
    "import sys; from pathlib import Path; from scalesweep.sweep.report import sweep_report; "
    "sweep_report(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))"
)


def timed(command: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one child process (its
    own rusage, by `os.wait4`: on a loaded machine the CPU time is the steadier figure); its
    standard output."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        text = out.read()
        if child.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{text}\n{err.read()}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, text  # ru_maxrss: KiB on Linux


def compare_reads(uri: str) -> None:
    """CPU seconds of `tracking.read.curves` for two keys: bulk reads against per-run reads."""
    from scalesweep.tracking import read

    def per_run(client: Any, run_ids: list[str], key: str, cache: dict) -> None:
        for run_id in run_ids:
            cache[run_id, key] = {x.step: x.value for x in client.get_metric_history(run_id, key)}

    table = read.runs_table(NAME, uri)
    bulk = read._fetch_histories
    for name, fetch in (("bulk (500 runs a query)", bulk), ("one query per run and key", per_run)):
        read._fetch_histories = fetch  # type: ignore[assignment]
        start = time.process_time()
        rows = len(read.curves(NAME, uri, keys=(m.VAL_LOSS, m.FLOPS), table=table))
        print(f"curves, {name}: {rows} rows, {time.process_time() - start:.1f} s CPU")
    read._fetch_histories = bulk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=10, help="curve points per run")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "fit_scale")
    parser.add_argument("--show", action="store_true", help="print fit's terminal output")
    parser.add_argument("--reads", action="store_true", help="also time bulk vs per-run reads")
    args = parser.parse_args()
    uri, parent, wrote = ensure_store(args.cache, args.runs, args.writers, args.points)
    print(f"store {uri}: {args.runs} runs × {args.points} curve points", end="")
    print(f", written in {wrote:.0f} s" if wrote else " (cached)")
    out = Path(tempfile.mkdtemp(prefix="fit_scale_"))
    py = sys.executable
    rows = []
    fit = [py, "-m", "scalesweep", "fit", NAME, "--tracking-uri", uri, "--kind", "all"]
    wall, cpu, peak, text = timed([*fit, "--out", str(out / "fit")])
    rows.append(("fit --kind all", wall, cpu, peak, len(text.splitlines())))
    if args.show:
        print(text)
    wall, cpu, peak, text = timed([py, "-c", REPORT, NAME, uri, parent, str(out / "report")])
    rows.append(("sweep report", wall, cpu, peak, len(text.splitlines())))
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPU cores, load {load:.1f} (1 min) at the end\n")
    print(f"outputs in {out}")
    print(f"{'command':<18} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'output lines':>13}")
    for name, wall, cpu, peak, lines in rows:
        print(f"{name:<18} {wall:>8.1f} {cpu:>8.1f} {peak:>13.0f} {lines:>13}")
    if args.reads:
        compare_reads(uri)


if __name__ == "__main__":
    main()
