"""isoFLOP estimators measured on Porian et al. 2024's 14 configurations (tests/data).

Two tables, printed as Markdown (docs/fits.md holds their output):
1. Exponent: per configuration the published N_opt exponent a and ours per estimator
   (`quadratic`: a parabola through the 5 sizes nearest the sampled minimum; `akima`: Porian
   et al.'s interpolation), the error, and whether the published value lies inside our 95 %
   interval (OLS over the budgets' minima). Summary: max |a − published|, coverage.
2. Extrapolation (the default estimator): fit only the budgets ≤ C_max/8 of a configuration,
   predict the held-out largest budget C_max, and compare with that budget's own minimum
   (same estimator): loss error, N_opt error, and whether the confidence band (`ci`) and the
   prediction interval (`pi`) cover it.

    python benchmarks/porian_isoflop.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scalesweep.fit.laws.isoflop.approach2 import fit_isoflop
from scalesweep.fit.laws.isoflop.profiles import fit_budget

DATA = Path(__file__).parents[1] / "tests" / "data"
ESTIMATORS = ("quadratic", "akima")
DEFAULT = "akima"


def load() -> tuple[pd.DataFrame, pd.Series]:
    runs = pd.read_csv(DATA / "porian2024_isoflop_runs.csv")
    published = pd.read_csv(DATA / "porian2024_published_exponents.csv")
    return runs, published.set_index("config")["n_exponent"]


def exponent_table(runs: pd.DataFrame, published: pd.Series) -> pd.DataFrame:
    rows = []
    for config, truth in published.items():
        row: dict[str, object] = {"config": config, "published a": truth}
        for method in ESTIMATORS:
            fit = fit_isoflop(runs[runs["config"] == config], method=method)
            row[f"{method} a"] = fit.a
            row[f"{method} error"] = fit.a - truth
            row[f"{method} covers"] = _covers(list(fit.a_ci), truth)
        rows.append(row)
    return pd.DataFrame(rows)


def _covers(band: list[float | None], value: float) -> bool:
    return band[0] is not None and band[0] <= value <= band[1]  # type: ignore[operator]


def extrapolation_table(runs: pd.DataFrame, published: pd.Series) -> pd.DataFrame:
    rows = []
    for config in published.index:
        own = runs[runs["config"] == config]
        c_max = float(own["flops"].max())
        held = fit_budget(own[own["flops"] == c_max], c_max, method=DEFAULT)
        fit = fit_isoflop(own[own["flops"] <= c_max / 8 * 1.01], method=DEFAULT)
        p = fit.predict(c_max)
        rows.append(
            {
                "config": config,
                "budgets": sum(not b.excluded for b in fit.budgets),
                "loss error %": 100 * (p["loss_opt"] / held.loss_opt - 1),
                "N_opt error %": 100 * (p["n_opt"] / held.n_opt - 1),
                "loss ci covers": _covers(p["ci"]["loss_opt"], held.loss_opt),
                "loss pi covers": _covers(p["pi"]["loss_opt"], held.loss_opt),
                "N_opt ci covers": _covers(p["ci"]["n_opt"], held.n_opt),
                "N_opt pi covers": _covers(p["pi"]["n_opt"], held.n_opt),
            }
        )
    return pd.DataFrame(rows)


def _cell(column: str, value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:+.2f}" if column.endswith("%") else f"{value:.4f}"
    return str(value)


def _markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(False):
        cells = (_cell(c, v) for c, v in zip(frame.columns, row, strict=True))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    runs, published = load()
    exponents = exponent_table(runs, published)
    print(_markdown(exponents))
    for method in ESTIMATORS:
        worst = exponents[f"{method} error"].abs().max()
        covered = int(exponents[f"{method} covers"].sum())
        print(f"\n{method}: max |a − published| = {worst:.4f}; published inside the 95 % "
              f"interval in {covered} of {len(exponents)}")  # fmt: skip
    extrapolation = extrapolation_table(runs, published)
    print("\n" + _markdown(extrapolation))
    print(
        f"\nextrapolation ({DEFAULT}, budgets ≤ C_max/8 → C_max): max |loss error| "
        f"{extrapolation['loss error %'].abs().max():.2f} %, max |N_opt error| "
        f"{extrapolation['N_opt error %'].abs().max():.1f} %; covered by the prediction "
        f"interval: loss {int(extrapolation['loss pi covers'].sum())}, N_opt "
        f"{int(extrapolation['N_opt pi covers'].sum())} of {len(extrapolation)} "
        f"(confidence band: loss {int(extrapolation['loss ci covers'].sum())}, N_opt "
        f"{int(extrapolation['N_opt ci covers'].sum())})"
    )


if __name__ == "__main__":
    main()
