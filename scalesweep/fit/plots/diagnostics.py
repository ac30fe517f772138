"""Plots of the training diagnostics (Wortsman et al. 2023, §3.1): the largest attention logit
and output log Z against step, and attention-logit growth against LR.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalesweep import metrics as m
from scalesweep.fit.laws.diagnostics import DiagnosticsFit, sort_key
from scalesweep.fit.laws.lr.groups import width_of
from scalesweep.fit.plots.canvas import DIVERGED_STYLE, figure, save
from scalesweep.fit.plots.groups import (
    intervention_panels,
    label,
    split_width,
    varying,
    width_colors,
)
from scalesweep.fit.plots.lr import lr_axis


def _lrwidth_colors(lrs: Sequence[float]) -> dict[float, Any]:
    from matplotlib import colormaps

    ordered = sorted(set(lrs))
    shades = colormaps["plasma"](np.linspace(0.0, 0.85, max(len(ordered), 1)))
    return dict(zip(ordered, shades, strict=True))


def _diagnosticpanels(fit: DiagnosticsFit) -> tuple[Any, Any, list[str], list[tuple[Any, ...]]]:
    """(curves of the widest width, that width, the varied intervention columns, one tuple of
    their values per panel)."""
    curves = fit.curves
    width_column = width_of(fit.group_by)
    width = None
    if width_column is not None and curves[width_column].notna().any():
        width = max(curves[width_column].dropna().unique(), key=lambda w: sort_key([w]))
        curves = curves[curves[width_column] == width]
    others = [c for c in fit.group_by if c != width_column and curves[c].nunique(dropna=False) > 1]
    values = {tuple(row) for row in curves[others].itertuples(index=False)}
    return curves, width, others, sorted(values, key=sort_key) if others else [()]


def diagnostics_curves(fit: DiagnosticsFit, out: Path) -> Path:
    """The Wortsman figure: the largest attention logit and output log Z against step, one line
    per LR, for the widest width; one column per intervention (qk-layernorm off / on). A
    diverged run is dashed and ends in a red x; the log Z axis is scaled to the runs that
    completed, so a diverged run's blow-up does not flatten them (the table has its value)."""
    curves, width, others, panels = _diagnosticpanels(fit)
    colors = _lrwidth_colors(curves["lr"].tolist())
    fig, axes = figure(len(panels), 2, sharex=True, sharey="row", squeeze=False)
    for col, panel in enumerate(panels):
        rows = curves
        for column, value in zip(others, panel, strict=True):
            rows = rows[rows[column] == value]
        for _, run in rows.sort_values(["lr", "step"]).groupby("trial_id", sort=False):
            lr, diverged = float(run["lr"].iloc[0]), run[m.STATUS].iloc[0] == m.DIVERGED
            style = {"color": colors[lr], "ls": "--" if diverged else "-", "lw": 1.3}
            tag = f"{lr:g}" + (" (diverged)" if diverged else "")
            for ax, key in ((axes[0, col], m.ATTN_LOGIT_MAX), (axes[1, col], m.OUTPUT_LOGZ)):
                ax.plot(run["step"], run[key], marker=".", ms=4, label=tag, **style)
                if diverged:
                    ax.plot(run["step"].iloc[-1:], run[key].iloc[-1:], **DIVERGED_STYLE)
        title = label(dict(zip(others, panel, strict=True))) if panel else "all runs"
        axes[0, col].set_title(title if width is None else f"width={width}, {title}")
        axes[0, col].set_yscale("log")
        axes[1, col].set_xlabel("step")
    completed = curves.loc[curves[m.STATUS] != m.DIVERGED, m.OUTPUT_LOGZ]
    if completed.notna().any():
        lo, hi = float(completed.min()), float(completed.max())
        pad = max(0.5 * (hi - lo), 0.5)
        axes[1, 0].set_ylim(lo - pad, hi + pad)
    if axes[0, -1].get_legend_handles_labels()[0]:  # the last panel may have no run
        axes[0, -1].legend(fontsize=7, title="learning rate", loc="upper left")
    axes[0, 0].set_ylabel("largest attention logit")
    axes[1, 0].set_ylabel("output log Z (mean over tokens)")
    fig.suptitle("Training diagnostics against step (Wortsman et al. 2023, §3.1)")
    return save(fig, out, "diagnostics_curves.png")


def attention_logit_growth(fit: DiagnosticsFit, out: Path) -> Path:
    """The largest attention logit over training against LR, one line per group: colour =
    width, line style = intervention; diverged runs as red x."""
    fig, ax = figure()
    shown = varying([r.key for r in fit.runs])
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for run, key in zip(fit.runs, shown, strict=True):
        if run.attn_logit_max is not None:
            groups.setdefault(tuple(key.items()), []).append(run)
    panels = intervention_panels([dict(items) for items in groups])
    colors = width_colors([split_width(dict(items))[0] for items in groups])
    styles = ("-", "--", ":", "-.")
    for items, runs in sorted(groups.items(), key=lambda kv: sort_key([v for _, v in kv[0]])):
        runs.sort(key=lambda r: r.lr)
        width, others = split_width(dict(items))
        style = styles[panels.index(tuple(others.items())) % len(styles)]
        ax.plot(
            [r.lr for r in runs],
            [r.attn_logit_max for r in runs],
            marker="o",
            ls=style,
            color=colors[width],
            label=label(dict(items)),
        )
        bad = [r for r in runs if r.status == m.DIVERGED]
        ax.plot([r.lr for r in bad], [r.attn_logit_max for r in bad], **DIVERGED_STYLE)
    lr_axis(ax)
    ax.set_yscale("log")
    ax.set_ylabel("largest attention logit during training")
    ax.set_title("Attention-logit growth against learning rate (x: diverged)")
    ax.legend(fontsize=8)
    return save(fig, out, "attention_logits.png")
