"""Chinchilla Approach 3: the Epoch replication on the Figure 4 data, synthetic recovery, the
batched L-BFGS against scipy, compute-optimal allocation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from scalesweep.errors import UserError
from scalesweep.fit.parametric import (
    compute_optimal,
    fit_arrays,
    fit_parametric,
    huber_objective,
    start_grid,
)

DATA = Path(__file__).parents[1] / "data"


def chinchilla_runs() -> pd.DataFrame:
    """Epoch's Figure 4 points without the 5 highest-loss ones, as Besiroglu et al. fit them."""
    raw = pd.read_csv(DATA / "chinchilla_fig4_epoch_extracted.csv")
    kept = raw.sort_values("loss").iloc[:-5]
    return pd.DataFrame(
        {"params": kept["Model Size"], "flops": kept["Training FLOP"], "loss": kept["loss"]}
    )


@pytest.fixture(scope="module")
def chinchilla_fit():
    return fit_parametric(chinchilla_runs(), n_bootstrap=200, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("name", "published", "rel"),
    [("E", 1.817, 0.02), ("alpha", 0.348, 0.02), ("beta", 0.366, 0.02), ("A", 482.0, 0.15),
     ("B", 2085.4, 0.15)],
)  # fmt: skip
def test_full_grid_matches_besiroglu_2024(chinchilla_fit, name, published, rel):
    # Rule: the full-grid Huber fit on Epoch's data reproduces Besiroglu et al.'s estimates.
    assert getattr(chinchilla_fit, name) == pytest.approx(published, rel=rel)


def test_derived_exponent_a_matches_besiroglu_2024(chinchilla_fit):
    # Rule: a = β/(α+β) = 0.513 ± 0.01, and a + b = 1.
    assert chinchilla_fit.a == pytest.approx(0.513, abs=0.01)
    assert chinchilla_fit.a + chinchilla_fit.b == pytest.approx(1.0)
    assert chinchilla_fit.n_points == 240 and chinchilla_fit.n_starts == 4500


@pytest.mark.parametrize(("name", "published_se"), [("E", 0.03), ("alpha", 0.02), ("A", 124.6)])
def test_bootstrap_interval_has_the_published_width(chinchilla_fit, name, published_se):
    # Rule: bootstrap 95 % intervals contain the estimate and are about ±2 published SEs wide
    # (a refit that stops early would give intervals ~100x too narrow).
    low, high = chinchilla_fit.ci[name]
    assert low < getattr(chinchilla_fit, name) < high
    assert 2.0 * published_se < high - low < 6.0 * published_se


def test_batched_starts_match_one_scipy_call_per_start():
    # Rule: on a subset of the grid, the batched L-BFGS finds the same best optimum (objective
    # and parameters) as one scipy L-BFGS-B call per start.
    frame = chinchilla_runs()
    n, c, loss = (frame[k].to_numpy() for k in ("params", "flops", "loss"))
    d = c / (6 * n)
    starts = start_grid()[np.random.default_rng(1).choice(4500, 40, replace=False)]
    theta, objective, _ = fit_arrays(n, d, loss, starts=starts, polish=False)
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)

    def fun(x):
        value, grad = huber_objective(x[None, :], log_n, log_d, log_l)
        return float(value[0]), grad[0]

    looped = [minimize(fun, s, jac=True, method="L-BFGS-B") for s in starts]
    best = min(looped, key=lambda r: r.fun)
    assert objective == pytest.approx(best.fun, rel=1e-6)
    np.testing.assert_allclose(theta[3:], best.x[3:], atol=2e-3)


def test_analytic_gradient_matches_finite_differences():
    # Rule: huber_objective's gradient is the derivative of its value.
    rng = np.random.default_rng(2)
    log_n, log_d = rng.uniform(17, 23, 30), rng.uniform(20, 27, 30)
    log_l = np.log(1.7 + np.exp(6 - 0.3 * log_n) + np.exp(7 - 0.35 * log_d)) + rng.normal(
        0, 3e-3, 30
    )
    theta = np.array([[0.4, 5.0, 8.0, 0.3, 0.4]])
    _, grad = huber_objective(theta, log_n, log_d, log_l)
    eps = 1e-6
    for i in range(5):
        step = np.zeros((1, 5))
        step[0, i] = eps
        up, _ = huber_objective(theta + step, log_n, log_d, log_l)
        down, _ = huber_objective(theta - step, log_n, log_d, log_l)
        assert grad[0, i] == pytest.approx((up[0] - down[0]) / (2 * eps), rel=1e-4, abs=1e-9)


@pytest.mark.parametrize(
    ("e_true", "a_true", "b_true", "alpha", "beta"),
    [(1.8, 400, 2000, 0.34, 0.37), (2.5, 60, 300, 0.25, 0.30)],
)
def test_recovers_known_law_from_noisy_synthetic_runs(e_true, a_true, b_true, alpha, beta):
    # Rule: with 0.3 % multiplicative noise on a 10x10 (N, D) grid, the fit recovers the
    # exponents within 0.03 and E within 3 %.
    rng = np.random.default_rng(3)
    n = np.repeat(np.geomspace(1e7, 3e10, 10), 10)
    d = np.tile(np.geomspace(1e8, 1e12, 10), 10)
    loss = (e_true + a_true / n**alpha + b_true / d**beta) * np.exp(rng.normal(0, 3e-3, n.size))
    fit = fit_parametric(pd.DataFrame({"params": n, "tokens": d, "loss": loss}))
    assert fit.alpha == pytest.approx(alpha, abs=0.03)
    assert fit.beta == pytest.approx(beta, abs=0.03)
    irreducible = fit.E
    assert irreducible == pytest.approx(e_true, rel=0.03)


@pytest.mark.parametrize("flops", [1e21, 5.76e23])
def test_compute_optimal_is_the_minimum_along_the_budget(chinchilla_fit, flops):
    # Rule: N_opt, D_opt spend the budget (6·N·D = C) and no other split on it has lower loss.
    best = compute_optimal(chinchilla_fit, flops)
    assert 6 * best.n_opt * best.d_opt == pytest.approx(flops, rel=1e-9)
    n = best.n_opt * np.geomspace(0.5, 2, 41)
    losses = chinchilla_fit.loss(n, flops / (6 * n))
    assert best.loss_opt == pytest.approx(losses.min(), rel=1e-5)
    assert best.ci["n_opt"][0] < best.n_opt < best.ci["n_opt"][1]


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (pd.DataFrame({"params": [1e8] * 8, "loss": [3.0] * 8}), "`tokens`"),
        (pd.DataFrame({"params": [-1.0] + [1e8] * 7, "tokens": [1e9] * 8, "loss": [3.0] * 8}),
         "`params > 0`"),
        (pd.DataFrame({"params": [1e8] * 8, "tokens": [1e9] * 8, "loss": [np.nan] + [3.0] * 7}),
         "`loss`"),
        (pd.DataFrame({"params": [1e8] * 3, "tokens": [1e9] * 3, "loss": [3.0] * 3}),
         "at least 6"),
    ],
)  # fmt: skip
def test_bad_input_names_the_column(frame, needle):
    # Rule: a table the fit cannot use raises UserError naming the column or the count.
    with pytest.raises(UserError) as info:
        fit_parametric(frame)
    assert needle in str(info.value)


@pytest.mark.parametrize("statuses", [["diverged"], ["diverged", "failed", "failed"]])
def test_diverged_and_failed_runs_are_counted_not_fitted(statuses):
    # Rule: diverged/failed runs (NaN loss) are set aside, counted and noted, never silently
    # dropped; the fit on the rest is the fit without them.
    rng = np.random.default_rng(4)
    n = np.repeat(np.geomspace(1e7, 3e10, 6), 6)
    d = np.tile(np.geomspace(1e8, 1e12, 6), 6)
    loss = (1.8 + 400 / n**0.34 + 2000 / d**0.37) * np.exp(rng.normal(0, 1e-3, n.size))
    good = pd.DataFrame({"params": n, "tokens": d, "loss": loss, "status": "completed"})
    bad = pd.DataFrame(
        {"params": 1e9, "tokens": 1e10, "loss": np.nan, "status": statuses},
        index=range(len(statuses)),
    )
    fit = fit_parametric(pd.concat([good, bad], ignore_index=True))
    alone = fit_parametric(good)
    assert fit.n_runs_excluded == len(statuses) and fit.n_points == len(good)
    assert any(f"{len(statuses)} run(s) not fitted" in note for note in fit.notes)
    assert fit.to_dict()["n_runs_excluded"] == len(statuses)
    assert fit.objective == pytest.approx(alone.objective, rel=1e-9)
