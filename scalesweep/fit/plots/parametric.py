"""The plot of the parametric fit (Chinchilla Approach 3): contours of L(N, D) and the efficient
frontier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scalesweep.fit.laws.parametric.allocation import optimal_arrays
from scalesweep.fit.laws.parametric.approach3 import ParametricFit
from scalesweep.fit.plots.canvas import figure, save


def parametric_contours(fit: ParametricFit, out: Path) -> Path:
    """Contours of L(N, D), the efficient frontier (N_opt(C), D_opt(C)) and the points fitted."""
    fig, ax = figure()
    data = fit.points
    if len(data):
        n_lo, n_hi = float(data["params"].min()) / 3, float(data["params"].max()) * 30
        d_lo, d_hi = float(data["tokens"].min()) / 3, float(data["tokens"].max()) * 30
    else:
        n_lo, n_hi, d_lo, d_hi = 1e7, 1e12, 1e9, 1e14
    n, d = np.meshgrid(np.geomspace(n_lo, n_hi, 200), np.geomspace(d_lo, d_hi, 200))
    loss = fit.loss(n, d)
    levels = np.quantile(loss, np.linspace(0.02, 0.98, 15))
    contour = ax.contour(n, d, loss, levels=np.unique(levels), cmap="viridis", linewidths=0.8)
    ax.clabel(contour, fontsize=6, fmt="%.2f")
    # Budgets spent as the runs count FLOPs, like the predictions (`fit.flop_rule`).
    rule = fit.flop_rule
    budgets = np.geomspace(rule.k * n_lo**rule.p * d_lo, rule.k * n_hi**rule.p * d_hi, 60)
    frontier = optimal_arrays(fit.theta, budgets, rule)
    ax.plot(frontier["n_opt"], frontier["d_opt"], "r-", label=f"efficient frontier (a={fit.a:.3f})")
    if len(data):
        ax.plot(data["params"], data["tokens"], "k.", ms=3, label="runs")
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(d_lo, d_hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title(f"L = {fit.E:.3f} + {fit.A:.4g}/N^{fit.alpha:.3f} + {fit.B:.4g}/D^{fit.beta:.3f}")
    ax.legend(fontsize=8)
    return save(fig, out, "parametric_contours.png")
