"""What every fit kind is made of: the data it reads (`FitData`) and its registry entry
(`FitKind`). The options it is fitted with are `options.FitOptions`.

A kind's entry says how to fit a runs table, which other kinds it needs, which numbers are its
headline (logged as metrics of the sweep's parent run), how it reads in the text summary and in
the report, which plots it draws, and, for the laws that allocate compute, what it predicts at
a new budget. Summaries and report sections read the JSON-ready dict, so the text says what
fit.json says. Loads without numpy or pandas, so `scalesweep --help` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalesweep.fit.options import FitOptions

if TYPE_CHECKING:
    import pandas as pd

Lines = list[str]


@dataclass(frozen=True)
class FitData:
    """What a fit reads: the runs table, and the per-step curves when the source has them."""

    runs: pd.DataFrame
    """One row per trial (see `fit.runs`)."""
    load_curves: Callable[[tuple[str, ...]], pd.DataFrame | None] = field(
        default=lambda keys: None, repr=False
    )
    """keys -> one row per (run, logged step): `run_id, step`, a column per metric key
    (`scalesweep.metrics` names) and, from MLflow, the run's `status`; None when the source
    has no curves (a CSV without `--curves`)."""

    def curves(self, *keys: str) -> pd.DataFrame | None:
        return self.load_curves(tuple(keys))


Fit = Callable[[FitData, FitOptions, Mapping[str, Any]], Any]
"""(runs and curves, options, the results of the kinds it `requires`, by name) -> a typed fit
result; raises `UserError` when the runs cannot be fitted, saying why."""


def _no_plots(fit: Any, out: Path) -> list[Path]:
    return []


def _no_headline(fit: Any) -> dict[str, float]:
    return {}


def _no_lines(fit: Mapping[str, Any]) -> Lines:
    return []


def _to_dict(fit: Any) -> Any:
    return fit.to_dict()


@dataclass(frozen=True)
class FitKind:
    """One fit: how to run it and how it reads."""

    name: str
    """The `--kind` value, and the fit's key in fit.json."""
    title: str
    """Section title in the report."""
    fit: Fit
    """Runs (and curves, and the results of `requires`) -> typed fit result."""
    summary: Callable[[Mapping[str, Any]], Lines]
    """JSON-ready result -> lines of the text summary."""
    section: Callable[[Mapping[str, Any]], Lines]
    """JSON-ready result -> Markdown lines of its report section."""
    requires: tuple[str, ...] = ()
    """Kinds whose results `fit` receives (fitted first, once per command, also when they were
    not asked for)."""
    needs: str = ""
    """What `requires` asks of the runs, in the user's terms, for the message when it cannot be
    fitted (`needs a batch-size sweep ...`); empty: `needs <kind>`."""
    headline: Callable[[Any], dict[str, float]] = _no_headline
    """Fit result -> numbers logged as metrics of the sweep's parent run."""
    answer: Callable[[Mapping[str, Any]], Lines] | None = None
    """JSON-ready result -> Markdown lines of its headline in the report's Answer section
    (None: the text summary as bullets)."""
    report_notes: Callable[[Mapping[str, Any]], Lines] = _no_lines
    """JSON-ready result -> Markdown bullets for the report's Notes section."""
    plots: Callable[[Any, Path], list[Path]] = _no_plots
    """(fit result, folder) -> the plot files written."""
    captions: Mapping[str, str] = field(default_factory=dict)
    """Plot file name -> its caption in the report."""
    predict: Callable[[Any, float], dict[str, Any]] | None = None
    """(fit result, FLOPs) -> the compute-optimal N, D (and loss) at that budget."""
    to_dict: Callable[[Any], Any] = _to_dict
    """Fit result -> JSON-ready dict."""
    answers_target: bool = False
    """Whether its own result answers `--predict-flops` (the compare kind's multiplier at C,
    with its own backtest), so the budget needs no allocating kind beside it."""


def notes_of(fit: Any) -> list[str]:
    """Notes a fit carries from the shared checks (tokens derived, runs set aside)."""
    parts = fit.values() if isinstance(fit, dict) else (fit,)
    return [note for part in parts for note in getattr(part, "notes", ())]


def finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of `metrics` as floats (a headline logs nothing else)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
