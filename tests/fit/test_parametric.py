"""Chinchilla Approach 3: the Epoch replication on the Figure 4 data, synthetic recovery, the
batched L-BFGS against scipy, compute-optimal allocation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from scalesweep.errors import UserError
from scalesweep.fit.laws.parametric.approach3 import compute_optimal, fit_parametric
from scalesweep.fit.laws.parametric.search import fit_arrays, start_grid
from scalesweep.fit.numerics.huber import huber_objective
from scalesweep.fit.numerics.lbfgs import Prune, minimize_batch

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
    assert chinchilla_fit.n_points == 240 and chinchilla_fit.method == "projection"


def _porian_sets() -> list[pd.DataFrame]:
    runs = pd.read_csv(DATA / "porian2024_isoflop_runs.csv")
    return [group.drop(columns="config") for _, group in runs.groupby("config", sort=True)]


def _epoch_sets() -> list[pd.DataFrame]:
    raw = pd.read_csv(DATA / "chinchilla_fig4_epoch_extracted.csv")
    every = pd.DataFrame(
        {"params": raw["Model Size"], "flops": raw["Training FLOP"], "loss": raw["loss"]}
    )
    return [chinchilla_runs(), every]


@pytest.mark.parametrize("runs", _epoch_sets() + _porian_sets())
def test_variable_projection_finds_the_4500_start_optimum(runs):
    # Rule: Approach 3 by variable projection (the default) reaches the optimum of Epoch's
    # 4500-start grid to 3 significant digits in every parameter, on Epoch's points (with and
    # without the 5 highest losses) and on each of Porian et al.'s 14 sets, with an objective
    # no higher.
    grid = fit_parametric(runs, method="grid")
    projected = fit_parametric(runs)
    assert grid.n_starts == 4500 and projected.method == "projection"
    assert projected.objective <= grid.objective * (1 + 1e-7)
    for name in ("E", "A", "B", "alpha", "beta"):
        # 3 significant digits; an E at the boundary 0 (both below 1e-3) counts as the same
        assert getattr(projected, name) == pytest.approx(getattr(grid, name), rel=5e-3, abs=1e-3)


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
    theta, objective, _, _ = fit_arrays(n, d, loss, starts=starts, polish=False)
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
    for status in set(statuses):
        count = statuses.count(status)
        assert any(f"{count} run(s) not fitted, status {status}" in note for note in fit.notes)
    assert fit.to_dict()["n_runs_excluded"] == len(statuses)
    assert fit.objective == pytest.approx(alone.objective, rel=1e-9)


def law_grid(*, extra_lrs: bool, seed: int = 5) -> pd.DataFrame:
    """L = 1.8 + 400/N^0.34 + 2000/D^0.37 on a 6×6 (N, D) grid with 0.1 % noise, each cell
    also holding, with `extra_lrs`, two runs at off-optimal LRs (+0.05 and +0.15 in loss)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in np.geomspace(1e7, 3e9, 6):
        for d in np.geomspace(1e9, 1e12, 6):
            loss = (1.8 + 400 / n**0.34 + 2000 / d**0.37) * np.exp(rng.normal(0, 1e-3))
            rows.append((n, d, d, loss))
            if extra_lrs:
                rows += [(n, d, d * 1.004, loss + 0.05), (n, d, d * 1.008, loss + 0.15)]
    return pd.DataFrame(rows, columns=["params", "planned.tokens", "tokens", "loss"])


def test_default_fits_the_best_run_per_cell():
    # Rule: by default Approach 3 fits the best run of each planned (N, D) cell, so runs at
    # off-optimal LRs change nothing (E within 0.005 of the fit without them); --all-runs fits
    # every run and says so. Failed before the fix (finding 11): every run was fitted and the
    # off-optimal rows moved E by ~0.08.
    clean = fit_parametric(law_grid(extra_lrs=False))
    fit = fit_parametric(law_grid(extra_lrs=True))
    everything = fit_parametric(law_grid(extra_lrs=True), all_runs=True)
    assert fit.n_points == 36 and pytest.approx(clean.E, abs=0.005) == fit.E
    assert "best run per (N, D) cell: 36 cells from 108" in fit.basis.runs
    assert everything.n_points == 108 and abs(everything.E - clean.E) > 0.03
    assert "--all-runs" in everything.basis.runs


def kaplan_runs() -> pd.DataFrame:
    """A sweep that counts FLOPs as Kaplan does (C = 6·N_nonembed·D), with a loss law in the
    non-embedding N; embeddings (2·50000·width) dwarf the small models' other weights."""
    rows = []
    for width in (128, 192, 256, 384, 512, 768):
        nonembed = 12 * 4 * width**2
        for d in np.geomspace(1e8, 1e11, 6):
            loss = 1.8 + 400 / nonembed**0.34 + 2000 / d**0.37
            rows.append((nonembed + 2 * 50000 * width, nonembed, d, 6 * nonembed * d, loss))
    frame = pd.DataFrame(rows, columns=["params", "params_nonembed", "tokens", "flops", "loss"])
    return frame.assign(**{"train.flop_counting": "kaplan"})


def test_n_follows_the_runs_flop_convention():
    # Rule: with train.flop_counting = kaplan the fit's N is params_nonembed (the law is
    # recovered), the basis says so, --n-col overrides, and a prediction spends C as the runs
    # count it (6·N_nonembed·D = C). Failed before the fix (finding 7): N was the total count.
    fit = fit_parametric(kaplan_runs())
    assert fit.alpha == pytest.approx(0.34, abs=0.005) and fit.beta == pytest.approx(
        0.37, abs=0.005
    )
    assert "params_nonembed" in fit.basis.n and fit.basis.flop_counting == "kaplan"
    best = compute_optimal(fit, 1e20)
    assert 6 * best.n_opt * best.d_opt == pytest.approx(1e20, rel=1e-6)
    assert best.to_dict()["flop_counting"] == "kaplan"
    total = fit_parametric(kaplan_runs(), n_col="params")
    assert "--n-col" in total.basis.n and abs(total.alpha - 0.34) > 0.05


def test_mixed_flop_conventions_are_refused():
    # Rule: runs counted under two conventions cannot share one fit: UserError naming the column.
    runs = kaplan_runs()
    runs.loc[0, "train.flop_counting"] = "6N"
    with pytest.raises(UserError, match=r"train\.flop_counting"):
        fit_parametric(runs)


def test_pruning_stragglers_keeps_the_best_optimum():
    # Rule: `Prune` stops only starts above the best objective by more than its tolerance, and
    # the best end point is the one found without pruning (on 300 starts of the grid).
    frame = chinchilla_runs()
    n, c, loss = (frame[k].to_numpy() for k in ("params", "flops", "loss"))
    log_n, log_d, log_l = np.log(n), np.log(c / (6 * n)), np.log(loss)
    starts = start_grid()[np.random.default_rng(2).choice(4500, 300, replace=False)]

    def batch(x, rows):
        return huber_objective(x, log_n, log_d, log_l)

    plain = minimize_batch(batch, starts)
    pruned = minimize_batch(batch, starts, prune=Prune(active_fraction=0.05))
    assert pruned.pruned.sum() > 0 and not plain.pruned.any()
    assert np.nanmin(pruned.fun) == pytest.approx(np.nanmin(plain.fun), rel=1e-9)
    assert (pruned.fun[pruned.pruned] > np.nanmin(pruned.fun) * (1 + 1e-3)).all()


def test_loss_prediction_interval_covers_new_runs_and_the_confidence_interval_does_not():
    # Rule: at a new budget the loss has a CI (where the law lies) and a PI (where a run
    # trained at N_opt, D_opt lands: the law's uncertainty plus single runs' scatter).
    # Truth: L = 1.8 + 400/N^0.34 + 2000/D^0.37 with log-normal noise σ = 0.02 on 36 runs; a
    # new run's loss is the true law at (N_opt, D_opt) times exp(N(0, σ²)). Tolerance: the 95%
    # PI holds ≥ 90% of 2000 fresh draws, its log half-width is 1.96σ within a factor 1.5, and
    # the CI is narrower than the PI.
    rng = np.random.default_rng(3)
    n, d = np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(1e9, 1e11, 6))
    n, d = n.ravel(), d.ravel()
    sigma = 0.02

    def law(n, d):
        return 1.8 + 400 / n**0.34 + 2000 / d**0.37

    runs = pd.DataFrame({"params": n, "tokens": d,
                         "loss": law(n, d) * np.exp(rng.normal(0, sigma, n.size))})  # fmt: skip
    best = compute_optimal(fit_parametric(runs, n_bootstrap=200, rng=rng), 1e20)
    (ci_low, ci_high), (pi_low, pi_high) = best.ci["loss_opt"], best.pi["loss_opt"]
    new_runs = law(best.n_opt, best.d_opt) * np.exp(rng.normal(0, sigma, 2000))
    assert np.mean((pi_low <= new_runs) & (new_runs <= pi_high)) >= 0.90
    half_width = np.log(pi_high / pi_low) / 2
    assert 1.96 * sigma / 1.5 <= half_width <= 1.96 * sigma * 1.5
    assert ci_high - ci_low < pi_high - pi_low
    assert best.to_dict()["pi"]["loss_opt"] == [pi_low, pi_high]
    assert compute_optimal(fit_parametric(runs), 1e20).pi == {}  # no bootstrap, no interval


@pytest.mark.parametrize(
    ("sizes", "budgets", "why"),
    [
        ((1e7, 2e7, 4e7, 8e7), (1e9,), "4 point.* 4 value.* and 1 of"),
        ((1e7, 2e7), (1e9, 2e9), "4 point"),
    ],
)
def test_too_few_distinct_points_for_five_parameters_are_refused(sizes, budgets, why):
    # Rule: five parameters need ≥ 6 distinct (N, D) points with ≥ 2 values on each axis (an
    # LR sweep at one token budget has 1): a UserError saying what the runs give, not a law
    # through 4 points with A at 1e18. Seeds (repeated points) do not count twice.
    runs = pd.DataFrame([(n, d, 2 + 1e3 / n**0.3 + 1e3 / d**0.3 + 0.01 * seed)
                         for n in sizes for d in budgets for seed in range(3)],
                        columns=["params", "tokens", "loss"])  # fmt: skip
    with pytest.raises(UserError, match=why):
        fit_parametric(runs, all_runs=True)
