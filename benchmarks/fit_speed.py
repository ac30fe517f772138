"""Fitter speed: the full-grid Chinchilla Approach 3 fit and its bootstrap.

Measured in one run, on the same machine, on Epoch's Chinchilla Figure 4 points (the 5 highest
losses dropped, 240 points):
1. `looped baseline`: one scipy L-BFGS-B call per start with finite-difference gradients, as
   Epoch's replication ran it, on a random subset of the 4500 starts, extrapolated to 4500.
2. `looped, analytic gradient`: the same with our analytic gradient (subset, extrapolated).
3. `batched full grid`: `fit_arrays` (all 4500 starts at once + one polishing scipy call).
4. `bootstrap`: 1000 resamples refitted from the full-grid best, batched.
The speedup column is the extrapolated baseline over each row's time.

    python benchmarks/fit_speed.py [--subset 100] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scalesweep.fit.parametric import bootstrap_arrays, fit_arrays, huber_objective, start_grid

DATA = Path(__file__).parents[1] / "tests" / "data" / "chinchilla_fig4_epoch_extracted.csv"


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
    args = parser.parse_args()
    n, d, loss = load()
    grid = start_grid()
    subset = grid[np.random.default_rng(0).choice(len(grid), args.subset, replace=False)]
    rows = []

    t = time.perf_counter()
    looped(subset, n, d, loss, jac=False)
    base = (time.perf_counter() - t) * len(grid) / len(subset)
    rows.append(
        (
            "looped baseline (scipy, numeric grad)",
            f"{args.subset} starts, x{len(grid) / args.subset:.0f}",
            base,
        )
    )

    t = time.perf_counter()
    looped(subset, n, d, loss, jac=True)
    scale = len(grid) / len(subset)
    rows.append(("looped, analytic gradient", f"{args.subset} starts, x{scale:.0f}",
                 (time.perf_counter() - t) * scale))  # fmt: skip

    t = time.perf_counter()
    theta, objective, converged = fit_arrays(n, d, loss)
    rows.append(("batched full grid", f"{len(grid)} starts, measured", time.perf_counter() - t))

    t = time.perf_counter()
    samples = bootstrap_arrays(
        n, d, loss, theta, n_resamples=args.resamples, rng=np.random.default_rng(0)
    )
    rows.append(("bootstrap", f"{args.resamples} resamples, measured", time.perf_counter() - t))

    print(f"{'fit':40s} {'starts / resamples':28s} {'seconds':>9s} {'speedup':>8s}")
    for name, what, seconds in rows:
        print(f"{name:40s} {what:28s} {seconds:9.2f} {base / seconds:7.1f}x")
    e, a, b, alpha, beta = theta
    print(
        f"\nbest of grid: E={np.exp(e):.4f} A={np.exp(a):.1f} B={np.exp(b):.1f} alpha={alpha:.4f} "
        f"beta={beta:.4f} a={beta / (alpha + beta):.4f} objective={objective:.6g} "
        f"({converged}/{len(grid)} starts converged)"
    )
    sd = np.exp(samples[:, :3]).std(axis=0)
    print(
        f"bootstrap SD: E={sd[0]:.3f} A={sd[1]:.1f} B={sd[2]:.1f} "
        f"alpha={samples[:, 3].std():.4f} beta={samples[:, 4].std():.4f}"
    )


if __name__ == "__main__":
    main()
