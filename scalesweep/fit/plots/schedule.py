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
    for p in group.predictions:
        ax.plot(p.steps, p.curve, ":", lw=2, label=f"predicted {p.label}: {num(p.final)}")
    if group.cooldown is not None:
        c = group.cooldown
        ax.axhline(c.loss, color="0.4", lw=0.8, label=f"best cooldown {c.fraction:g} {c.shape}")
    key = ", ".join(f"{k}={num(v)}" for k, v in group.key.items() if k in columns)
    ax.set_title(f"{key or 'all runs'}: {fit.law}", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


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
        ax.set_ylim(top=_top(group))
    fig.suptitle("Loss curves: fitted (solid), held-out predicted (dashed), never run (dotted)")
    return save(fig, out, "schedule_law.png")


def _top(group: Any) -> float:
    """Leave the first points out of view: the differences between schedules are at the end."""
    import numpy as np

    ends = [r.loss[-1] for r in (*group.fit_runs, *group.held_out)]
    starts = [np.quantile(r.loss, 0.15) for r in (*group.fit_runs, *group.held_out)]
    return float(max(starts) + 0.1 * (max(starts) - min(ends)))
