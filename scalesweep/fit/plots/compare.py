"""The compare kind's plots: each variant's frontier loss against compute with its law and band,
and the multiplier M(C) of each variant with its band and the line M = 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scalesweep.fit.laws.compare.fit import CompareFit
from scalesweep.fit.plots.canvas import figure, plain_ticks, save


def _grid(fit: CompareFit) -> np.ndarray:
    budgets = fit.cells.budgets
    high = max(float(budgets[-1]), fit.target or 0.0)
    return np.geomspace(budgets[0] / 1.3, high * 1.3, 120)


def _band(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile band over the resamples (rows), NaN-safe."""
    tail = 50 * (1 - level)
    with np.errstate(all="ignore"):
        values = np.where(np.isfinite(values), values, np.nan)
        low, high = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return low, high


def compare_laws(fit: CompareFit, out: Path) -> Path:
    """Frontier loss against C per variant (error bars: the resampled frontiers), with the
    fitted laws and their bands."""
    fig, ax = figure()
    budgets, grid = fit.cells.budgets, _grid(fit)
    low, high = _band(fit.frontier_boot, fit.level)
    for v, value in enumerate(fit.cells.variants):
        color = f"C{v}"
        name = f"{fit.variant} = {value}" + (" (baseline)" if v == 0 else "")
        y = fit.frontier[v]
        err = np.vstack([np.clip(y - low[v], 0, None), np.clip(high[v] - y, 0, None)])
        ax.errorbar(budgets, y, yerr=err, fmt="o", ms=5, color=color, capsize=3, label=name)
        if fit.laws is not None and fit.boot is not None:
            law = fit.laws.log_loss(grid)[0, v]
            ax.plot(grid, np.exp(law), "-", color=color, lw=1.2)
            lo, hi = _band(fit.boot.log_loss(grid)[:, v], fit.level)
            ax.fill_between(grid, np.exp(lo), np.exp(hi), color=color, alpha=0.18, lw=0)
    if fit.target is not None:
        ax.axvline(fit.target, color="grey", ls=":", lw=1, label="target budget")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_ticks(ax.yaxis)
    ax.set_xlabel(f"compute C (FLOPs, {fit.basis.flop_counting or 'as the runs count them'})")
    ax.set_ylabel("loss (best configuration per budget)")
    form = "L(C) = E + A·C^-α, E shared" if fit.shared_e else "L(C) = E + A·C^-α per variant"
    what = form if fit.laws is not None else "no law (fewer than 3 budgets)"
    ax.set_title(f"Loss against compute per {fit.variant}\n{what}; {fit.level:.0%} bands")
    ax.legend(fontsize=8)
    return save(fig, out, "compare_laws.png")


def compare_multiplier(fit: CompareFit, out: Path) -> Path:
    """M(C) of each variant against the baseline, its band and the line M = 1; points at the
    measured budgets (and the target) with their intervals."""
    fig, ax = figure()
    grid = _grid(fit)
    drawn = False
    for v, comparison in enumerate(fit.comparisons, start=1):
        color = f"C{v}"
        if fit.laws is not None and fit.boot is not None:
            ax.plot(grid, np.exp(fit.laws.log_multiplier(grid, 0)[0, v]), "-", color=color)
            lo, hi = _band(fit.boot.log_multiplier(grid, 0)[:, v], fit.level)
            ax.fill_between(grid, np.exp(lo), np.exp(hi), color=color, alpha=0.18, lw=0)
        points = [*comparison.at_budgets, *([comparison.at_target] if comparison.at_target else [])]
        for p in points:
            if p.ci[0] is None or p.ci[1] is None:
                continue
            err = [[max(p.value - p.ci[0], 0)], [max(p.ci[1] - p.value, 0)]]
            marker = "o" if p.measured else "D"
            ax.errorbar([p.flops], [p.value], yerr=err, fmt=marker, color=color, capsize=3)
            drawn = True
        ax.plot([], [], "o-", color=color, label=f"{comparison.value} against {fit.baseline}")
        if comparison.crossover is not None and grid[0] <= comparison.crossover <= grid[-1]:
            ax.axvline(comparison.crossover, color=color, ls="--", lw=1, label="crossover")
    ax.axhline(1.0, color="black", lw=1, label="M = 1 (no difference)")
    ax.set_xscale("log")
    ax.set_xlim(grid[0], grid[-1])
    if drawn or fit.laws is not None:
        ax.set_yscale("log")
        plain_ticks(ax.yaxis)
    else:  # e.g. the baseline's loss does not fall between its two budgets
        ax.text(0.5, 0.6, "no finite multiplier", transform=ax.transAxes, ha="center")
    ax.set_xlabel(f"compute C (FLOPs, {fit.basis.flop_counting or 'as the runs count them'})")
    ax.set_ylabel("multiplier M(C)")
    ax.set_title(
        f"Compute multiplier M(C) of {fit.variant} against {fit.baseline}\n"
        f"(> 1: the variant needs less compute); {fit.level:.0%} bands"
    )
    ax.legend(fontsize=8)
    return save(fig, out, "compare_multiplier.png")
