"""`fit_compare`: is a change worth it at scale? The runs table in, a `CompareFit` out.

The answer teams use (OLMo's ladder, Marin's speedup gate; asked of qk-layernorm by Wortsman
et al. 2023 and of WSD by Hägele et al. 2024) is the effective compute multiplier: the variant
reaches at C the loss the baseline reaches with M·C. See `frontier` (cells and resampling),
`law` (the joint law) and `multiplier` (M, its interval, the crossover).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.fit.laws.compare.frontier import (
    Cells,
    build_cells,
    check_column,
    choose_baseline,
    param_change,
)
from scalesweep.fit.laws.compare.law import Laws
from scalesweep.fit.laws.compare.multiplier import Comparison, estimate
from scalesweep.fit.runs import BUDGET_TOLERANCE, SAME_SIZE, Basis, finite_or_none, flop_counting


@dataclass(frozen=True)
class CompareFit:
    """Each variant's compute multiplier against the baseline."""

    variant: str
    """The column compared (`model.qk_norm`)."""
    baseline: str
    """The baseline value."""
    baseline_why: str
    """How the baseline was chosen."""
    cells: Cells = field(repr=False)
    comparisons: tuple[Comparison, ...]
    laws: Laws | None
    """The point laws (one row), or None with fewer than 3 budgets."""
    boot: Laws | None = field(repr=False)
    """The resamples' laws (for the bands)."""
    shared_e: bool
    frontier: np.ndarray = field(repr=False)
    """(V, B) frontier losses."""
    frontier_boot: np.ndarray = field(repr=False)
    target: float | None
    level: float
    n_boot: int
    basis: Basis
    notes: tuple[str, ...] = ()
    backtest: dict[str, Any] | None = None
    """Set by the kind with --predict-flops (`forecast.compare`)."""

    @property
    def method(self) -> str:
        return "laws" if self.laws is not None else "per-budget"

    def law_dicts(self) -> list[dict[str, Any]]:
        if self.laws is None:
            return []
        return [
            {
                "value": value,
                "E": float(np.exp(self.laws.log_e[0, v])),
                "A": float(np.exp(self.laws.log_a[0, v])),
                "alpha": float(self.laws.alpha[0, v]),
                "c0": self.laws.c0,
            }
            for v, value in enumerate(self.cells.variants)
        ]

    def to_dict(self) -> dict[str, Any]:
        cells = self.cells
        return {
            "variant": self.variant,
            "baseline": self.baseline,
            "baseline_why": self.baseline_why,
            "variants": list(cells.variants),
            "method": self.method,
            "shared_E": self.shared_e,
            "budgets": [float(b) for b in cells.budgets],
            "frontier": {
                value: [
                    {"flops": float(b), "loss": float(self.frontier[v, i]), **_config(cfg)}
                    for i, (b, cfg) in enumerate(
                        zip(cells.budgets, cells.best_config[v], strict=True)
                    )
                ]
                for v, value in enumerate(cells.variants)
            },
            "laws": self.law_dicts(),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "target_flops": self.target,
            "level": self.level,
            "bootstrap": self.n_boot,
            "min_seeds": cells.min_seeds,
            "basis": self.basis.to_dict(),
            "notes": list(self.notes),
            "backtest": self.backtest,
        }


def _config(config: dict[str, Any]) -> dict[str, Any]:
    return {"config": {k: finite_or_none(v) for k, v in config.items()}}


def flop_rates(cells: Cells) -> np.ndarray | None:
    """(V, B) the frontier configurations' median FLOPs/s (tokens/s × FLOPs per token), or None
    when the runs do not log throughput."""
    rates = np.full((len(cells.variants), len(cells.budgets)), np.nan)
    for v, row in enumerate(cells.best_runs):
        for b, runs in enumerate(row):
            if not {m.SUMMARY_TOKENS_PER_S, "tokens"} <= set(runs.columns):
                return None
            tps = pd.to_numeric(runs[m.SUMMARY_TOKENS_PER_S], errors="coerce")
            per_token = runs["flops"].astype(float) / pd.to_numeric(runs["tokens"], errors="coerce")
            rates[v, b] = float(np.nanmedian((tps * per_token).to_numpy(float)))
    return rates if np.isfinite(rates).all() and (rates > 0).all() else None


def _notes(runs: pd.DataFrame, variant: str, cells: Cells, convention: str | None) -> list[str]:
    notes = []
    change = param_change(runs[runs[variant].notna()], variant)
    if change is not None and change >= SAME_SIZE:
        notes.append(
            f"compare: `{variant}` changes the parameter count (up to {change:.3g}× at the same "
            f"shape): C is each run's own FLOPs counted as {convention or 'the table has them'}, "
            f"so M counts the variant's extra compute; under another convention M would differ"
        )
    if len(cells.budgets) < 3:
        notes.append(
            f"compare: {len(cells.budgets)} budgets: no law L(C) and no extrapolation, only "
            "per-budget multipliers (read off the baseline's local slope); 3 or more budgets "
            "give a law"
        )
    if cells.min_seeds < 2:
        notes.append(
            "compare: some configurations have one run (no seeds to resample): the intervals "
            "leave out their noise; repeat the grid (search.num_samples) for honest intervals"
        )
    return notes


def _basis(cells: Cells, variant: str, convention: str | None) -> Basis:
    used = (
        f"the best configuration (mean over seeds) per budget and value of `{variant}`: "
        f"{len(cells.budgets)} budgets × {len(cells.variants)} values"
    )
    return Basis(n="not used", flop_counting=convention, runs=used)


def _outside(cells: Cells, comparisons: tuple[Comparison, ...]) -> list[str]:
    """A measured M whose baseline compute M·C lies outside the baseline's budgets reads the
    baseline's law beyond its data: say where."""
    low, high = cells.budgets[0] / BUDGET_TOLERANCE, cells.budgets[-1] * BUDGET_TOLERANCE
    notes = []
    for c in comparisons:
        outside = [
            f"{p.flops:.3g} (baseline C {p.value * p.flops:.3g})"
            for p in c.at_budgets
            if np.isfinite(p.value) and not low <= p.value * p.flops <= high
        ]
        if outside:
            notes.append(
                f"compare: {c.value}'s loss at C = {', '.join(outside)} is reached by the "
                f"baseline only outside its budgets [{cells.budgets[0]:.3g}, "
                f"{cells.budgets[-1]:.3g}]: M there extrapolates the baseline's law"
            )
    return notes


def _outcome_notes(
    cells: Cells,
    has_law: bool,
    comparisons: tuple[Comparison, ...],
    target: float | None,
    level: float,
) -> list[str]:
    notes = _outside(cells, comparisons)
    if target is not None and not has_law:
        notes.append("compare: --predict-flops not answered: fewer than 3 budgets, no law")
    if not any(c.resolvable for c in comparisons):
        notes.append(
            f"compare: no resolvable difference: every multiplier's {level:.0%} interval holds 1"
        )
    return notes


def fit_compare(
    runs: pd.DataFrame,
    *,
    variant: str | None,
    baseline: str | None = None,
    shared_e: bool | None = None,
    target: float | None = None,
    level: float = 0.95,
    n_boot: int = 200,
    rng: np.random.Generator | None = None,
) -> CompareFit:
    """The multiplier of every value of `variant` against `baseline` (None: the switched-off
    value, else the most common). `shared_e` None: shared E below 4 budgets.

    Example:
        >>> import pandas as pd
        >>> rows = [
        ...     {"model.qk_norm": qk, "train.seed": s, "flops": c, "status": "completed",
        ...      "loss": 2 + 10 * (c * (1.5 if qk else 1)) ** -0.2 + 1e-4 * s}
        ...     for qk in (False, True) for s in (0, 1) for c in (1e12, 1e13, 1e14, 1e15)
        ... ]
        >>> fit = fit_compare(pd.DataFrame(rows), variant="model.qk_norm", shared_e=True)
        >>> fit.baseline, round(fit.comparisons[0].at_budgets[-1].value, 2)
        ('False', 1.5)
    """
    labels = check_column(runs, variant)  # names --variant when it is missing
    variant = str(variant)
    chosen, why = choose_baseline(labels.dropna(), baseline, variant)
    notes: list[str] = []
    cells = build_cells(runs, variant, chosen, labels, notes)
    convention = flop_counting(runs)
    notes += _notes(runs, variant, cells, convention)
    rates = flop_rates(cells)
    result = estimate(
        cells,
        level=level,
        n_boot=n_boot,
        rng=rng if rng is not None else np.random.default_rng(0),
        shared_e=shared_e,
        target=target,
        rates=rates,
    )
    notes += _outcome_notes(cells, result.laws is not None, result.comparisons, target, level)
    return CompareFit(
        variant=variant,
        baseline=chosen,
        baseline_why=why,
        cells=cells,
        comparisons=result.comparisons,
        laws=result.laws,
        boot=result.boot,
        shared_e=result.shared_e,
        frontier=result.frontier,
        frontier_boot=result.frontier_boot,
        target=target,
        level=level,
        n_boot=n_boot,
        basis=_basis(cells, variant, convention),
        notes=tuple(dict.fromkeys(notes)),
    )
