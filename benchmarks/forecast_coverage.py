"""How often the forecast's prediction intervals hold, on real and on synthetic ladders.

Each case fits the runs of the budgets up to C_max/8 with `scalesweep fit`'s own pipeline
(`run_fits` with `--predict-flops C_max`: the laws, their backtests, the calibrated intervals)
and sets the forecast against the held-out largest budget C_max's own optimum (the minimum of
its isoFLOP profile, Akima): is it inside the law's own prediction interval (`pi_law`) and the
calibrated one (`pi`), and how wide are they (hi/lo − 1)?

1. Porian et al. 2024's 14 configurations (tests/data): a table per law and the counts.
2. Synthetic ladders drawn from L(N, D) = E + A/N^α + B/D^β (Chinchilla's values), 12 budgets
   doubling from 1.25e16, 11 sizes per budget from 0.1× to 10× the optimum, multiplicative
   log-normal noise: the coverage over `--reps` seeds per noise level, which should be the
   nominal 95 % when the law holds.

    python benchmarks/forecast_coverage.py [--reps 100] [--noise 0.005 0.01]
        [--laws isoflop parametric] [--skip-porian]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.fit import FitData, FitOptions
from scalesweep.fit.forecast.backtest import optima
from scalesweep.fit.pipeline import run_fits

DATA = Path(__file__).parents[1] / "tests" / "data"
QUANTITIES = {"loss_opt": "loss", "n_opt": "N_opt"}
TRUE_LAW = (1.8, 400.0, 2000.0, 0.34, 0.37)
"""E, A, B, α, β of the synthetic ladders (Hoffmann et al. 2022's fit, rounded)."""


def forecast(runs: pd.DataFrame, laws: list[str], bootstrap: int) -> list[dict[str, Any]]:
    """One row per (law, quantity): the forecast of C_max from the budgets ≤ C_max/8."""
    options = FitOptions(bootstrap=bootstrap)
    truth = optima(FitData(runs), options)[-1]
    fitted = runs[runs["flops"] <= truth.flops / 8 * 1.01].reset_index(drop=True)
    options = FitOptions(bootstrap=bootstrap, predict_flops=truth.flops)
    result = run_fits(FitData(fitted), laws, options, source="benchmark", kind="all").result
    rows = []
    for law in laws:
        answer = result.get("prediction", {}).get(law)
        if answer is None:
            continue
        for quantity, label in QUANTITIES.items():
            value, point = truth.get(quantity), answer[quantity]
            row = {"law": law, "quantity": label, "error %": 100 * (point / value - 1)}
            for band in ("pi_law", "pi"):
                low, high = answer[band].get(quantity) or (None, None)
                ok = low is not None and low <= value <= high
                row[f"{band} covers"] = ok
                row[f"{band} width %"] = None if low is None else 100 * (high / low - 1)
            rows.append(row)
    return rows


def porian(laws: list[str], bootstrap: int) -> pd.DataFrame:
    runs = pd.read_csv(DATA / "porian2024_isoflop_runs.csv")
    rows = []
    for config, own in runs.groupby("config", sort=True):
        for row in forecast(own.drop(columns="config").reset_index(drop=True), laws, bootstrap):
            rows.append({"config": config, **row})
    return pd.DataFrame(rows)


def _optimal_n(flops: float) -> float:
    _, a, b, alpha, beta = TRUE_LAW
    sizes = np.geomspace(1e4, 1e13, 4000)
    return float(sizes[np.argmin(a / sizes**alpha + b / (flops / 6 / sizes) ** beta)])


def ladder(noise: float, rng: np.random.Generator) -> pd.DataFrame:
    e, a, b, alpha, beta = TRUE_LAW
    rows = []
    for flops in 1.25e16 * 2.0 ** np.arange(12):
        for n in _optimal_n(flops) * np.geomspace(0.1, 10, 11):
            d = flops / 6 / n
            loss = (e + a / n**alpha + b / d**beta) * math.exp(rng.normal(0, noise))
            rows.append((flops, n, d, loss))
    return pd.DataFrame(rows, columns=["flops", "params", "tokens", "loss"])


def synthetic(laws: list[str], noise: float, reps: int, bootstrap: int) -> pd.DataFrame:
    rows = []
    for seed in range(reps):
        for row in forecast(ladder(noise, np.random.default_rng(seed)), laws, bootstrap):
            rows.append({"noise %": 100 * noise, "seed": seed, **row})
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    def one(group: pd.DataFrame) -> pd.Series:
        return pd.Series(
            {
                "n": len(group),
                "pi_law covers": int(group["pi_law covers"].sum()),
                "pi covers": int(group["pi covers"].sum()),
                "pi covers %": 100 * group["pi covers"].mean(),
                "pi_law median width %": group["pi_law width %"].median(),
                "pi median width %": group["pi width %"].median(),
                "max |error| %": group["error %"].abs().max(),
            }
        )

    return frame.groupby(by, sort=False).apply(one, include_groups=False).reset_index()


def markdown(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "**no**"
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.005, 0.01])
    parser.add_argument("--laws", nargs="+", default=["isoflop", "parametric"])
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--skip-porian", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    if not args.skip_porian:
        table = porian(args.laws, args.bootstrap)
        print("## Porian et al.'s 14 configurations: budgets <= C_max/8 -> C_max\n")
        print(markdown(table.drop(columns=[c for c in table if c.endswith("width %")])))
        print("\n" + markdown(summary(table, ["law", "quantity"])))
    for noise in args.noise:
        table = synthetic(args.laws, noise, args.reps, args.bootstrap)
        print(f"\n## Synthetic ladders, noise {100 * noise:g} %, {args.reps} seeds\n")
        print(markdown(summary(table, ["law", "quantity"])))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
