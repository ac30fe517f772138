"""The runs a ladder could do next, and the first round when nothing has run yet.

A candidate is one (shape, budget) pair of the sweep file: a model size N (the N the FLOP
convention pairs with, as the fit uses it) trained on D = C / (FLOPs per token) tokens. The
caller computes N and the FLOPs per token from the model (`scalesweep.flops`); here they are
numbers, so the design stays a pure function of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scalesweep.errors import UserError

GUESS_TOKENS_PER_PARAM = 20.0
"""The first round's guess of the optimum, Hoffmann et al.'s ~20 tokens per parameter."""


@dataclass(frozen=True)
class Shape:
    """A model shape of the search space, as numbers."""

    label: str
    """How the caller names it (e.g. `width=256 depth=6`)."""
    params: float
    """N, as the fit counts it."""
    flops_per_token: float
    """Training FLOPs per token under the sweep's convention."""


@dataclass(frozen=True)
class Candidate:
    shape: Shape
    budget: float
    """The isoFLOP budget C it belongs to."""
    tokens: float
    """D = C / FLOPs per token."""

    @property
    def params(self) -> float:
        return self.shape.params

    @property
    def flops(self) -> float:
        return self.budget

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    @property
    def key(self) -> tuple[str, float]:
        return (self.shape.label, self.budget)


def candidates(
    shapes: Sequence[Shape],
    budgets: Sequence[float],
    *,
    min_tokens_per_param: float | None = None,
    max_tokens_per_param: float | None = None,
    done: frozenset[tuple[str, float]] = frozenset(),
) -> list[Candidate]:
    """Every (shape, budget) pair inside the tokens-per-parameter bounds that has not run
    (`done`: (label, budget) pairs already in the sweep)."""
    out = []
    for budget in budgets:
        for shape in shapes:
            candidate = Candidate(shape, float(budget), budget / shape.flops_per_token)
            ratio = candidate.tokens_per_param
            if min_tokens_per_param is not None and ratio < min_tokens_per_param:
                continue
            if max_tokens_per_param is not None and ratio > max_tokens_per_param:
                continue
            if candidate.key not in done:
                out.append(candidate)
    return out


def first_round(
    pool: Sequence[Candidate], *, n_budgets: int = 3, n_sizes: int = 3
) -> list[Candidate]:
    """A small space-filling start: the ladder's `n_budgets` smallest budgets (the design
    decides later whether the larger ones are worth their price), at each the `n_sizes` sizes
    nearest (in ln N) to the 20-tokens-per-parameter guess and a factor 2.5 either side."""
    if not pool:
        raise UserError("the first round has no candidates: every (shape, budget) pair ran")
    budgets = sorted({c.budget for c in pool})
    chosen: list[Candidate] = []
    for budget in budgets[:n_budgets]:
        here = [c for c in pool if c.budget == budget]
        taken: list[Candidate] = []
        for factor in _spread(n_sizes):
            left = [c for c in here if c not in taken]
            if not left:
                break
            # N a factor f from the guess trains on ~1/f² as many tokens per parameter
            ratio = GUESS_TOKENS_PER_PARAM / factor**2
            taken.append(min(left, key=lambda c: abs(math.log(c.tokens_per_param / ratio))))
        chosen += taken
    return chosen


def _spread(n: int) -> list[float]:
    """Size factors about the guess: 1, 1/2.5, 2.5, 1/2.5², … (the centre first)."""
    out = [1.0]
    step = 1
    while len(out) < n:
        out.append(2.5**-step)
        if len(out) < n:
            out.append(2.5**step)
        step += 1
    return out
