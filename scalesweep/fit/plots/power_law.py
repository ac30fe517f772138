"""The plot of Kaplan-style power laws: the frontier loss against N, D or C with each law, one
panel per variable and one colour per group; a law that is not resolved is dashed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scalesweep.fit.laws.power_law import PowerLaws
from scalesweep.fit.plots.canvas import figure, plain_ticks, save
from scalesweep.fit.plots.groups import label


def power_laws(fits: PowerLaws, out: Path) -> Path:
    """Frontier loss against each variable with its fitted laws, two panels a row."""
    variables = list(dict.fromkeys(law.x for law in fits.laws))
    ncols = min(len(variables), 2)
    fig, axes = figure(ncols, -(-len(variables) // ncols), squeeze=False)
    for ax in axes.flat[len(variables) :]:
        ax.set_visible(False)
    for ax, x in zip(axes.flat, variables, strict=False):
        for index, law in enumerate(fit for fit in fits.laws if fit.x == x):
            xs = law.points[x].to_numpy(float)
            grid = np.geomspace(xs.min(), xs.max(), 100)
            name = label(law.group)
            verdict = "" if law.resolved else ", not resolved"
            ax.plot(xs, law.points["loss"], "o", ms=4, color=f"C{index}")
            ax.plot(
                grid,
                law.predict(grid),
                "-" if law.resolved else "--",
                color=f"C{index}",
                label=f"{name}: exponent {law.exponent:.3f}{verdict}",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_ticks(ax.yaxis)
        ax.tick_params(axis="x", which="minor", labelbottom=False)  # decades only: no overlap
        ax.set_xlabel(x)
        ax.set_ylabel("loss (frontier)")
        ax.set_title(f"L({x}) ∝ {x}^p on the frontier (Kaplan et al. 2020)")
        ax.legend(fontsize=8)
    return save(fig, out, "power_laws.png")
