"""The plot of Kaplan-style power laws: the frontier loss against N, D or C with each law."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scalesweep.fit.laws.power_law import PowerLawFit
from scalesweep.fit.plots.canvas import figure, plain_ticks, save


def power_laws(fits: dict[str, PowerLawFit], out: Path) -> Path:
    """Frontier loss against each variable with its fitted law, two panels a row."""
    ncols = min(len(fits), 2)
    fig, axes = figure(ncols, -(-len(fits) // ncols), squeeze=False)
    for ax in axes.flat[len(fits) :]:
        ax.set_visible(False)
    for ax, (x, fit) in zip(axes.flat, fits.items(), strict=False):
        xs = fit.points[x].to_numpy(float)
        grid = np.geomspace(xs.min(), xs.max(), 100)
        ax.plot(xs, fit.points["loss"], "o", ms=4, label="frontier runs")
        ax.plot(grid, fit.predict(grid), "-", label=f"fit, exponent {fit.exponent:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_ticks(ax.yaxis)
        ax.set_xlabel(x)
        ax.set_ylabel("loss (frontier)")
        ax.set_title(f"L({x}) ∝ {x}^{fit.exponent:.3f} (Kaplan et al. 2020)")
        ax.legend(fontsize=8)
    return save(fig, out, "power_laws.png")
