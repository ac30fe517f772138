"""Chinchilla Approaches 2 and 3 and the Step Law fits recover a known law through MLflow.

Truth: L(N, D) = E + A/N^α + B/D^β with E = 1.8, A = 400, α = 0.34, B = 2000, β = 0.37 (so
N_opt ∝ C^a with a = β/(α+β) = 0.5211), N the non-embedding parameters and C = 6·N·D counted
as Kaplan does (`train.flop_counting: kaplan`); each run's loss also carries an LR bowl
0.05·ln²(η/η*(N)) around η*(N) = 3e-3·(N/1e6)^-0.5 (and, in the Step Law sweep, a batch-size
bowl), and multiplicative noise of 0.2 % (seeded). Runs are written with the exact calls a
sweep makes (dotted params as strings, planned vs trained tokens, status tags, a diverged run
without a final loss, a run still running), read back by `scalesweep fit` from MLflow.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

E, A, ALPHA, B, BETA = 1.8, 400.0, 0.34, 2000.0, 0.37
A_TRUE = BETA / (ALPHA + BETA)
VOCAB, SEQ, HEAD = 8192, 256, 16
NOISE = 2e-3


def law(n: float, d: float) -> float:
    return E + A / n**ALPHA + B / d**BETA


def n_opt_true(flops: float) -> float:
    """Hoffmann et al. eq. 4 with C = 6·N·D."""
    g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    return g * (flops / 6) ** A_TRUE


def lr_opt(n: float) -> float:
    return 3e-3 * (n / 1e6) ** -0.5


def trial(width: int, lr: float, bs: int, planned: float, loss: float, **extra) -> dict:
    """One child run as the sweep records it (Kaplan FLOP counting, depth 4)."""
    nonembed = 12 * 4 * width**2
    trained = math.ceil(planned / (bs * SEQ)) * bs * SEQ
    status = extra.pop("status", "completed")
    return {
        "params": {
            "model.width": width,
            "model.depth": 4,
            "optim.lr": lr,
            "train.batch_size": bs,
            "train.tokens": round(planned),
            "train.flop_counting": "kaplan",
            "planned.tokens": round(planned),
            **extra,
        },
        "summary": {
            "init_loss": 9.0,
            "final_val_loss": loss if status == "completed" else None,
            "params": nonembed + 2 * VOCAB * width,
            "params_nonembed": nonembed,
            "tokens": trained,
            "flops": 6.0 * nonembed * trained,
        },
        "status": status,
    }


BUDGETS = (1e14, 1e15, 1e16, 1e17)


def isoflop_trials() -> list[dict]:
    """4 budgets × 6 widths around N_opt(C), each at η*(N) and at 4·η*(N) (an off-optimal
    LR the fits must not use), a diverged run and a run still running."""
    rng = np.random.default_rng(11)
    trials = []
    for c in BUDGETS:
        for factor in np.geomspace(1 / 8, 8, 6):
            width = max(HEAD, HEAD * round(math.sqrt(n_opt_true(c) * factor / 48) / HEAD))
            n = 48 * width**2
            d = c / (6 * n)
            for lr in (lr_opt(n), 4 * lr_opt(n)):
                loss = (law(n, d) + 0.05 * math.log(lr / lr_opt(n)) ** 2) * math.exp(
                    rng.normal(0, NOISE)
                )
                trials.append(trial(width, lr, 32, d, loss, **{"planned.flops": c}))
    n = 48 * 256**2
    for status in ("diverged", "running"):
        trials.append(trial(256, 0.3, 32, 1e16 / (6 * n), float("nan"), status=status,
                            **{"planned.flops": 1e16}))  # fmt: skip
    return trials


@pytest.fixture(scope="module")
def isoflop_sweep(store) -> str:
    store.write("chinchilla-truth", isoflop_trials())
    return "chinchilla-truth"


def test_approach_2_recovers_a_within_its_interval(isoflop_sweep, fit_json):
    # Truth a = 0.5211; tolerance: the reported 95 % interval, and 0.03. N is the
    # non-embedding count (kaplan); the diverged and running runs are set aside and named.
    fit = fit_json(isoflop_sweep, "--kind", "isoflop")
    assert fit["a_ci"][0] < A_TRUE < fit["a_ci"][1]
    assert fit["a"] == pytest.approx(A_TRUE, abs=0.03)
    assert "params_nonembed" in fit["basis"]["n"] and fit["basis"]["flop_counting"] == "kaplan"
    assert "planned.flops" in fit["basis"]["runs"]
    assert any("status diverged" in n for n in fit["notes"])
    assert any("status running" in n for n in fit["notes"])


def asymptotic_widths() -> dict[str, float]:
    """95 % interval widths of α, β and a that 0.2 % noise allows on the 24 cells: least
    squares on ln L at the truth, cov = σ²·(JᵀJ)⁻¹ with J = ∂ln L/∂(E, A, α, B, β), a by the
    delta method (about 0.0075, 0.0075 and 0.0056)."""
    cells = {(t["summary"]["params_nonembed"], t["params"]["planned.tokens"])
             for t in isoflop_trials() if t["status"] == "completed"}  # fmt: skip
    n, d = (np.array(v, float) for v in zip(*cells, strict=True))
    theta = np.array([E, A, ALPHA, B, BETA])

    def log_law(t: np.ndarray) -> np.ndarray:
        return np.log(t[0] + t[1] / n ** t[2] + t[3] / d ** t[4])

    steps = np.diag(1e-6 * np.maximum(np.abs(theta), 1.0))
    jac = np.column_stack([(log_law(theta + h) - log_law(theta - h)) / (2 * h[i])
                           for i, h in enumerate(steps)])  # fmt: skip
    cov = NOISE**2 * np.linalg.inv(jac.T @ jac)
    grad_a = np.array([0, 0, -BETA, 0, ALPHA]) / (ALPHA + BETA) ** 2
    se = {"alpha": cov[2, 2] ** 0.5, "beta": cov[4, 4] ** 0.5, "a": (grad_a @ cov @ grad_a) ** 0.5}
    return {k: 2 * 1.96 * v for k, v in se.items()}


def test_approach_3_recovers_the_exponents_within_their_intervals(isoflop_sweep, fit_json):
    # Truth α = 0.34, β = 0.37, a = 0.5211. The 95 % bootstrap interval (100 resamples) holds
    # each, and is no wider than twice the width that the 0.2 % noise allows a least-squares
    # fit of the 24 cells (`asymptotic_widths`): the Huber loss (less efficient than least
    # squares on Gaussian noise) and 100 percentile resamples widen it by 1.14-1.27× here
    # (`python benchmarks/truth_tolerances.py`), and
    # an interval right only because it is wide fails. The fit uses the best run of each of the
    # 24 (N, D) cells, not the 4·η* runs.
    fit = fit_json(isoflop_sweep, "--kind", "parametric", "--bootstrap", "100")
    assert fit["n_points"] == 24 and "best run per (N, D) cell" in fit["basis"]["runs"]
    widths = asymptotic_widths()
    for name, truth in (("alpha", ALPHA), ("beta", BETA), ("a", A_TRUE)):
        low, high = fit["ci"][name]
        assert low < truth < high, (name, low, truth, high)
        assert high - low < 2 * widths[name], (name, high - low, widths[name])


def test_predictions_spend_the_same_c(isoflop_sweep, fit_json):
    # Truth N_opt at C = 1e18 (Kaplan C, 10× the largest budget): 0.0918·(C/6)^0.5211.
    # Tolerance: both answers within 15 % of it and of each other, both inside their intervals
    # (the isoFLOP prediction interval; the parametric bootstrap interval), both in kaplan C.
    fit = fit_json(isoflop_sweep, "--kind", "all", "--predict-flops", "1e18",
                   "--bootstrap", "100")  # fmt: skip
    prediction = fit["prediction"]
    truth = n_opt_true(1e18)
    assert prediction["flop_counting"] == "kaplan"
    iso, par = prediction["isoflop"], prediction["parametric"]
    for answer, band in ((iso, iso["pi"]["n_opt"]), (par, par["ci"]["n_opt"])):
        assert answer["flop_counting"] == "kaplan"
        assert answer["n_opt"] == pytest.approx(truth, rel=0.15)
        assert band[0] < truth < band[1]
    assert iso["n_opt"] == pytest.approx(par["n_opt"], rel=0.15)
    assert 6 * par["n_opt"] * par["d_opt"] == pytest.approx(1e18, rel=1e-6)


# --- Step Law: η_opt(N, D) and B_opt(D) -------------------------------------------------------


def bs_opt(d: float) -> float:
    return 24.0 * (d / 1e8) ** 0.5


def lr_opt_nd(n: float, d: float) -> float:
    return 3e-3 * (n / 1e6) ** -0.5 * (d / 1e8) ** 0.2


def nearest(grid: np.ndarray, value: float, k: int = 3) -> np.ndarray:
    return grid[np.argsort(np.abs(np.log(grid / value)))[:k]]


STEP_LAW_TOKENS = (1e8, 1e9, 1e10)


def hparams_trials(seed: int = 12) -> list[dict]:
    """2 widths × 3 planned token budgets a decade apart; in each cell the 3 LRs (of the
    sweep's grid 1e-4·2^(i/2)) and 3 batch sizes (of 2^(j/2), rounded) nearest the truth."""
    rng = np.random.default_rng(seed)
    lr_grid = 1e-4 * 2.0 ** (np.arange(24) / 2)
    bs_grid = np.unique(np.round(2.0 ** (np.arange(6, 20) / 2)))
    trials = []
    for width in (128, 512):
        n = 48 * width**2
        for d in STEP_LAW_TOKENS:
            for lr in nearest(lr_grid, lr_opt_nd(n, d)):
                for bs in nearest(bs_grid, bs_opt(d)):
                    bowl = 0.1 * math.log(lr / lr_opt_nd(n, d)) ** 2
                    bowl += 0.1 * math.log(bs / bs_opt(d)) ** 2
                    loss = (law(n, d) + bowl) * math.exp(rng.normal(0, NOISE))
                    trials.append(trial(width, float(lr), int(bs), d, loss))
    return trials


def test_step_law_recovers_its_exponents_within_their_intervals(store, fit_json):
    # Truth η_opt = 3e-3·(N/1e6)^-0.5·(D/1e8)^0.2, B_opt = 24·(D/1e8)^0.5 sequences; LR and
    # batch size are read off grids (steps ×√2) and the best of 9 noisy runs per cell may miss
    # the truth by more than a half step. Tolerance: the 95 % intervals, and 3 standard
    # deviations of each exponent over seeds 0-299 of this generator (`python
    # benchmarks/truth_tolerances.py`: 0.056 for η_opt's N exponent, 0.040 for its D exponent,
    # 0.039 for B_opt's), so a D exponent of −0.05 for the truth 0.2 fails. Over 1e8–9e8
    # tokens (the budgets before) the D exponents' spread was 0.09: a decade per budget
    # resolves them. Cells are the planned (N, D): trained tokens differ for every batch size.
    store.write("steplaw-truth", hparams_trials())
    fit = fit_json("steplaw-truth", "--kind", "hparams")
    assert fit["n_cells"] == 6 and "planned.tokens" in fit["basis"]["runs"]
    checks = [
        ("lr_law", "params", -0.5, 0.056),
        ("lr_law", "tokens", 0.2, 0.040),
        ("bs_law", "tokens", 0.5, 0.039),
    ]
    for law_name, variable, truth, spread in checks:
        estimate = fit[law_name]["exponents"][variable]
        low, high = fit[law_name]["ci"][variable]
        assert low < truth < high, (law_name, variable, low, truth, high)
        assert estimate == pytest.approx(truth, abs=3 * spread), (law_name, variable)


# --- Approach 2's bootstrap: the loss noise, not the sizes ----------------------------------


def ladder(noise: float, seed: int) -> pd.DataFrame:
    """6 budgets ×3 apart, 9 sizes from 1/10× to 10× each budget's optimum (C = 6ND), the
    multiplicative noise seeded."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in 1e17 * 3.0 ** np.arange(6):
        for n in n_opt_true(c) * np.geomspace(0.1, 10, 9):
            d = c / (6 * n)
            rows.append((c, n, d, law(n, d) * math.exp(rng.normal(0, noise))))
    return pd.DataFrame(rows, columns=["flops", "params", "tokens", "loss"])


def test_isoflop_bootstrap_of_the_loss_noise_covers_the_true_exponent():
    # Truth a = β/(α+β) = 0.5211 (noise-free, this grid's Akima answer is 0.5214). Over 12
    # seeded ladders at 0.3 % noise, the 90 % interval from 40 resamples of the loss noise
    # holds the truth in >= 9 (nominal 10.8; P(< 9) < 3 % for a calibrated interval) and is no
    # wider than 4x the OLS interval over the budgets' minima (measured: 40 of 40 seeds, 0.82x).
    from scalesweep.fit.laws.isoflop.approach2 import fit_isoflop

    covered, ratios = 0, []
    for seed in range(12):
        runs = ladder(0.003, seed)
        fit = fit_isoflop(runs, level=0.9, n_bootstrap=40, rng=np.random.default_rng(seed))
        ols = fit_isoflop(runs, level=0.9)
        covered += fit.a_ci[0] < A_TRUE < fit.a_ci[1]
        ratios.append((fit.a_ci[1] - fit.a_ci[0]) / (ols.a_ci[1] - ols.a_ci[0]))
    assert covered >= 9 and float(np.median(ratios)) < 4
