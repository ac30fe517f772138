"""Rank the candidates by how much they narrow the forecast's interval per FLOP.

    recommend(points, pool, target_flops=C, k=K)
      ├─ too few runs for the law: the space-filling first round (`candidates.first_round`)
      ├─ fit L(N, D) (Approach 3) and its covariance (`information.uncertainty`)
      └─ K times: the candidate whose run narrows q(C)'s interval most per FLOP spent, among
         those within `window`× of their budget's fitted optimum first; its run is then counted
         as done (Σ updated), so a second run where one already pins the law gains less

A candidate far from its budget's optimum informs the law mostly where it is least trusted
(a run of 400 tokens per parameter, or one that repeats its data), and Approach 2 would not use
it: it is ranked after every candidate inside the window, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.design.candidates import Candidate, first_round
from scalesweep.fit.design.information import (
    Objective,
    Uncertainty,
    gradient,
    interval,
    relative_width,
    target,
    uncertainty,
)
from scalesweep.fit.laws.parametric.allocation import FlopsPerToken, optimal_arrays

WINDOW = 4.0
"""A candidate within this factor of its budget's fitted N_opt is "near" its optimum."""


@dataclass(frozen=True)
class Forecast:
    """q(C) and its interval under a fit."""

    point: float
    low: float
    high: float

    @property
    def width(self) -> float:
        return relative_width(self.low, self.high, self.point)


@dataclass(frozen=True)
class Ranked:
    """A candidate with what its run would buy."""

    candidate: Candidate
    after: Forecast
    """The interval expected once this run (and the proposals ranked above it) are done."""
    per_flop: float
    """Narrowing of the relative width per FLOP (the ranking, inside a tier)."""
    off_optimum: float
    """N / the fitted N_opt of its budget."""
    reason: str


@dataclass(frozen=True)
class Recommendation:
    objective: Objective
    target_flops: float
    proposals: list[Ranked]
    """The K runs to do next, best first."""
    ranked_low: list[Ranked]
    """The other candidates, best first, each with why it was not proposed."""
    now: Forecast | None
    """The interval from the runs so far (None for a first round)."""
    first_round: bool = False
    notes: list[str] = field(default_factory=list)


def recommend(
    points: pd.DataFrame,
    pool: Sequence[Candidate],
    *,
    target_flops: float,
    k: int,
    objective: Objective = "n_opt",
    level: float = 0.95,
    window: float = WINDOW,
) -> Recommendation:
    """The `k` runs of `pool` that narrow the interval of N_opt(`target_flops`) (or L_opt)
    most per FLOP, given the finished runs `points` (columns params, tokens, loss)."""
    if k < 1:
        raise UserError(f"--next: `K >= 1` must hold, but got K={k}")
    if k > len(pool):
        raise UserError(
            f"--next: got K={k}, but the search space leaves {len(pool)} candidate runs "
            "((shape, budget) pairs inside the tokens-per-parameter bounds not run yet); "
            f"ask for at most {len(pool)}"
        )
    try:
        fitted = _fitted(points, target_flops, objective, level)
    except UserError as error:
        fitted, why = None, str(error)
    else:
        why = "no finished runs yet"
    if fitted is None:
        start = first_round(pool)
        note = (
            f"first round: {why}; a space-filling start of {len(start)} runs, the "
            f"{len({c.budget for c in start})} smallest budgets × up to 3 sizes about 20 "
            "tokens/param (Hoffmann et al.'s guess) and 2.5× either side"
        )
        dummy = Forecast(math.nan, math.nan, math.nan)
        rows = [Ranked(c, dummy, math.nan, math.nan, "first round") for c in start]
        return Recommendation(objective, target_flops, rows, [], None, True, [note])
    fit, state, g, now = fitted
    optimum = {b: optimal_arrays(fit.theta, b, fit.flop_rule)["n_opt"][0] for b in _budgets(pool)}
    left = list(pool)
    proposals: list[Ranked] = []
    for _ in range(k):
        scored = _score(left, state, g, now, optimum, level, window)
        best = scored[0]
        proposals.append(_with_reason(best, window, state, fit.flop_rule, level, proposed=True))
        state = state.with_run(best.candidate.params, best.candidate.tokens)
        left.remove(best.candidate)
    rest = _score(left, state, g, now, optimum, level, window)
    low = [_with_reason(r, window, state, fit.flop_rule, level, proposed=False) for r in rest]
    return Recommendation(objective, target_flops, proposals, low, now, False, list(fit.notes))


def forecast(
    points: pd.DataFrame,
    *,
    target_flops: float,
    objective: Objective = "n_opt",
    level: float = 0.95,
) -> Forecast | None:
    """q(C)'s interval from the runs `points` (None when there are none)."""
    fitted = _fitted(points, target_flops, objective, level)
    return None if fitted is None else fitted[3]


def _fitted(
    points: pd.DataFrame, target_flops: float, objective: Objective, level: float
) -> tuple[Any, Uncertainty, np.ndarray, Forecast] | None:
    """(the parametric fit, θ's covariance, ∂q/∂θ, q's interval); None without runs."""
    from scalesweep.fit.laws.parametric.approach3 import fit_parametric

    if not len(points):
        return None
    fit = fit_parametric(points)
    n, d, loss = (fit.points[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    state = uncertainty(fit.theta, n, d, loss)
    g = gradient(fit.theta, target_flops, objective, fit.flop_rule)
    point = math.exp(target(fit.theta, target_flops, objective, fit.flop_rule))
    return fit, state, g, Forecast(point, *interval(point, state.variance(g), level))


def _budgets(pool: Sequence[Candidate]) -> list[float]:
    return sorted({c.budget for c in pool})


def _score(
    left: Sequence[Candidate],
    state: Uncertainty,
    g: np.ndarray,
    now: Forecast,
    optimum: dict[float, float],
    level: float,
    window: float,
) -> list[Ranked]:
    """The candidates with their expected interval, best first: inside the window before
    outside it, then by narrowing per FLOP."""
    before = relative_width(*interval(now.point, state.variance(g), level), now.point)
    out = []
    for c in left:
        after = Forecast(now.point, *interval(now.point, state.after(g, c.params, c.tokens), level))
        per_flop = (before - after.width) / c.flops
        out.append(Ranked(c, after, per_flop, c.params / optimum[c.budget], ""))
    return sorted(out, key=lambda r: (abs(math.log(r.off_optimum)) > math.log(window), -r.per_flop))


def _with_reason(
    ranked: Ranked,
    window: float,
    state: Uncertainty,
    rule: FlopsPerToken,
    level: float,
    *,
    proposed: bool,
) -> Ranked:
    """The ranked candidate with its reason: off its budget's optimum, or how well its budget's
    own N_opt is known already (with the proposals above it run)."""
    c, ratio = ranked.candidate, ranked.off_optimum
    where = f"N = {ratio:.2g}× its C's N_opt"
    if abs(math.log(ratio)) > math.log(window):
        reason = f"far from optimum ({where}, outside {window:g}×)"
    else:
        own = gradient(state.theta, c.budget, "n_opt", rule)
        half = interval(1.0, state.variance(own), level)[1] - 1.0
        known = f"that C's N_opt known ±{half:.0%}"
        if proposed:
            reason = f"most narrowing/FLOP; {where}; {known}"
        else:
            reason = f"less narrowing/FLOP; {known}; {where}"
    return replace(ranked, reason=reason)
