"""The compute multiplier recovers a known one through MLflow.

Truth: the baseline's frontier L_b(C) = E + A·(C/C0)^-α with E = 1.7, A = 3.0, α = 0.4,
C0 = 1e15, and the variant's L_v(C) = L_b(C·M): the variant reaches at C what the baseline
reaches at M·C. 4 budgets from 1e15 to 1e17, 2 seeds, 2 LRs (the worse one 2 % above the
frontier, which the fit must not use), multiplicative noise of 0.5 % per run (seeded). The runs
are written as a sweep writes them (`tests.sweep_runs`) and read back by `scalesweep fit --kind
compare`. M = 1 is repeated 20 times on the pure fit (no MLflow: it is the interval's coverage
that is tested, not the round trip).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

E, A, ALPHA, C0 = 1.7, 3.0, 0.4, 1e15
BUDGETS = tuple(np.geomspace(1e15, 1e17, 4))
NOISE = 5e-3
LRS = (0.01, 0.03)


def baseline_loss(flops: float) -> float:
    return E + A * (flops / C0) ** -ALPHA


def trial(flops: float, qk: bool, seed: int, lr: float, loss: float) -> dict:
    """One child run as a sweep records it (6N counting: C = 6·N·D)."""
    params = 1e6 * (flops / 1e15) ** 0.5
    tokens = flops / (6 * params)
    return {
        "params": {
            "model.qk_norm": qk,
            "optim.lr": lr,
            "train.seed": seed,
            "train.flop_counting": "6N",
            "planned.flops": flops,
        },
        "summary": {
            "init_loss": 5.5,
            "final_val_loss": loss,
            "params": params,
            "tokens": tokens,
            "flops": flops,
            "tokens_per_s": 1000.0 * (0.8 if qk else 1.0),
        },
        "status": "completed",
    }


def trials(multiplier: float, seed: int, budgets=BUDGETS, variant_loss=None) -> list[dict]:
    """Every (budget, variant, seed, LR) run: the variant's loss is `variant_loss(C)`, by
    default the baseline's at C·multiplier."""
    rng = np.random.default_rng(seed)
    variant_loss = variant_loss or (lambda c: baseline_loss(c * multiplier))
    out = []
    for flops in budgets:
        for qk in (False, True):
            truth = variant_loss(flops) if qk else baseline_loss(flops)
            for s in (0, 1):
                for lr in LRS:
                    off = 1.02 if lr == LRS[0] else 1.0
                    loss = truth * off * (1 + NOISE * rng.standard_normal())
                    out.append(trial(float(flops), qk, s, lr, loss))
    return out


def table(rows: list[dict]) -> pd.DataFrame:
    """The runs table `tracking.runs_table` makes of `rows` (for the pure-function tests)."""
    return pd.DataFrame(
        [{**r["params"], **r["summary"], "status": r["status"]} for r in rows]
    ).rename(columns={"final_val_loss": "loss"})


@pytest.mark.parametrize(
    ("multiplier", "extra"),
    [(1.3, ("--predict-flops", "1e18")), (1.05, ("--shared-E",))],
    ids=["M=1.3, own E", "M=1.05, shared E"],
)
def test_multiplier_recovered_through_mlflow(store, fit_json, multiplier, extra):
    # Rule: M is inside its 95 % interval at every budget, and 1.05 is resolved (its interval
    # excludes 1) from 4 budgets; the answer names the baseline and the throughput ratio.
    name = f"compare-{multiplier}"
    store.write(name, trials(multiplier, seed=7))
    out = fit_json(name, "--kind", "compare", "--variant", "model.qk_norm", *extra)
    assert out["baseline"] == "False" and out["method"] == "laws"
    assert out["shared_E"] is ("--shared-E" in extra)
    (comparison,) = out["comparisons"]
    assert comparison["value"] == "True"
    for point in comparison["at_budgets"]:
        low, high = point["ci"]
        assert low <= multiplier <= high, point
        assert point["wall_clock"] == pytest.approx(point["multiplier"] * 0.8)
    assert comparison["resolvable"]
    assert any(p["ci"][0] > 1 for p in comparison["at_budgets"])
    if "--predict-flops" in extra:  # the forecast, and beside it the refit without 1e17
        low, high = comparison["at_target"]["ci"]
        assert low <= multiplier <= high
        (held_out,) = out["backtest"]["held_out"]
        assert held_out["target"] == pytest.approx(1e17) and held_out["dropped"] == 1
        assert "2 budgets, no law" in out["backtest"]["note"]


def test_no_difference_covers_one():
    # Rule: identical laws (M = 1) give an interval at the answer's budget (the largest) that
    # holds 1 in at least 18 of 20 seeded repetitions.
    from scalesweep.fit.laws.compare.fit import fit_compare

    held = 0
    for rep in range(20):
        fit = fit_compare(
            table(trials(1.0, seed=100 + rep)),
            variant="model.qk_norm",
            rng=np.random.default_rng(rep),
        )
        low, high = fit.comparisons[0].at_budgets[-1].ci
        held += low <= 1.0 <= high
    assert held >= 18, held


def test_crossover_within_one_budget_step(store, fit_json):
    # Rule: a variant better at small C and worse at large (a smaller A, a smaller α) has its
    # crossover found within one budget step of the truth, and M falls through 1 there.
    budgets = tuple(np.geomspace(1e15, 1e17, 6))
    a_v, alpha_v = 2.4, 0.33
    truth = C0 * (a_v / A) ** (1 / (alpha_v - ALPHA))  # A_v·x^-α_v = A·x^-α

    def variant(flops: float) -> float:
        return E + a_v * (flops / C0) ** -alpha_v

    store.write("compare-crossover", trials(1.0, 3, budgets, variant))
    out = fit_json("compare-crossover", "--kind", "compare", "--variant", "model.qk_norm")
    (comparison,) = out["comparisons"]
    step = math.log(budgets[1] / budgets[0])
    assert abs(math.log(comparison["crossover"] / truth)) <= step
    values = [p["multiplier"] for p in comparison["at_budgets"]]
    assert values[0] > 1 > values[-1]
