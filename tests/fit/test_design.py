"""The recommender (scalesweep.fit.design) on known truths: runs simulated from a law, no
training."""

import math

import numpy as np
import pandas as pd
import pytest

from scalesweep.errors import UserError
from scalesweep.fit.design.candidates import Shape, candidates, first_round
from scalesweep.fit.design.information import gradient, uncertainty
from scalesweep.fit.design.recommend import recommend
from scalesweep.fit.laws.parametric.allocation import SIX_ND, optimal_arrays

# a data-hungry truth: its optimum sits at ~110 tokens/param, far from the first round's guess
TRUTH = np.array([math.log(2.0), math.log(300.0), math.log(30000.0), 0.34, 0.45])
SHAPES = [
    Shape(f"s{i}", float(n), 6.0 * float(n)) for i, n in enumerate(np.geomspace(2e5, 1e8, 16))
]
BUDGETS = [1e16, 3e16, 1e17, 3e17]
TARGET = 100 * BUDGETS[-1]


def _loss(n, d):
    e, a, b, alpha, beta = TRUTH
    return math.exp(e) + math.exp(a) * n**-alpha + math.exp(b) * d**-beta


def _n_opt(budget):
    return optimal_arrays(TRUTH, budget, SIX_ND)["n_opt"][0]


def _rounds(n_rounds, k, rng):
    """Proposals of each round, each answered by the truth with 1 % noise."""
    rows, history = [], []
    for _ in range(n_rounds):
        done = frozenset((r["label"], r["budget"]) for r in rows)
        pool = candidates(
            SHAPES, BUDGETS, min_tokens_per_param=2, max_tokens_per_param=1000, done=done
        )
        points = pd.DataFrame(rows, columns=["params", "tokens", "loss", "label", "budget"])
        proposal = recommend(points[["params", "tokens", "loss"]], pool, target_flops=TARGET, k=k)
        history.append(proposal)
        for ranked in proposal.proposals:
            c = ranked.candidate
            noise = math.exp(0.01 * rng.standard_normal())
            rows.append(
                dict(
                    params=c.params,
                    tokens=c.tokens,
                    loss=_loss(c.params, c.tokens) * noise,
                    label=c.shape.label,
                    budget=c.budget,
                )
            )
    return history


def test_recommended_runs_move_toward_each_budgets_optimum():
    # Rule: the first round guesses 20 tokens/param; once the law is fitted, the proposals sit
    # nearer each budget's true optimum (in ln N) than the first round's guess did, and the
    # interval of N_opt(C_target) narrows round after round.
    history = _rounds(4, 3, np.random.default_rng(0))
    assert history[0].first_round and history[0].now is None

    def distance(proposal):
        return np.mean(
            [
                abs(math.log(r.candidate.params / _n_opt(r.candidate.budget)))
                for r in proposal.proposals
            ]
        )

    assert distance(history[3]) < distance(history[0])
    assert max(distance(h) for h in history[2:]) < distance(history[0])
    widths = [h.now.width for h in history[1:]]
    assert widths[-1] < widths[0]


def test_first_round_is_three_budgets_by_three_sizes_about_twenty_tokens_per_param():
    start = first_round(candidates(SHAPES, BUDGETS))
    assert sorted({c.budget for c in start}) == BUDGETS[:3]
    for budget in BUDGETS[:3]:
        ratios = sorted(c.tokens_per_param for c in start if c.budget == budget)
        assert len(ratios) == 3 and ratios[0] < 20 < ratios[-1]


def test_expected_narrowing_matches_refitting_with_the_run():
    # Rule: the Sherman–Morrison update equals the covariance recomputed with the run added.
    n = np.geomspace(1e6, 8e7, 5).repeat(3)
    d = np.tile([1e16, 1e17, 3e17], 5) / (6 * n)
    loss = np.array([_loss(a, b) for a, b in zip(n, d, strict=True)]) * (
        1 + 0.01 * np.sin(np.arange(15))
    )
    state = uncertainty(TRUTH, n, d, loss)
    g = gradient(TRUTH, TARGET, "n_opt")
    added = uncertainty(
        TRUTH, np.append(n, 3e7), np.append(d, 1e18), np.append(loss, _loss(3e7, 1e18))
    )
    direct = g @ (added.covariance / added.scale**2 * state.scale**2) @ g
    assert state.after(g, 3e7, 1e18) == pytest.approx(direct, rel=1e-4)  # the ridge differs
    assert state.after(g, 3e7, 1e18) < state.variance(g)


def test_k_larger_than_the_candidates_is_refused():
    pool = candidates(SHAPES[:2], BUDGETS[:1])
    with pytest.raises(UserError, match=r"K=5.*2 candidate runs"):
        recommend(
            pd.DataFrame(columns=["params", "tokens", "loss"]), pool, target_flops=TARGET, k=5
        )
