"""The plot of `--predict-flops`: N_opt(C) and D_opt(C) of each compute-allocating fit,
extrapolated to the budget asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scalesweep.fit.laws.isoflop.approach2 import IsoflopFit
from scalesweep.fit.laws.parametric.allocation import optimal_arrays
from scalesweep.fit.laws.parametric.approach3 import ParametricFit
from scalesweep.fit.plots.canvas import figure, save


def _predicted_points(ax: Any, predicted: dict[str, Any], key: str) -> None:
    """Each fit's prediction at the asked budget, with its interval as an error bar."""
    budget = float(predicted["flops"])
    for index, source in enumerate(("isoflop", "parametric")):
        point = predicted.get(source)
        if not isinstance(point, dict):
            continue
        low, high = point.get("ci", {}).get(key) or (None, None)
        err = None if low is None else [[point[key] - low], [high - point[key]]]
        ax.errorbar(
            [budget],
            [point[key]],
            yerr=err,
            fmt="*",
            ms=12,
            capsize=4,
            color=f"C{index}",
            label=f"prediction ({source})",
        )
    ax.axvline(budget, color="grey", lw=0.8, ls=":")


def prediction(fits: dict[str, Any], predicted: dict[str, Any], out: Path) -> Path:
    """N_opt(C) and D_opt(C) of each compute-allocating fit, extrapolated to the budget of
    `--predict-flops`, with the isoFLOP laws' confidence bands and the predicted point's
    interval."""
    budget = float(predicted["flops"])
    isoflop: IsoflopFit | None = fits.get("isoflop")
    parametric: ParametricFit | None = fits.get("parametric")
    kept = [b for b in isoflop.budgets if not b.excluded] if isoflop else []
    flops = [b.flops for b in kept] + [budget]
    grid = np.geomspace(min(flops) / 2, max(flops) * 2, 100)
    fig, axes = figure(2)
    for ax, key, label in zip(
        axes, ("n_opt", "d_opt"), ("parameters N_opt", "tokens D_opt"), strict=True
    ):
        if isoflop is not None:
            law = isoflop.n_law if key == "n_opt" else isoflop.d_law
            ax.plot(
                [b.flops for b in kept],
                [getattr(b, key) for b in kept],
                "o",
                color="C0",
                label="isoFLOP minima (Approach 2)",
            )
            ax.plot(grid, law.predict(grid), "-", color="C0", label=f"∝ C^{law.exponent:.3f}")
            band = law.band(grid)
            if band is not None:
                ax.fill_between(grid, *band, color="C0", alpha=0.2, label=f"{law.level:.0%} CI")
        if parametric is not None:
            path = optimal_arrays(parametric.theta, grid, parametric.flop_rule)[key]
            ax.plot(grid, path, "--", color="C1", label="parametric L(N, D) (Approach 3)")
        _predicted_points(ax, predicted, key)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split()[-1]} at C = {budget:.3g} FLOPs")
        ax.legend(fontsize=7)
    return save(fig, out, "prediction.png")
