"""How far to trust a forecast: the backtests, the calibrated intervals, Approaches 2 and 3."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scalesweep.fit.forecast.backtest import Forecast, Optimum
from scalesweep.fit.forecast.calibrate import calibration, widened
from tests.sweep_runs import fit_json


def forecast(truth: float, point: float, low: float, high: float, ahead: float = 2.0) -> Forecast:
    """A loss forecast of a budget `ahead` times the last one fitted (its CI half as wide)."""
    ci = [point * (low / point) ** 0.5, point * (high / point) ** 0.5]
    predicted = {"loss_opt": point, "pi": {"loss_opt": [low, high]}, "ci": {"loss_opt": ci}}
    return Forecast(1e18, 1, Optimum(1e18 * ahead, truth, 1e8, 1e10), predicted)


def test_the_score_is_the_miss_over_the_half_width_on_its_side():
    # Rule: score = ln(truth/point) / ln(edge/point) with the edge on the truth's side, so
    # |score| <= 1 exactly when the interval covers the truth.
    f = forecast(truth=2.2, point=2.0, low=1.8, high=2.2)
    assert f.score("loss_opt", "pi") == pytest.approx(1.0)
    below = forecast(truth=1.9, point=2.0, low=1.8, high=2.2)
    assert below.score("loss_opt", "pi") == pytest.approx(math.log(1.9 / 2) / math.log(1.8 / 2))
    assert f.to_dict()["pi_covered"]["loss_opt"] is True
    assert forecast(2.3, 2.0, 1.8, 2.2).to_dict()["pi_covered"]["loss_opt"] is False


def test_a_law_that_holds_keeps_its_interval():
    # Rule: backtests that land well inside their intervals (|score| ~ 0.3) give κ = 1 and a
    # miss per e-fold too small to bound them, so the calibrated interval is the law's own.
    tests = [forecast(2.0 * (1 + s), 2.0, 1.9, 2.1) for s in (0.01, -0.012, 0.008)]
    prediction = {"loss_opt": 2.0, "pi": {"loss_opt": [1.9, 2.1]}, "ci": {"loss_opt": [1.95, 2.05]}}
    cal = calibration(prediction, tests, 0.95)
    assert cal.factor["loss_opt"] == 1.0
    assert cal.rate["loss_opt"] == pytest.approx(
        np.quantile([0.01, 0.012, 0.008], 0.95) / math.log(2), rel=0.05
    )
    assert widened(prediction, cal, efolds=2.0)["loss_opt"] == pytest.approx([1.9, 2.1])


def test_a_law_that_misses_widens_its_interval_to_what_it_missed():
    # Rule: backtests missing by 2-3x their half-width give κ = z·RMS(score) > 1, and the miss
    # per e-fold, times the forecast's e-folds, bounds the half-width from below; the point
    # does not move.
    tests = [forecast(2.0 * 1.08, 2.0, 1.95, 2.05), forecast(2.0 * 1.12, 2.0, 1.95, 2.05)]
    prediction = {"loss_opt": 2.0, "pi": {"loss_opt": [1.9, 2.1]}, "ci": {"loss_opt": [1.95, 2.05]}}
    cal = calibration(prediction, tests, 0.95)
    scores = [math.log(1.08) / math.log(2.05 / 2), math.log(1.12) / math.log(2.05 / 2)]
    assert cal.factor["loss_opt"] == pytest.approx(
        1.96 * math.sqrt(np.mean(np.square(scores))), rel=1e-3
    )
    low, high = widened(prediction, cal, efolds=3.0)["loss_opt"]
    assert low < 1.9 and high > 2.1 and math.log(high / 2.0) == pytest.approx(math.log(2.0 / low))
    assert math.log(high / 2.0) >= 3.0 * cal.rate["loss_opt"] - 1e-12


# --- Approaches 2 and 3, end to end on isoFLOP tables -------------------------------------------


def ladder(alpha: float, beta: float, *, offset: float = 1.0, noise: float = 0.002) -> pd.DataFrame:
    """7 budgets ×3 apart, 9 sizes each from 1/10× to 10× (× `offset`) the optimum of
    L = 1.8 + 400/N^α + 2000/D^β with C = 6ND, multiplicative noise (seeded)."""
    rng = np.random.default_rng(7)
    rows = []
    for flops in 1e17 * 3.0 ** np.arange(7):
        sizes = np.geomspace(1e4, 1e13, 4000)
        best = sizes[np.argmin(400 / sizes**alpha + 2000 / (flops / 6 / sizes) ** beta)]
        for n in best * offset * np.geomspace(0.1, 10, 9):
            d = flops / (6 * n)
            loss = (1.8 + 400 / n**alpha + 2000 / d**beta) * math.exp(rng.normal(0, noise))
            rows.append({"flops": flops, "params": n, "tokens": d, "loss": loss})
    return pd.DataFrame(rows)


def fit_ladder(tmp_path, capsys, frame: pd.DataFrame, *args: str) -> dict:
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    return fit_json([str(path), "--kind", "all", "--bootstrap", "100", *args], capsys)


def test_backtests_hold_out_the_largest_budget_one_and_two_budgets_ahead(tmp_path, capsys):
    # Rule: with --predict-flops, each law is refitted without the largest budget and without
    # the two largest, each predicting the largest budget's own optimum; on a law that holds
    # (0.1 % noise, at which a budget's own N_opt scatters by about ±15 % on this grid) the
    # loss is predicted within 1 % and N_opt within 30 % by both laws.
    frame = ladder(0.34, 0.37, noise=0.001)
    fit = fit_ladder(tmp_path, capsys, frame, "--predict-flops", "1e22")
    largest = 1e17 * 3.0**6
    for law in ("isoflop", "parametric"):
        held = fit["backtest"][law]["held_out"]
        assert [t["ahead"] for t in held] == [1, 2]
        assert all(t["target"] == pytest.approx(largest) for t in held)
        assert held[0]["fitted_to"] == pytest.approx(largest / 3)
        assert held[1]["fitted_to"] == pytest.approx(largest / 9)
        for test in held:
            assert abs(test["error"]["loss_opt"]) < 0.01, (law, test)
            assert abs(test["error"]["n_opt"]) < 0.30, (law, test)
        assert fit["prediction"][law]["pi_law"]


def test_the_summary_says_how_the_backtests_did(tmp_path, capsys):
    # Rule: the text summary has a sentence per backtest of the largest budget, naming the
    # budget left out and the errors.
    from scalesweep.commands.fit import main

    path = tmp_path / "runs.csv"
    ladder(0.34, 0.37).to_csv(path, index=False)
    assert main(["fit", str(path), "--kind", "isoflop", "--predict-flops", "1e22"]) == 0
    out = capsys.readouterr().out
    assert (
        "backtest: fitted up to 2.43e+19 (without 7.29e+19), isoflop predicted 7.29e+19's " in out
    )
    assert "(without its 2 largest budgets)" in out and "optimal loss within" in out


def test_too_few_budgets_for_a_backtest_say_so(tmp_path, capsys):
    # Rule: two budgets leave nothing to hold out: the forecast stands, with a note instead.
    two = ladder(0.34, 0.37)
    two = two[two["flops"] <= 3e17]
    fit = fit_json(
        [str(_csv(tmp_path, two)), "--kind", "isoflop", "--predict-flops", "1e20"], capsys
    )
    assert "needs 3 budgets with their own optimum" in fit["backtest"]["note"]
    assert fit["prediction"]["isoflop"]["n_opt"] > 0


def _csv(tmp_path, frame: pd.DataFrame):
    path = tmp_path / "few.csv"
    frame.to_csv(path, index=False)
    return path


def test_an_asymmetric_loss_recommends_approach_3(tmp_path, capsys):
    # Rule: α = 0.25 ≠ β = 0.45 (α − β's bootstrap interval excludes 0): Approach 2 is biased
    # (Czech et al. 2026), so Approach 3 is recommended, saying why.
    fit = fit_ladder(tmp_path, capsys, ladder(0.25, 0.45))
    approaches = fit["approaches"]
    assert approaches["alpha_minus_beta"]["differ"] is True
    assert approaches["recommend"] == "approach3" and "α ≠ β" in approaches["why"]


def test_sizes_off_the_optimum_are_named_and_recommend_approach_3(tmp_path, capsys):
    # Rule: sizes from 0.018× to 1.8× the optimum put each minimum ln(1/0.18)/ln(100) ≈ 0.37
    # of the span above the centre, beyond a third: the budgets are named off-centre, the
    # isoflop notes say so, and Approach 3 is recommended.
    fit = fit_ladder(tmp_path, capsys, ladder(0.34, 0.36, offset=0.18, noise=0.001))
    approaches = fit["approaches"]
    assert len(approaches["off_centre"]) >= 4
    assert all(b["centre_offset"] > 1 / 3 for b in approaches["off_centre"])
    assert approaches["recommend"] == "approach3" and "off the centre" in approaches["why"]
    assert "no backtest to weigh" in approaches["why"]
    assert any("off the centre of their sizes" in n for n in fit["notes"])


def test_a_symmetric_centred_ladder_says_either_approach(tmp_path, capsys):
    # Rule: α = β and sizes centred on the optimum: no diagnostic fires and the two agree on
    # a, so either may be trusted.
    fit = fit_ladder(tmp_path, capsys, ladder(0.35, 0.35, noise=0.001))
    approaches = fit["approaches"]
    assert approaches["off_centre"] == [] and approaches["alpha_minus_beta"]["differ"] is False
    assert approaches["agree"]["a"] is True and approaches["recommend"] == "either"


def test_with_backtests_the_better_forecaster_is_trusted(tmp_path, capsys):
    # Rule: with --predict-flops both approaches are backtested and the one whose forecast of
    # the held-out largest budget's N_opt erred less is recommended, its error named.
    fit = fit_ladder(tmp_path, capsys, ladder(0.25, 0.45), "--predict-flops", "1e22")
    errors = {
        law: abs(fit["backtest"][law]["held_out"][0]["error"]["n_opt"])
        for law in ("isoflop", "parametric")
    }
    better = min(errors, key=errors.__getitem__)
    approaches = fit["approaches"]
    assert approaches["recommend"] == ("approach2" if better == "isoflop" else "approach3")
    assert f"{100 * errors[better]:.0f} % by {better}" in approaches["why"]
    assert "α ≠ β" in approaches["why"]
