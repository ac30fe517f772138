"""The canvas every plot draws on: matplotlib's Agg canvas (no display, no global pyplot state),
one size rule, one way to save, and the marker of a diverged run.

Every plot reads on its own: a title that says what it shows, axis labels with units, log axes
where the science uses them, and legends that name the sweep keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DIVERGED_STYLE = {"marker": "x", "color": "red", "ms": 9, "mew": 2, "ls": "none"}
"""A diverged run, everywhere."""


def figure(
    ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] | None = None, **subplots: Any
) -> tuple[Any, Any]:
    """A figure on its own Agg canvas: one panel of 7.5 × 4.8 inches, or panels of 5 × 4.2,
    or `size` in all. At the saved 100 dpi two panels are 1000 px wide, the report's column."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    single = ncols * nrows == 1
    fig = Figure(
        figsize=size or ((7.5, 4.8) if single else (5.0 * ncols, 4.2 * nrows)),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save(fig: Any, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=100)
    return path


def plain_ticks(axis: Any) -> None:
    """Plain numbers (3.5, not 3.5×10⁰) on a log axis that spans less than a decade."""
    from matplotlib.ticker import LogFormatter

    axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
