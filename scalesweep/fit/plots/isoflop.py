"""Plots of the isoFLOP fits (Chinchilla Approach 2): the profiles per budget with their minima,
and N_opt(C), D_opt(C) with their confidence bands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scalesweep.fit.laws.isoflop.approach2 import IsoflopFit
from scalesweep.fit.laws.isoflop.profiles import akima_profile
from scalesweep.fit.numerics.regression import LogLogFit
from scalesweep.fit.plots.canvas import figure, save


def isoflop_curves(fit: IsoflopFit, out: Path) -> Path:
    """Loss against N per budget (colour: budget), the fitted curves over the sizes each was
    fitted to, and their minima. The loss axis stops a little above the fitted windows: the
    far ends of a wide isoFLOP grid would squash the minima into a line."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    fig, ax = figure()
    flops = [b.flops for b in fit.budgets]
    norm = LogNorm(min(flops), max(flops) * 1.0001) if flops else None
    cmap = colormaps["viridis"]
    in_window: list[float] = []
    for budget in fit.budgets:
        color = cmap(norm(budget.flops)) if norm else "C0"
        marker = "x" if budget.excluded else "o"
        ax.plot(budget.sizes, budget.losses, marker, color=color, ms=4)
        if budget.coef is not None and budget.fit_range is not None:
            # Only over the sizes it was fitted to: a local parabola says nothing beyond them.
            grid = np.geomspace(*budget.fit_range, 100)
            ax.plot(grid, np.polyval(budget.coef, np.log(grid)), "-", color=color, lw=1)
            lo, hi = budget.fit_range
            in_window += [
                x for n, x in zip(budget.sizes, budget.losses, strict=True) if lo <= n <= hi
            ]
        elif fit.method == "akima" and len(budget.sizes) >= 3:
            sampled = np.array(budget.losses)
            log_n, log_loss = akima_profile(np.log(budget.sizes), sampled)
            # An overshooting interpolant (sizes almost equal) would run off the axes.
            spread = np.log(sampled.max() / sampled.min())
            log_loss = np.clip(log_loss, np.log(sampled.min()) - spread, np.log(sampled.max()))
            ax.plot(np.exp(log_n), np.exp(log_loss), "-", color=color, lw=1)
            in_window += list(budget.losses)
        if not budget.excluded and budget.n_opt is not None:
            ax.plot([budget.n_opt], [budget.loss_opt], "*", color="red", ms=10, mec="black")
    losses = [x for b in fit.budgets for x in b.losses]
    if in_window and losses:
        span = max(in_window) - min(losses)
        ax.set_ylim(min(losses) - 0.05 * span, max(in_window) + 0.15 * span)
    if norm is not None:
        fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="budget C (training FLOPs)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final loss")
    ax.set_title(f"isoFLOP profiles ({fit.method} fit): ★ minimum, x excluded budget")
    return save(fig, out, "isoflop_curves.png")


def _law_panel(ax: Any, law: LogLogFit, xs: np.ndarray, ys: np.ndarray, label: str) -> None:
    grid = np.geomspace(xs.min() / 2, xs.max() * 2, 100)
    ax.plot(xs, ys, "o", label=f"{label} per budget (isoFLOP minima)")
    ax.plot(grid, law.predict(grid), "-", label=f"fit ∝ C^{law.exponent:.3f}")
    band = law.band(grid)
    if band is not None:
        ax.fill_between(grid, *band, alpha=0.25, label=f"{law.level:.0%} confidence band")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel(label)
    ax.set_title(f"{label}(C) ∝ C^{law.exponent:.3f}")
    ax.legend(fontsize=8)


def isoflop_optimal(fit: IsoflopFit, out: Path) -> Path:
    """N_opt and D_opt against C with the fitted power laws and confidence bands."""
    fig, (left, right) = figure(2)
    kept = [b for b in fit.budgets if not b.excluded]
    flops = np.array([b.flops for b in kept])
    _law_panel(left, fit.n_law, flops, np.array([b.n_opt for b in kept], float), "N_opt")
    _law_panel(right, fit.d_law, flops, np.array([b.d_opt for b in kept], float), "D_opt")
    return save(fig, out, "isoflop_optimal.png")
