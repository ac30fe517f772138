"""The schedule-law plot: per group, validation loss against step for every run, with the law
over the runs it was fitted on (solid), its predictions of the held-out runs (dashed, the
backtest) and of schedules never run (dotted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scalesweep.fit.format import num
from scalesweep.fit.laws.schedule.fit import ScheduleFit
from scalesweep.fit.plots.canvas import figure, save


def _panel(ax: Any, fit: ScheduleFit, group: Any, columns: tuple[str, ...]) -> None:
    law = group.fits[fit.law]
    tests = {t.run: t for t in group.backtests[fit.law]}
    from matplotlib import colormaps

    colors = colormaps["tab10"]
    for i, run in enumerate((*group.fit_runs, *group.held_out)):
        color = colors(i % 10)
        fitted = run in group.fit_runs
        tag = "fit" if fitted else f"held out, {tests[run.name].error:+.2%} at the end"
        ax.plot(run.steps, run.loss, "o", ms=3, color=color, alpha=0.6)
        predicted = law.predict(_curve(run, group.reference)) if fitted else tests[run.name].curve
        style = "-" if fitted else "--"
        ax.plot(run.steps, predicted, style, color=color, lw=1.6, label=f"{run.label} ({tag})")
    for p, shade in zip(group.predictions, ("black", "0.45", "0.7") * 10, strict=False):
        ax.plot(
            p.steps,
            p.curve,
            ":",
            color=shade,
            lw=2.2,
            label=f"never run: {p.label} → {num(p.final)}",
        )
    if group.cooldown is not None:
        c = group.cooldown
        ax.plot(
            [c.steps],
            [c.loss],
            "*",
            color="black",
            ms=12,
            label=f"best cooldown: {c.fraction:g} {c.shape} → {num(c.loss)}",
        )
    key = ", ".join(f"{k}={num(v)}" for k, v in group.key.items() if k in columns)
    ax.set_title(f"{key or 'all runs'}: {fit.law}", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)


def _curve(run: Any, reference: float) -> Any:
    from scalesweep.fit.laws.schedule.laws import Curve

    return Curve(run.lrs / reference, run.steps)


def schedule_curves(fit: ScheduleFit, out: Path) -> Path:
    groups = fit.groups
    fig, axes = figure(
        len(groups), size=(7.5 * len(groups), 5.2) if len(groups) > 1 else (9, 5.6), squeeze=False
    )
    for ax, group in zip(axes[0], groups, strict=True):
        _panel(ax, fit, group, fit.group_by)
        _zoom(ax, group)
    fig.suptitle(
        "Validation loss, last 70 % of the run: law over the fit runs (solid), held-out runs "
        "predicted (dashed), schedules never run (dotted)",
        fontsize=10,
    )
    return save(fig, out, "schedule_law.png")


def _zoom(ax: Any, group: Any) -> None:
    """The last 70 % of the run, where schedules part: the early drop would flatten them."""
    import numpy as np

    runs = (*group.fit_runs, *group.held_out)
    end = max(r.total_steps for r in runs)
    start = 0.3 * end
    seen = [r.loss[r.steps >= start] for r in runs]
    seen += [np.array(p.curve)[np.array(p.steps) >= start] for p in group.predictions]
    if group.cooldown is not None:
        seen.append(np.array([group.cooldown.loss]))
    values = np.concatenate(seen)
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low)
    ax.set_xlim(start, end * 1.02)
    ax.set_ylim(low - pad, high + pad)
