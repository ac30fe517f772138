"""Fitter speed: the full-grid Chinchilla Approach 3 fit, its bootstrap, and the command.

Measured in one run, on the same machine, on Epoch's Chinchilla Figure 4 points (the 5 highest
losses dropped, 240 points):
1. `looped baseline`: one scipy L-BFGS-B call per start with finite-difference gradients, as
   Epoch's replication ran it, on a random subset of the 4500 starts, extrapolated to 4500.
2. `looped, analytic gradient`: the same with our analytic gradient (subset, extrapolated).
3. `batched full grid, every start to the end`: `fit_arrays(method="grid", prune=None)`.
4. `batched full grid, stragglers pruned`: `fit_arrays(method="grid")`.
5. `variable projection`: `fit_arrays()` as `scalesweep fit` runs it (the default).
6. `bootstrap`: 1000 resamples refitted from the best, batched.
The speedup column is the extrapolated baseline over each row's time; rows 3 to 5 also give
their objective evaluations and must agree to 4 significant digits.
Then the command, wall time including interpreter start, `--runs` times each, interleaved:
`scalesweep fit tests/data/chinchilla_fig4_epoch_extracted.csv --kind parametric --col
"params=Model Size" --col "flops=Training FLOP"` from this tree and, with `--baseline-src DIR`
(e.g. `git archive 223a5df | tar -x -C DIR`), from an older source tree.

    python benchmarks/fit_speed.py [--subset 100] [--resamples 1000] [--runs 5]
        [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scalesweep.fit.laws.parametric import search as parametric
from scalesweep.fit.laws.parametric.search import bootstrap_arrays, fit_arrays, start_grid
from scalesweep.fit.numerics.huber import huber_objective

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data" / "chinchilla_fig4_epoch_extracted.csv"
COMMAND = ["-m", "scalesweep", "fit", str(DATA), "--kind", "parametric",
           "--col", "params=Model Size", "--col", "flops=Training FLOP"]  # fmt: skip


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = pd.read_csv(DATA).sort_values("loss").iloc[:-5]
    n = raw["Model Size"].to_numpy(float)
    return n, raw["Training FLOP"].to_numpy(float) / (6 * n), raw["loss"].to_numpy(float)


def looped(starts: np.ndarray, n: np.ndarray, d: np.ndarray, loss: np.ndarray, *, jac: bool):
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)

    def value(x: np.ndarray) -> float:
        return float(huber_objective(x[None, :], log_n, log_d, log_l)[0][0])

    def both(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = huber_objective(x[None, :], log_n, log_d, log_l)
        return float(f[0]), g[0]

    best = None
    for start in starts:
        r = (
            minimize(both, start, jac=True, method="L-BFGS-B")
            if jac
            else minimize(value, start, method="L-BFGS-B")
        )
        if best is None or r.fun < best.fun:
            best = r
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=100, help="starts for the looped rows")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of the command")
    parser.add_argument("--baseline-src", type=Path, default=None, help="older source tree")
    args = parser.parse_args()
    n, d, loss = load()
    grid = start_grid()
    subset = grid[np.random.default_rng(0).choice(len(grid), args.subset, replace=False)]
    rows = []
    scale = len(grid) / len(subset)
    what = f"{args.subset} starts, x{scale:.0f}"
    wall, cpu = _timed(lambda: looped(subset, n, d, loss, jac=False))
    rows.append(("looped baseline (scipy, numeric grad)", what, wall * scale, cpu * scale))
    wall, cpu = _timed(lambda: looped(subset, n, d, loss, jac=True))
    rows.append(("looped, analytic gradient", what, wall * scale, cpu * scale))

    answers = {}
    runs = (
        ("batched full grid, every start to the end", {"method": "grid", "prune": None}),
        ("batched full grid, stragglers pruned", {"method": "grid"}),
        ("variable projection (the default)", {"method": "projection"}),
    )
    for label, kwargs in runs:
        calls = _count_calls()
        result: list[Any] = []
        wall, cpu = _timed(lambda kw=kwargs, out=result: out.extend(fit_arrays(n, d, loss, **kw)))
        theta, objective, n_starts, converged = result
        rows.append((label, f"{n_starts} starts, {calls()} calls", wall, cpu))
        answers[label] = theta
    laws = zip(*(_law(x) for x in answers.values()), strict=True)
    same = all(len({f"{v:.4g}" for v in values}) == 1 for values in laws)

    drawn: list[Any] = []
    wall, cpu = _timed(
        lambda: drawn.append(
            bootstrap_arrays(
                n, d, loss, theta, n_resamples=args.resamples, rng=np.random.default_rng(0)
            )
        )
    )
    samples = drawn[0]
    rows.append(("bootstrap", f"{args.resamples} resamples, measured", wall, cpu))

    base = rows[0][3]
    print(f"load average {os.getloadavg()[0]:.1f}; speedup is CPU time against the baseline's\n")
    print(f"{'fit':44s} {'starts / resamples':28s} {'wall s':>8s} {'CPU s':>8s} {'speedup':>8s}")
    for name, what, wall, cpu in rows:
        print(f"{name:44s} {what:28s} {wall:8.2f} {cpu:8.2f} {base / cpu:7.1f}x")
    e, a, b, alpha, beta = theta
    print(
        f"\nvariable projection: E={np.exp(e):.4f} A={np.exp(a):.1f} B={np.exp(b):.1f} "
        f"alpha={alpha:.4f} beta={beta:.4f} a={beta / (alpha + beta):.4f} "
        f"objective={objective:.6g} "
        f"({converged}/{n_starts} starts converged)"
    )
    print(f"the grid (pruned, unpruned) and projection agree to 4 significant digits: {same}")
    sd = np.exp(samples[:, :3]).std(axis=0)
    print(
        f"bootstrap SD: E={sd[0]:.3f} A={sd[1]:.1f} B={sd[2]:.1f} "
        f"alpha={samples[:, 3].std():.4f} beta={samples[:, 4].std():.4f}"
    )
    command_times(args.runs, args.baseline_src)


def _timed(run: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of `run()`; CPU time (user + system of this process) is what a
    loaded machine does not distort."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _law(theta: np.ndarray) -> list[float]:
    e, a, b, alpha, beta = theta
    return [float(np.exp(e)), float(np.exp(a)), float(np.exp(b)), float(alpha), float(beta)]


def _count_calls():  # type: ignore[no-untyped-def]
    """Count objective evaluations of the next fit (wraps `parametric.huber_objective`)."""
    count = [0]
    original = parametric.huber_objective

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        count[0] += 1
        return original(*args, **kwargs)

    parametric.huber_objective = counted  # type: ignore[assignment]

    def done() -> int:
        parametric.huber_objective = original  # type: ignore[assignment]
        return count[0]

    return done


def command_times(runs: int, baseline: Path | None) -> None:
    """Wall and CPU (user + sys) time of the fit command from this tree (and a baseline tree),
    interleaved, so both see the same load; CPU time is the load-independent figure."""
    import resource

    trees = {"this tree": ROOT, **({"baseline": baseline} if baseline else {})}
    wall: dict[str, list[float]] = {name: [] for name in trees}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run([sys.executable, *COMMAND], env=env, cwd=tree, check=True,
                           capture_output=True)  # fmt: skip
            wall[name].append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    print(f"\n`scalesweep fit ... --kind parametric` over {runs} runs, load average "
          f"{os.getloadavg()[0]:.1f} at the end (s):")  # fmt: skip
    for name in trees:
        print(f"  {name:10s} wall median {statistics.median(wall[name]):.2f} (min "
              f"{min(wall[name]):.2f}, max {max(wall[name]):.2f}); CPU median "
              f"{statistics.median(cpu[name]):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
