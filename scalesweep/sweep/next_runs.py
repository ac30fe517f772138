"""What `scalesweep plan --next K` prints: the proposed runs and why the others rank lower."""

from __future__ import annotations

import math
from typing import Any

from scalesweep.sweep.design import Proposal

LOW_SHOWN = 6
"""Candidates ranked low shown under the proposals (the best of them and the worst)."""


def _quantity(objective: str) -> str:
    return "N_opt" if objective == "n_opt" else "L_opt"


def _interval(forecast: Any) -> str:
    if forecast is None or not math.isfinite(forecast.point):
        return "-"
    width = f"{forecast.width:.0%}" if forecast.width < 10 else "> 1000%"
    return f"[{forecast.low:.3g}, {forecast.high:.3g}] ({width})"


def proposal_table(proposal: Proposal) -> Any:
    """One row per proposed run: its shape, tokens, FLOPs, the expected interval after it (and
    the ones above it) and why it was chosen."""
    from rich.table import Table

    rec = proposal.recommendation
    q = _quantity(rec.objective)
    table = Table(title=f"next {len(rec.proposals)} runs for {q}(C={rec.target_flops:.3g})")
    for column in ("#", "shape", "N", "tokens", "tok/N", "FLOPs"):
        table.add_column(column, justify="left" if column == "shape" else "right")
    table.add_column(f"{q} interval after", justify="right")
    table.add_column("why", justify="left")
    for rank, (ranked, trial) in enumerate(zip(rec.proposals, proposal.trials, strict=True), 1):
        table.add_row(
            str(rank),
            ranked.candidate.shape.label,
            f"{ranked.candidate.params:.3g}",
            f"{trial.tokens:.3g}",
            f"{ranked.candidate.tokens_per_param:.3g}",
            f"{trial.flops:.3g}",
            _interval(ranked.after),
            ranked.reason,
        )
    return table


def low_table(proposal: Proposal) -> Any | None:
    """The best and the worst of the candidates not proposed, with their reasons."""
    from rich.table import Table

    low = proposal.recommendation.ranked_low
    if not low:
        return None
    shown = low if len(low) <= LOW_SHOWN else [*low[: LOW_SHOWN // 2], *low[-LOW_SHOWN // 2 :]]
    q = _quantity(proposal.recommendation.objective)
    table = Table(title=f"ranked lower ({len(low)} candidates; the best and the worst shown)")
    for column in ("shape", "C", "tok/N", f"{q} interval if added too", "why not"):
        table.add_column(column, justify="left" if column in ("shape", "why not") else "right")
    for ranked in shown:
        c = ranked.candidate
        table.add_row(
            c.shape.label,
            f"{c.budget:.3g}",
            f"{c.tokens_per_param:.3g}",
            _interval(ranked.after),
            ranked.reason,
        )
    return table


def summary_lines(proposal: Proposal) -> list[str]:
    rec = proposal.recommendation
    q = _quantity(rec.objective)
    lines = list(rec.notes) + list(proposal.notes)
    if rec.now is not None:
        lines.insert(
            0,
            f"{q}(C={rec.target_flops:.3g}) = {rec.now.point:.4g}, interval now "
            f"{_interval(rec.now)} (parametric law, delta method; docs/fits.md 'Which runs next')",
        )
    flops = sum(t.flops for t in proposal.trials)
    lines.append(f"proposed: {len(proposal.trials)} runs, {flops:.4g} training FLOPs")
    lines += [f"  {t.name}" for t in proposal.trials]
    return lines


def show(console: Any, proposal: Proposal, title: str | None = None) -> None:
    """Print the proposal: its title rule, the tables and the summary lines."""
    if title:
        console.rule(title)
    console.print(proposal_table(proposal))
    low = low_table(proposal)
    if low is not None:
        console.print(low)
    for line in summary_lines(proposal):
        console.print(line, soft_wrap=True, highlight=False, markup=False)
