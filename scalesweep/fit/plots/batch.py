"""PNG plots of the batch-size fits: loss contours in the (steps, tokens) plane with their
knees, B_crit against L, and Kaplan's L(N, S_min) and L(N, D) against the data.

matplotlib's Agg canvas (no display, no pyplot state); each function writes one file and
returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scalesweep.fit.laws.batch.critical import CriticalBatchFit, LevelFit
from scalesweep.fit.laws.batch.kaplan import KaplanFit, N
from scalesweep.fit.plots.canvas import figure, plain_ticks, save

MAX_PANELS = 4
"""Contour panels per figure: the first groups (smallest models) when there are more."""


def _figure(ncols: int = 1) -> tuple[Any, Any]:
    fig, axes = figure(ncols)
    return fig, np.atleast_1d(axes)


def _label(group: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" for k, v in group.items()) or "all runs"


def _contour_panel(ax: Any, levels: list[LevelFit]) -> None:
    """Each level's (S, E) per batch size, its fitted hyperbola and its knee (2·S_min,
    2·E_min); hollow points: a level not used in the law."""
    from matplotlib import colormaps

    colors = colormaps["viridis"](np.linspace(0, 0.9, max(len(levels), 1)))
    for lv, color in zip(levels, colors, strict=True):
        steps, batch = np.array(lv.steps), np.array(lv.batch)
        face = color if lv.used else "none"
        ax.plot(steps, steps * batch, "o", ms=3, mfc=face, mec=color)
        if lv.s_min is not None and lv.e_min is not None and lv.b_crit is not None:
            grid = np.geomspace(batch.min() / 3, batch.max() * 3, 100)
            fitted = lv.s_min + lv.e_min / grid
            ax.plot(fitted, fitted * grid, "-", lw=0.8, color=color)
            if lv.used:
                ax.plot([2 * lv.s_min], [2 * lv.e_min], "*", ms=8, color="red")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("steps S")
    ax.set_ylabel("tokens E = B·S")


def critical_batch_contours(fit: CriticalBatchFit, out: Path) -> Path:
    """Loss contours in the (steps, tokens) plane, one panel per group, knees starred."""
    groups = list(dict.fromkeys(tuple(lv.group.items()) for lv in fit.levels))[:MAX_PANELS]
    figure, axes = _figure(len(groups))
    for ax, key in zip(axes, groups, strict=True):
        mine = [lv for lv in fit.levels if tuple(lv.group.items()) == key]
        _contour_panel(ax, mine)
        low, high = min(lv.loss for lv in mine), max(lv.loss for lv in mine)
        ax.set_title(f"{_label(dict(key))}: L from {high:.3g} (dark) to {low:.3g}", fontsize=9)
    figure.suptitle("Steps and tokens to reach each loss; *: knee at B_crit = E_min/S_min")
    return save(figure, out, "critical_batch_contours.png")


def critical_batch_law(fit: CriticalBatchFit, out: Path) -> Path:
    """B_crit per level (with its interval) against L, the fitted power law and its band."""
    figure, (ax,) = _figure()
    groups = list(dict.fromkeys(tuple(lv.group.items()) for lv in fit.levels))
    for index, key in enumerate(groups):
        mine = [lv for lv in fit.levels if tuple(lv.group.items()) == key and lv.b_crit]
        for used in (True, False):
            part = [lv for lv in mine if lv.used == used and lv.b_crit_ci[0] is not None]
            if not part:
                continue
            y = np.array([lv.b_crit for lv in part], float)
            err = np.abs(np.array([lv.b_crit_ci for lv in part], float).T - y)
            ax.errorbar(
                [lv.loss for lv in part],
                y,
                yerr=err,
                fmt="o" if used else "x",
                ms=4,
                color=f"C{index}",
                alpha=1.0 if used else 0.4,
                label=_label(dict(key)) if used else None,
            )
    losses = [lv.loss for lv in fit.levels if lv.used]
    grid = np.geomspace(min(losses) / 1.05, max(losses) * 1.05, 100)
    ax.plot(grid, fit.b_crit(grid), "k-", label=f"B* = {fit.b_star:.3g}, α_B = {fit.alpha_b:.3f}")
    ax.fill_between(grid, *fit.band(grid), color="k", alpha=0.15, label=f"{fit.level:.0%} CI")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("loss L")
    plain_ticks(ax.xaxis)
    ax.set_ylabel("B_crit (tokens)")
    ax.set_title(f"B_crit(L) = B*·L^(−1/α_B); x: not used; CI: {fit.interval}", fontsize=8)
    ax.legend(fontsize=7)
    return save(figure, out, "critical_batch_law.png")


def kaplan_law(fit: KaplanFit, out: Path) -> Path:
    """Loss against S_min (or D) per model size, with the fitted law."""
    figure, (ax,) = _figure()
    x = fit.x
    for index, (n, rows) in enumerate(fit.points.groupby(N, sort=True)):
        ax.plot(rows[x], rows["loss"], ".", ms=3, color=f"C{index}", label=f"N = {n:.3g}")
        grid = np.geomspace(rows[x].min(), rows[x].max(), 100)
        ax.plot(grid, fit.loss(float(n), grid), "-", color=f"C{index}", lw=1)
    v = fit.values()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("S_min (steps at B ≫ B_crit)" if x == "S" else "tokens D")
    ax.set_ylabel("loss")
    ax.set_title(
        f"{fit.kind}: N_c={v['N_c']:.3g}, α_N={v['alpha_N']:.3f}, "
        f"{x}_c={v[f'{x}_c']:.3g}, α_{x}={v[f'alpha_{x}']:.3f}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    return save(figure, out, f"{fit.kind.replace('-', '_')}.png")
