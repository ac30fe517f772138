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


MAX_PANELS = 4
"""Columns of `diagnostics_curves` at most; more interventions than that are named, not drawn
(a sweep of thousands of runs made a figure hundreds of panels wide)."""


def _pick_panels(every_panel: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """MAX_PANELS of the panels, evenly spaced with both ends: the extremes differ most."""
    picks = sorted({round(i) for i in np.linspace(0, len(every_panel) - 1, MAX_PANELS)})
    return [every_panel[i] for i in picks]


def _suptitle(shown: int, every: int, others: list[str]) -> str:
    title = "Training diagnostics against step (Wortsman et al. 2023, §3.1)"
    if every > shown:
        title += (
            f"\n{shown} of {every} values of {', '.join(others)}, evenly spaced from the first "
            "to the last; every group's extremes are in the report's tables"
        )
    return title


def _diagnosticpanels(fit: DiagnosticsFit) -> tuple[Any, Any, list[str], list[tuple[Any, ...]]]:
    """(curves of the widest width, that width, the varied intervention columns, one tuple of
    their values per panel: all of them, the caller draws MAX_PANELS of them)."""
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
    per LR, for the widest width (named in each panel's title and the caption); one column per
    intervention (qk-layernorm off / on). A diverged run is dashed and ends in a red x; the log
    Z axis is scaled to the runs that completed, so a diverged run's blow-up does not flatten
    them: its x stays on the axis, clipped to the edge and labelled with its value. The legend
    names only what is drawn: every LR in any panel, and the diverged style when a run
    diverged."""
    from matplotlib.lines import Line2D

    curves, width, others, every_panel = _diagnosticpanels(fit)
    panels = _pick_panels(every_panel)
    colors = _lrwidth_colors(curves["lr"].tolist())
    fig, axes = figure(len(panels), 2, sharex=True, sharey="row", squeeze=False)
    drawn: set[float] = set()  # LRs with a line in some panel
    diverged_lrs: set[float] = set()
    ends: list[tuple[Any, float, float]] = []  # (log Z axis, step, value) of each diverged run
    for col, panel in enumerate(panels):
        rows = curves
        for column, value in zip(others, panel, strict=True):
            rows = rows[rows[column] == value]
        for _, run in rows.sort_values(["lr", "step"]).groupby("trial_id", sort=False):
            lr, diverged = float(run["lr"].iloc[0]), run[m.STATUS].iloc[0] == m.DIVERGED
            style = {"color": colors[lr], "ls": "--" if diverged else "-", "lw": 1.3}
            if len(run) > 1:  # a run that diverged at its first log step is only its x
                drawn.add(lr)
            if diverged:
                diverged_lrs.add(lr)
            for ax, key in ((axes[0, col], m.ATTN_LOGIT_MAX), (axes[1, col], m.OUTPUT_LOGZ)):
                finite = run[np.isfinite(run[key].astype(float))]
                ax.plot(finite["step"], finite[key], marker=".", ms=4, **style)
                if diverged and len(finite) and key == m.ATTN_LOGIT_MAX:
                    ax.plot(finite["step"].iloc[-1:], finite[key].iloc[-1:], **DIVERGED_STYLE)
                elif diverged and len(finite):
                    ends.append((ax, float(finite["step"].iloc[-1]), float(finite[key].iloc[-1])))
        title = label(dict(zip(others, panel, strict=True))) if panel else "all runs"
        axes[0, col].set_title(title if width is None else f"width={width}, {title}")
        axes[0, col].set_yscale("log")
        axes[1, col].set_xlabel("step")
    completed = curves.loc[curves[m.STATUS] != m.DIVERGED, m.OUTPUT_LOGZ]
    if completed.notna().any():
        lo, hi = float(completed.min()), float(completed.max())
        pad = max(0.5 * (hi - lo), 0.5)
        axes[1, 0].set_ylim(lo - pad, hi + pad)
    _diverged_ends(ends)
    handles = [Line2D([], [], color=colors[lr], lw=1.3, label=f"{lr:g}") for lr in sorted(drawn)]
    if diverged_lrs:
        at = ", ".join(f"{lr:g}" for lr in sorted(diverged_lrs))
        style = {**DIVERGED_STYLE, "ls": "--", "color": "gray", "mec": "red"}
        handles.append(Line2D([], [], **style, label=f"diverged (LR {at}): dashed, ends in x"))
    if handles:
        axes[0, -1].legend(handles=handles, fontsize=7, title="learning rate", loc="upper left")
    axes[0, 0].set_ylabel("largest attention logit")
    axes[1, 0].set_ylabel("output log Z (mean over tokens)")
    fig.suptitle(_suptitle(len(panels), len(every_panel), others))
    return save(fig, out, "diagnostics_curves.png")


def _diverged_ends(ends: list[tuple[Any, float, float]]) -> None:
    """Each diverged run's last log Z as a red x on its axis: where it is, or clipped to the
    edge it left through, with its value beside it (the axis is scaled to the completed runs)."""
    for ax, step, value in ends:
        lo, hi = ax.get_ylim()
        shown = min(max(value, lo), hi)
        ax.plot([step], [shown], clip_on=False, zorder=5, **DIVERGED_STYLE)
        if shown != value:
            ax.annotate(
                f"{value:.3g} {'↑' if value > hi else '↓'}",
                (step, shown),
                xytext=(8, -12 if value > hi else 6),
                textcoords="offset points",
                ha="left",
                fontsize=8,
                color="red",
            )


MARKERS = ("o", "s", "^", "D", "v", "P")
"""One marker per width in the attention-logit plot (colour is the intervention)."""


def attention_logit_growth(fit: DiagnosticsFit, out: Path) -> Path:
    """The largest attention logit over training against LR, one line per group. With an
    intervention swept (qk-layernorm off / on), colour and line style are the intervention and
    the marker is the width, so the groups Wortsman et al. compare differ at a glance;
    otherwise colour is the width. Diverged runs as red x."""
    fig, ax = figure()
    shown = varying([r.key for r in fit.runs])
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for run, key in zip(fit.runs, shown, strict=True):
        if run.attn_logit_max is not None:
            groups.setdefault(tuple(key.items()), []).append(run)
    panels = intervention_panels([dict(items) for items in groups])
    widths = sorted({split_width(dict(items))[0] for items in groups}, key=lambda w: sort_key([w]))
    by_width = width_colors(widths)
    by_panel = dict(zip(panels, _intervention_colors(len(panels)), strict=True))
    styles = ("-", "--", ":", "-.")
    for items, runs in sorted(groups.items(), key=lambda kv: sort_key([v for _, v in kv[0]])):
        runs.sort(key=lambda r: r.lr)
        width, others = split_width(dict(items))
        panel = tuple(others.items())
        ax.plot(
            [r.lr for r in runs],
            [r.attn_logit_max for r in runs],
            marker=MARKERS[widths.index(width) % len(MARKERS)],
            ls=styles[panels.index(panel) % len(styles)],
            color=by_panel[panel] if len(panels) > 1 else by_width[width],
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


def _intervention_colors(n: int) -> list[Any]:
    """Colours far apart for the intervention panels (off / on first: orange, blue)."""
    from matplotlib import colormaps

    tab10 = colormaps["tab10"]
    order = (1, 0, 2, 4, 3, 5, 6, 8, 9, 7)
    return [tab10(order[i % len(order)]) for i in range(n)]
