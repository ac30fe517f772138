"""Chinchilla Approach 2 (isoFLOP parabolas) and Approach 1 (training-curve envelope)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalesweep.errors import UserError
from scalesweep.fit.laws.isoflop.approach2 import fit_budget, fit_isoflop
from scalesweep.fit.laws.isoflop.envelope import fit_envelope
from scalesweep.fit.runs import group_budgets

DATA = Path(__file__).parents[1] / "data"
PORIAN = pd.read_csv(DATA / "porian2024_isoflop_runs.csv")
PUBLISHED = pd.read_csv(DATA / "porian2024_published_exponents.csv").set_index("config")


def synthetic_runs(a_true: float, *, noise: float, seed: int) -> pd.DataFrame:
    """isoFLOP profiles of L = E + A/N^α + B/D^β with N_opt ∝ C^a_true (a = β/(α+β))."""
    rng = np.random.default_rng(seed)
    alpha = 0.35
    beta = alpha * a_true / (1 - a_true)
    rows = []
    for c in np.geomspace(1e17, 1e21, 5):
        n_center = 0.1 * c**a_true
        for n in n_center * np.geomspace(0.1, 10, 9):
            loss = 1.7 + 400 / n**alpha + 2000 / (c / (6 * n)) ** beta
            rows.append(
                (c * (1 + rng.uniform(-0.02, 0.02)), n, loss * np.exp(rng.normal(0, noise)))
            )
    return pd.DataFrame(rows, columns=["flops", "params", "loss"])


@pytest.mark.parametrize("config", list(PUBLISHED.index))
@pytest.mark.parametrize(("method", "tolerance"), [("quadratic", 0.05), ("akima", 0.02)])
def test_porian_exponent_within_tolerance_of_published(config, method, tolerance):
    # Rule: per config, the isoFLOP exponent a is within 0.05 (local parabolas) or 0.02
    # (Porian et al.'s Akima estimator, the default) of the published value, and with Akima the
    # published value lies inside our 95 % interval (docs/fits.md has the table).
    fit = fit_isoflop(PORIAN[PORIAN["config"] == config], method=method)
    published = PUBLISHED.loc[config, "n_exponent"]
    assert abs(fit.a - published) < tolerance
    if method == "akima":
        assert fit.a_ci[0] < published < fit.a_ci[1]


@pytest.mark.parametrize("dataset", ["rw/", "owt2/", "rw-att/"])
def test_porian_exponents_fall_in_published_order(dataset):
    # Rule: the corrections (FLOP counting, warmup, decay, tuning) lower a in the published order.
    configs = [c for c in PUBLISHED.index if c.startswith(dataset)]
    ours = {c: fit_isoflop(PORIAN[PORIAN["config"] == c]).a for c in configs}
    published = PUBLISHED.loc[configs, "n_exponent"]
    assert sorted(configs, key=ours.__getitem__) == list(published.sort_values().index)


@pytest.mark.parametrize(
    ("a_true", "method", "spread"),
    [(0.5, "quadratic", 0.005), (0.7, "quadratic", 0.042), (0.5, "akima", 0.018)],
)
def test_recovers_known_exponent_from_noisy_profiles(a_true, method, spread):
    # Rule: on synthetic isoFLOP profiles with 0.2 % noise, a is recovered within 3 spreads,
    # a + b = 1 (tokens are C/6N), and the 95 % interval contains the truth. The spread is the
    # standard deviation of a over seeds 0-199 of this generator (`python
    # benchmarks/truth_tolerances.py`: 0.005, 0.042 and 0.018; the a = 0.7 profiles are sampled
    # far from symmetric about their minimum). Over those seeds the interval held the truth
    # 91.5-94.5 % of the time, so over seeds 0-19 it
    # must hold it at least 15 times (fewer has probability < 0.6 % at 91.5 %): a fixed
    # tolerance alone (0.03 before) passed whatever the interval said.
    fits = [
        fit_isoflop(synthetic_runs(a_true, noise=2e-3, seed=s), method=method) for s in range(20)
    ]
    fit = fits[0]
    assert fit.a == pytest.approx(a_true, abs=3 * spread)
    assert fit.a_ci[0] < a_true < fit.a_ci[1]
    assert fit.a + fit.b == pytest.approx(1.0, abs=1e-6)
    assert len(fit.budgets) == 5 and not any(b.excluded for b in fit.budgets)
    assert sum(f.a_ci[0] < a_true < f.a_ci[1] for f in fits) >= 15


def test_bootstrap_interval_brackets_the_estimate():
    # Rule: resampling runs within budgets gives a percentile interval around a.
    runs = synthetic_runs(0.5, noise=3e-3, seed=1)
    fit = fit_isoflop(runs, n_bootstrap=30, rng=np.random.default_rng(0))
    assert fit.a_ci[0] < fit.a < fit.a_ci[1]
    assert fit.a_ci[1] - fit.a_ci[0] < 0.2


@pytest.mark.parametrize(
    ("losses", "reason"),
    [
        ([3.0, 3.1, 3.2, 3.3, 3.4], "smallest sampled size"),
        ([3.4, 3.3, 3.2, 3.1, 3.0], "largest sampled size"),
        ([3.0, 3.3, 2.9, 3.3, 3.0], "curvature not positive"),
        ([3.0, 2.9], "fewer than 3 sizes"),
    ],
)
def test_budget_without_interior_minimum_is_excluded_with_reason(losses, reason):
    # Rule: edge minima, non-positive curvature and too few sizes exclude the budget, saying why.
    sizes = np.geomspace(1e7, 1e9, len(losses))
    frame = pd.DataFrame({"params": sizes, "loss": losses})
    budget = fit_budget(frame, 1e19, method="quadratic")
    assert budget.excluded and reason in budget.reason and budget.n_opt is None


def test_budgets_group_runs_that_miss_their_budget_slightly():
    # Rule: FLOPs within 10 % share one budget; a factor of 2 separates budgets.
    labels = group_budgets(np.array([1e18, 1.03e18, 0.98e18, 2e18, 2.05e18]))
    assert len(np.unique(labels)) == 2
    assert labels[0] == labels[1] == labels[2]


def test_diverged_runs_are_counted_not_fitted():
    # Rule: diverged/failed runs are set aside and counted; the fit ignores their NaN loss.
    runs = synthetic_runs(0.5, noise=0, seed=0).assign(status="completed")
    bad = runs.iloc[:3].assign(status=["diverged", "failed", "diverged"], loss=np.nan)
    fit = fit_isoflop(pd.concat([runs, bad], ignore_index=True))
    assert fit.n_runs_excluded == 3
    assert fit.a == pytest.approx(0.5, abs=0.02)


def test_too_few_budgets_is_a_user_error():
    # Rule: fewer than 2 usable budgets raises UserError listing the excluded ones.
    runs = synthetic_runs(0.5, noise=0, seed=0)
    one = runs[
        group_budgets(runs["flops"].to_numpy()) == group_budgets(runs["flops"].to_numpy())[0]
    ]
    with pytest.raises(UserError, match="at least 2 budgets"):
        fit_isoflop(one)


def test_envelope_of_training_curves_recovers_exponent():
    # Rule: Approach 1 on loss-vs-FLOPs curves of a known law recovers N_opt ∝ C^a roughly.
    alpha, beta = 0.35, 0.35  # a = 0.5
    rows = []
    for i, n in enumerate(np.geomspace(1e7, 1e10, 13)):
        for d in np.geomspace(1e8, 1e12, 60):
            rows.append((f"r{i}", n, 6 * n * d, 1.7 + 400 / n**alpha + 2000 / d**beta))
    curves = pd.DataFrame(rows, columns=["run_id", "params", "flops", "loss"])
    fit = fit_envelope(curves)
    assert fit.a == pytest.approx(0.5, abs=0.08)


@pytest.mark.parametrize("flops", [1e19, 1e23])
def test_prediction_band_matches_statsmodels_mean_interval(flops):
    # Rule: predict() gives N_opt, D_opt on the fitted lines, with the OLS confidence band of
    # the mean at C (statsmodels get_prediction), which widens away from the data.
    import statsmodels.api as sm

    fit = fit_isoflop(synthetic_runs(0.5, noise=3e-3, seed=2))
    kept = [b for b in fit.budgets if not b.excluded]
    x = np.log([b.flops for b in kept])
    y = np.log([b.n_opt for b in kept])
    ols = sm.OLS(y, sm.add_constant(x)).fit()
    frame = ols.get_prediction(np.array([[1.0, np.log(flops)]])).summary_frame(alpha=0.05)
    predicted = fit.predict(flops)
    assert predicted["n_opt"] == pytest.approx(np.exp(frame["mean"].iloc[0]), rel=1e-9)
    low, high = predicted["ci"]["n_opt"]
    assert low == pytest.approx(np.exp(frame["mean_ci_lower"].iloc[0]), rel=1e-6)
    assert high == pytest.approx(np.exp(frame["mean_ci_upper"].iloc[0]), rel=1e-6)
    assert predicted["ci"]["d_opt"][0] < predicted["d_opt"] < predicted["ci"]["d_opt"][1]


def lopsided_runs() -> pd.DataFrame:
    """synthetic_runs at a = 0.5 with the smallest budget cut to the 3 sizes around its minimum:
    a resample of the loss noise that makes an outer size the lowest loses the minimum."""
    runs = synthetic_runs(0.5, noise=1e-3, seed=3)
    labels = group_budgets(runs["flops"].to_numpy())
    first = runs[labels == labels.min()].sort_values("params")
    lowest = int(np.argmin(first["loss"].to_numpy()))
    keep = first.iloc[lowest - 1 : lowest + 2]
    return pd.concat([keep, runs[labels != labels.min()]], ignore_index=True)


def test_bootstrap_keeps_the_budget_set_and_reports_what_it_kept(monkeypatch):
    # Rule: every kept resample fits the same budgets as the fit itself; resamples in which a
    # budget loses its interior minimum are dropped, and the JSON says how many were asked for
    # and how many were kept, with a note. Failed before the fix (finding 10): those resamples
    # were refitted on fewer budgets, and only the number asked for was reported.
    import scalesweep.fit.laws.isoflop.approach2 as isoflop

    sizes = []
    original = isoflop._exponent_fits

    def spy(budgets, **kwargs):
        sizes.append(sum(not b.excluded for b in budgets))
        return original(budgets, **kwargs)

    monkeypatch.setattr(isoflop, "_exponent_fits", spy)
    fit = isoflop.fit_isoflop(lopsided_runs(), n_bootstrap=60, rng=np.random.default_rng(0))
    data = fit.to_dict()
    assert data["n_bootstrap"] == 60 and 0 < data["n_bootstrap_kept"] < 60
    assert set(sizes) == {5}
    assert any(f"{data['n_bootstrap_kept']} of 60 resamples kept" in n for n in fit.notes)


def test_optimal_loss_law_predicts_a_larger_budget():
    # Rule: with C = 6ND, L_opt(C) of L = 1.7 + 400/N^α + 2000/D^β is exactly E + K·C^-αβ/(α+β);
    # from noisy profiles (0.2 %) at 1e17..1e21 the fitted law predicts the optimal loss at
    # 1e22 within 0.5 %, inside its prediction interval, which contains its confidence band.
    fit = fit_isoflop(synthetic_runs(0.5, noise=2e-3, seed=4))
    alpha = beta = 0.35
    n = np.geomspace(1e9, 1e13, 20001)
    truth = float(np.min(1.7 + 400 / n**alpha + 2000 / (1e22 / (6 * n)) ** beta))
    predicted = fit.predict(1e22)
    assert predicted["loss_opt"] == pytest.approx(truth, rel=5e-3)
    low, high = predicted["pi"]["loss_opt"]
    assert low < truth < high
    assert low <= predicted["ci"]["loss_opt"][0] <= predicted["ci"]["loss_opt"][1] <= high
    for key in ("n_opt", "d_opt"):
        assert predicted["pi"][key][0] <= predicted["ci"][key][0] < predicted[key]
    assert pytest.approx(1.7, abs=0.1) == fit.loss_law.E
