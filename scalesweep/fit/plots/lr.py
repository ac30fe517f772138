"""Plots of learning-rate sweeps (Wortsman et al. 2023): final loss against LR, the LR sensitivity
of each group, and the best LR against width. Groups are drawn as `groups` says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scalesweep.fit.laws.diagnostics import sort_key
from scalesweep.fit.laws.lr.sensitivity import GroupSensitivity, LrSensitivityFit
from scalesweep.fit.laws.lr.transfer import grid_span
from scalesweep.fit.plots.canvas import DIVERGED_STYLE, figure, save
from scalesweep.fit.plots.groups import (
    intervention_panels,
    label,
    split_width,
    varying,
    width_colors,
)


def lr_axis(ax: Any) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.grid(True, which="major", alpha=0.3)


def _scored(fit: LrSensitivityFit) -> tuple[tuple[float, float], str]:
    """(range, words) of the range the scores are taken over (`scored_range`)."""
    lo, hi = fit.lr_range
    if fit.scored_range is None:
        return fit.lr_range, f"the LRs each group spans in [{lo:g}, {hi:g}]"
    return fit.scored_range, "LRs in [{:g}, {:g}]".format(*fit.scored_range)


def _curve(ax: Any, group: GroupSensitivity, key: dict[str, Any], color: Any) -> None:
    lrs, losses = (np.array(v, float) for v in zip(*group.curve, strict=True))
    width, _ = split_width(key)
    score = "n/a" if group.sensitivity is None else f"{group.sensitivity:.3f}"
    name = f"{width}" if width is not None else label(key)
    ax.plot(lrs, losses, "o-", color=color, ms=4, label=f"{name} (sensitivity {score})")
    capped = losses >= group.init_loss * (1 - 1e-9)
    ax.plot(lrs[capped], losses[capped], **DIVERGED_STYLE)
    if group.best_lr is not None:
        ax.plot([group.best_lr], [group.best_loss], "*", color=color, ms=14, mec="black")


MAX_PANELS = 8
"""Panels `lr_sensitivity_curves` draws; past it the first ones and a title that says so (a
10,000-run sweep has 100 interventions: one row of 100 panels took most of fit's time and
was 50,000 px wide). Every group is in the bars plot and report.md."""


def lr_sensitivity_curves(fit: LrSensitivityFit, out: Path) -> Path:
    """Final loss against LR, one line per width, one panel per intervention (the first
    `MAX_PANELS`); diverged runs scored ℓ0 (red x), each group's best LR starred, Wortsman's LR
    range shaded."""
    groups = [g for g in fit.groups if g.curve]
    keys = varying([g.key for g in groups])
    every = intervention_panels(keys) or [()]
    panels = every[:MAX_PANELS]
    colors = width_colors([split_width(k)[0] for k in keys])
    fig, axes = figure(len(panels), sharey=True)
    axes = np.atleast_1d(axes)
    ell0 = float(np.median([g.init_loss for g in groups])) if groups else None
    for ax, panel in zip(axes, panels, strict=True):
        for group, key in zip(groups, keys, strict=True):
            if tuple(split_width(key)[1].items()) == panel:
                _curve(ax, group, key, colors[split_width(key)[0]])
        if ell0 is not None:
            ax.axhline(ell0, color="red", lw=0.8, ls=":", label="ℓ0: diverged runs score this")
        scored, words = _scored(fit)
        ax.axvspan(*scored, color="grey", alpha=0.08, label=f"scored: {words}")
        lr_axis(ax)
        ax.set_title(label(dict(panel)) if panel else "final loss against learning rate")
        ax.legend(
            title="width (★ best LR, x diverged)" if fit.width_column else None,
            fontsize=7,
            loc="upper left",
        )
    axes[0].set_ylabel("final validation loss, min(ℓ, ℓ0)")
    if len(every) > len(panels):
        fig.suptitle(
            f"Final loss against learning rate (Wortsman et al. 2023): the first {len(panels)} "
            f"of {len(every)} panels (every group in lr_sensitivity_bars.png and report.md)"
        )
    elif len(panels) > 1:
        fig.suptitle("Final loss against learning rate (Wortsman et al. 2023)")
    return save(fig, out, "lr_sensitivity.png")


def lr_sensitivity_bars(fit: LrSensitivityFit, out: Path) -> Path:
    """Wortsman's LR sensitivity per group as bars (lower: more stable across LRs)."""
    groups = sorted(fit.groups, key=lambda g: sort_key(list(g.key.values())))
    keys = varying([g.key for g in groups])
    panels = intervention_panels(keys)
    fig, ax = figure(size=(7.5, max(2.5, 1.2 + 0.32 * len(groups))))
    names = [label(k) for k in keys]
    values = [np.nan if g.sensitivity is None else g.sensitivity for g in groups]
    colors = [f"C{panels.index(tuple(split_width(k)[1].items()))}" for k in keys]
    bars = ax.barh(names, values, color=colors)
    ax.bar_label(
        bars, labels=["n/a" if np.isnan(v) else f"{v:.3f}" for v in values], fontsize=7, padding=2
    )
    ax.invert_yaxis()
    ax.set_xlabel(f"LR sensitivity: mean excess loss over {_scored(fit)[1]}")
    ax.set_title("LR sensitivity per group (lower is more stable)")
    return save(fig, out, "lr_sensitivity_bars.png")


def lr_transfer(fit: LrSensitivityFit, out: Path) -> Path:
    """Best LR against width with LR_opt ∝ width^k per intervention."""
    fig, ax = figure()
    width = fit.width_column
    names = varying([t.key for t in fit.transfer])
    for index, transfer in enumerate(fit.transfer):
        members = [
            g
            for g in fit.groups
            if g.best_lr is not None and all(g.key.get(k) == v for k, v in transfer.key.items())
        ]
        ws = np.array([float(g.key[str(width)]) for g in members])
        color = f"C{index}"
        ax.plot(ws, [g.best_lr for g in members], "o", color=color)
        _grid_bars(ax, ws, members, color)
        grid = np.geomspace(ws.min(), ws.max(), 50)
        ax.plot(
            grid,
            transfer.coef * grid**transfer.k,
            "-",
            color=color,
            label=f"{label(names[index])}: k = {transfer.k:.2f} in {_interval(transfer.ci)}",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"width ({width})")
    ax.set_ylabel("best learning rate")
    ax.set_title(transfer_title(fit), fontsize=10)
    ax.legend(fontsize=8)
    return save(fig, out, "lr_transfer.png")


def _grid_bars(ax: Any, ws: np.ndarray, members: list[GroupSensitivity], color: str) -> None:
    """Where each width's optimal LR may lie (half a grid step either side of its best grid
    LR); a side left open by the grid's edge is a dotted bar of one step with an arrow."""
    for w, group in zip(ws, members, strict=True):
        lo, hi = grid_span(group)
        best = float(group.best_lr)  # type: ignore[arg-type]
        for end, marker in ((lo, "v"), (hi, "^")):
            if np.isfinite(end):
                ax.plot([w, w], [best, np.exp(end)], "-", color=color, lw=4, alpha=0.35)
                continue
            other = hi if marker == "v" else lo
            reach = best * (best / np.exp(other)) ** 2 if np.isfinite(other) else best
            ax.plot([w, w], [best, reach], ":", color=color, lw=1.5)
            ax.plot([w], [reach], marker, color=color, ms=6)


def _interval(ci: tuple[float | None, float | None]) -> str:
    low = "-∞" if ci[0] is None else f"{ci[0]:.2f}"
    high = "∞" if ci[1] is None else f"{ci[1]:.2f}"
    return f"[{low}, {high}]"


def transfer_title(fit: LrSensitivityFit) -> str:
    """The title of lr_transfer.png: what k would mean, or that the LR grid cannot tell."""
    if any(not t.resolved for t in fit.transfer):
        return (
            "Best LR against width: k not resolved\n(the interval the LR grid allows holds both "
            "k = 0 and k = −1; bars: where each optimum may lie)"
        )
    return (
        "Best LR against width: LR_opt ∝ width^k\n(k = 0: the LR transfers; k = −1: ∝ 1/width; "
        "bars: where each optimum may lie)"
    )
