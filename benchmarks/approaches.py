"""Chinchilla Approaches 2 and 3 side by side on every isoFLOP set in tests/data.

For Epoch's extraction of the Chinchilla Figure 4 points and each of Porian et al.'s 14
configurations: both answers for a = N_opt's exponent with their intervals, whether they agree,
Czech et al. 2026's two diagnostics (budgets whose sizes are off the centre of their optimum;
α − β of Approach 3 with its bootstrap interval) and the recommendation `scalesweep fit`
prints with `--predict-flops` at 10× the largest budget (so both are backtested), all from the
pipeline the command runs (`run_fits`). The Step Law grid of tests/data
is an LR × batch-size grid, not an isoFLOP set, and has no Approach 2.

    python benchmarks/approaches.py [--bootstrap 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from scalesweep.fit import FitData, FitOptions
from scalesweep.fit.format import interval, num
from scalesweep.fit.pipeline import run_fits

DATA = Path(__file__).parents[1] / "tests" / "data"


def sets() -> dict[str, pd.DataFrame]:
    raw = pd.read_csv(DATA / "chinchilla_fig4_epoch_extracted.csv")
    out = {
        "Epoch's Chinchilla Fig. 4": pd.DataFrame(
            {"params": raw["Model Size"], "flops": raw["Training FLOP"], "loss": raw["loss"]}
        )
    }
    porian = pd.read_csv(DATA / "porian2024_isoflop_runs.csv")
    for config, runs in porian.groupby("config", sort=True):
        out[f"Porian {config}"] = runs.drop(columns="config").reset_index(drop=True)
    return out


def row(name: str, runs: pd.DataFrame, bootstrap: int) -> dict[str, str]:
    # a forecast 10x beyond the largest budget, so that both approaches are backtested
    options = FitOptions(bootstrap=bootstrap, predict_flops=10 * float(runs["flops"].max()))
    result = run_fits(
        FitData(runs), ("isoflop", "parametric"), options, source=name, kind="all"
    ).result
    both = result["approaches"]
    two, three, asym = both["approach2"], both["approach3"], both["alpha_minus_beta"]
    return {
        "set": name,
        "Approach 2 a": f"{num(two['a'], 3)} {interval(two['a_ci'])}",
        "Approach 3 a": f"{num(three['a'], 3)} {interval(three['a_ci'])}",
        "agree": {True: "yes", False: "**no**", None: "–"}[both["agree"]["a"]],
        "off-centre budgets": str(len(both["off_centre"])),
        "α − β": f"{num(asym['value'], 3)} {interval(asym['ci'])}",
        "trust": both["recommend"],
        "why": both["why"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [row(name, runs, args.bootstrap) for name, runs in sets().items()]
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r[h] for h in header) + " |")
    counts = pd.Series([r["trust"] for r in rows]).value_counts().to_dict()
    print(f"\nrecommendations: {counts}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
