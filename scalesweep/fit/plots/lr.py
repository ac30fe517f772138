"""PNG plots of learning-rate sweeps (Wortsman et al. 2023): final loss against LR, the LR
sensitivity of each group, the best LR against width, and the training diagnostics (attention
logits and output log Z) across the sweep.

Groups are drawn the same way everywhere: colour = width, one panel (or line style) per
intervention (qk-layernorm, z-loss), so "with and without qk-layernorm" sits side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalesweep import metrics as m
from scalesweep.fit.diagnostics import DiagnosticsFit, sort_key
from scalesweep.fit.format import constant_columns, short
from scalesweep.fit.lr_groups import WIDTH_COLUMNS, width_of
from scalesweep.fit.lr_sensitivity import GroupSensitivity, LrSensitivityFit
from scalesweep.fit.plots import figure, save

DIVERGED_STYLE = {"marker": "x", "color": "red", "ms": 9, "mew": 2, "ls": "none"}
"""A diverged run, everywhere."""


def label(key: dict[str, Any]) -> str:
    """`width=64, qk_norm=True`; `all runs` for the empty key."""
    return ", ".join(f"{short(k)}={v}" for k, v in key.items()) or "all runs"


def varying(keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The keys without the columns that are the same in all of them (z_loss=0.0 in a sweep
    that never turned z-loss on), so labels name only what the sweep varied; width stays."""
    columns = sorted({c for key in keys for c in key})
    same = set(constant_columns(keys, columns)) - set(WIDTH_COLUMNS)
    return [{k: v for k, v in key.items() if k not in same} for key in keys]


def _split(key: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(width or None, the other group columns)."""
    width = next((v for k, v in key.items() if k in WIDTH_COLUMNS), None)
    return width, {k: v for k, v in key.items() if k not in WIDTH_COLUMNS}


def _panels(keys: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The intervention combinations, one panel each, in order."""
    found = {tuple(_split(k)[1].items()) for k in keys}
    return sorted(found, key=lambda items: sort_key([v for _, v in items]))


def _colors(widths: Sequence[Any]) -> dict[Any, Any]:
    from matplotlib import colormaps

    ordered = sorted(set(widths), key=lambda w: sort_key([w]))
    shades = colormaps["viridis"](np.linspace(0.0, 0.85, max(len(ordered), 1)))
    return dict(zip(ordered, shades, strict=True))


def _lr_axis(ax: Any) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.grid(True, which="major", alpha=0.3)


def _curve(ax: Any, group: GroupSensitivity, key: dict[str, Any], color: Any) -> None:
    lrs, losses = (np.array(v, float) for v in zip(*group.curve, strict=True))
    width, _ = _split(key)
    score = "n/a" if group.sensitivity is None else f"{group.sensitivity:.3f}"
    name = f"{width}" if width is not None else label(key)
    ax.plot(lrs, losses, "o-", color=color, ms=4, label=f"{name} (sensitivity {score})")
    capped = losses >= group.init_loss * (1 - 1e-9)
    ax.plot(lrs[capped], losses[capped], **DIVERGED_STYLE)
    if group.best_lr is not None:
        ax.plot([group.best_lr], [group.best_loss], "*", color=color, ms=14, mec="black")


def lr_sensitivity_curves(fit: LrSensitivityFit, out: Path) -> Path:
    """Final loss against LR, one line per width, one panel per intervention; diverged runs
    scored ℓ0 (red x), each group's best LR starred, Wortsman's LR range shaded."""
    groups = [g for g in fit.groups if g.curve]
    keys = varying([g.key for g in groups])
    panels = _panels(keys) or [()]
    colors = _colors([_split(k)[0] for k in keys])
    fig, axes = figure(len(panels), sharey=True)
    axes = np.atleast_1d(axes)
    ell0 = float(np.median([g.init_loss for g in groups])) if groups else None
    for ax, panel in zip(axes, panels, strict=True):
        for group, key in zip(groups, keys, strict=True):
            if tuple(_split(key)[1].items()) == panel:
                _curve(ax, group, key, colors[_split(key)[0]])
        if ell0 is not None:
            ax.axhline(ell0, color="red", lw=0.8, ls=":", label="ℓ0: diverged runs score this")
        ax.axvspan(*fit.lr_range, color="grey", alpha=0.08, label="range of the score")
        _lr_axis(ax)
        ax.set_title(label(dict(panel)) if panel else "final loss against learning rate")
        ax.legend(title="width (★ best LR, x diverged)" if fit.width_column else None,
                  fontsize=7, loc="upper left")  # fmt: skip
    axes[0].set_ylabel("final validation loss, min(ℓ, ℓ0)")
    if len(panels) > 1:
        fig.suptitle("Final loss against learning rate (Wortsman et al. 2023)")
    return save(fig, out, "lr_sensitivity.png")


def lr_sensitivity_bars(fit: LrSensitivityFit, out: Path) -> Path:
    """Wortsman's LR sensitivity per group as bars (lower: more stable across LRs)."""
    groups = sorted(fit.groups, key=lambda g: sort_key(list(g.key.values())))
    keys = varying([g.key for g in groups])
    panels = _panels(keys)
    fig, ax = figure(size=(7.5, max(2.5, 1.2 + 0.32 * len(groups))))
    names = [label(k) for k in keys]
    values = [np.nan if g.sensitivity is None else g.sensitivity for g in groups]
    colors = [f"C{panels.index(tuple(_split(k)[1].items()))}" for k in keys]
    bars = ax.barh(names, values, color=colors)
    ax.bar_label(
        bars, labels=["n/a" if np.isnan(v) else f"{v:.3f}" for v in values], fontsize=7, padding=2
    )
    ax.invert_yaxis()
    lo, hi = fit.lr_range
    ax.set_xlabel(f"LR sensitivity: mean excess loss over LRs in [{lo:g}, {hi:g}]")
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
        grid = np.geomspace(ws.min(), ws.max(), 50)
        ax.plot(
            grid,
            transfer.coef * grid**transfer.k,
            "-",
            color=color,
            label=f"{label(names[index])}: k = {transfer.k:.2f}",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"width ({width})")
    ax.set_ylabel("best learning rate")
    ax.set_title("Best LR against width: LR_opt ∝ width^k (k ≈ 0: the LR transfers)")
    ax.legend(fontsize=8)
    return save(fig, out, "lr_transfer.png")


# --- training diagnostics ------------------------------------------------------------------


def _lr_colors(lrs: Sequence[float]) -> dict[float, Any]:
    from matplotlib import colormaps

    ordered = sorted(set(lrs))
    shades = colormaps["plasma"](np.linspace(0.0, 0.85, max(len(ordered), 1)))
    return dict(zip(ordered, shades, strict=True))


def _diagnostic_panels(fit: DiagnosticsFit) -> tuple[Any, Any, list[str], list[tuple[Any, ...]]]:
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
    curves, width, others, panels = _diagnostic_panels(fit)
    colors = _lr_colors(curves["lr"].tolist())
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
    panels = _panels([dict(items) for items in groups])
    colors = _colors([_split(dict(items))[0] for items in groups])
    styles = ("-", "--", ":", "-.")
    for items, runs in sorted(groups.items(), key=lambda kv: sort_key([v for _, v in kv[0]])):
        runs.sort(key=lambda r: r.lr)
        width, others = _split(dict(items))
        style = styles[panels.index(tuple(others.items())) % len(styles)]
        ax.plot([r.lr for r in runs], [r.attn_logit_max for r in runs], marker="o", ls=style,
                color=colors[width], label=label(dict(items)))  # fmt: skip
        bad = [r for r in runs if r.status == m.DIVERGED]
        ax.plot([r.lr for r in bad], [r.attn_logit_max for r in bad], **DIVERGED_STYLE)
    _lr_axis(ax)
    ax.set_yscale("log")
    ax.set_ylabel("largest attention logit during training")
    ax.set_title("Attention-logit growth against learning rate (x: diverged)")
    ax.legend(fontsize=8)
    return save(fig, out, "attention_logits.png")
