"""Kaplan power laws and Step Law hyperparameter laws."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalesweep.errors import UserError
from scalesweep.fit.laws.hparams import fit_hparams
from scalesweep.fit.laws.power_law import fit_power_law, fit_power_laws
from scalesweep.fit.runs import apply_column_map

DATA = Path(__file__).parents[1] / "data"


@pytest.mark.parametrize(("x", "exponent"), [("params", -0.076), ("tokens", -0.095)])
def test_plain_power_law_recovers_kaplan_exponent(x, exponent):
    # Rule: L = k·X^p with 0.5 % noise recovers p within 0.005, with a CI containing it.
    rng = np.random.default_rng(0)
    values = np.geomspace(1e6, 1e10, 12)
    loss = 40 * values**exponent * np.exp(rng.normal(0, 5e-3, 12))
    fit = fit_power_law(pd.DataFrame({x: values, "loss": loss}), x)
    assert fit.exponent == pytest.approx(exponent, abs=0.005)
    assert fit.ci[0] < exponent < fit.ci[1]
    assert fit.r2 > 0.95


def test_power_law_fits_the_frontier_only():
    # Rule: several runs at one X count as their lowest loss (a bad LR does not bend the law).
    n = np.geomspace(1e6, 1e9, 6)
    good = pd.DataFrame({"params": n, "loss": 20 * n**-0.07})
    bad = good.assign(loss=good["loss"] + 1.0)
    fit = fit_power_law(pd.concat([good, bad]), "params")
    assert fit.exponent == pytest.approx(-0.07, abs=1e-9) and fit.n_points == 6


def test_saturating_power_law_recovers_irreducible_loss():
    # Rule: L = E + A·X^-α recovers E and α.
    c = np.geomspace(1e17, 1e22, 15)
    fit = fit_power_law(pd.DataFrame({"flops": c, "loss": 1.7 + 2e3 * c**-0.2}), "flops",
                        saturating=True)  # fmt: skip
    assert pytest.approx(1.7, rel=1e-3) == fit.E
    assert fit.exponent == pytest.approx(-0.2, rel=1e-3)


def test_power_laws_for_every_present_variable():
    # Rule: fit_power_laws fits L(N), L(D), L(C) for the columns present, and errors without.
    n = np.geomspace(1e6, 1e9, 5)
    fits = fit_power_laws(pd.DataFrame({"params": n, "flops": 6 * n * 1e9, "loss": n**-0.1}))
    assert {law.x for law in fits.laws} == {"params", "flops"}
    with pytest.raises(UserError, match="params"):
        fit_power_laws(pd.DataFrame({"loss": [1.0, 2.0]}))


def test_power_laws_fit_the_variables_they_can_and_name_the_rest():
    # Rule: an LR sweep at one token budget still has L(N): the variable that cannot be fitted
    # is named in a note, not a reason to skip every power law; none fittable is an error.
    n = np.geomspace(1e6, 1e9, 5)
    runs = pd.DataFrame({"params": n, "tokens": 1e9, "loss": n**-0.1})
    fits = fit_power_laws(runs)
    assert [law.x for law in fits.laws] == ["params"]
    assert fits.laws[0].exponent == pytest.approx(-0.1)
    assert any("L(tokens) not fitted" in note for note in fits.notes)
    with pytest.raises(UserError, match="`tokens`"):
        fit_power_laws(runs.assign(params=1e6))


def quickstart_rows(widths: tuple[int, ...], *, slope: float) -> list[dict]:
    """An LR × width × qk-layernorm sweep as the quickstart records it: qk-layernorm adds 64
    parameters (its gains), so each width is 2 sizes 0.02 % apart. Truth per qk setting: the
    best loss is c·(N/1e5)^slope (c = 3.0, or 2.9 with qk-layernorm), the LR a bowl around
    0.03 (+0.1 per decade²), no noise."""
    rows = []
    for width in widths:
        for qk in (False, True):
            params = 12 * 2 * width**2 + 2 * 256 * width + 64 * qk
            for lr in (0.003, 0.03, 0.3):
                loss = (3.0 - 0.1 * qk) * (params / 1e5) ** slope + 0.1 * np.log10(lr / 0.03) ** 2
                rows.append({"model.width": width, "model.qk_norm": qk, "optim.lr": lr,
                             "params": float(params), "final_val_loss": loss,
                             "flops": 6.0 * params * 3e5, "status": "completed"})  # fmt: skip
    return rows


def test_power_laws_group_by_intervention_and_merge_sizes_within_one_percent():
    # Rule: the groups are every varied run parameter but the LR and the seed (LR sensitivity's
    # rule) less those the variable fixes (the width, at each N): here qk-layernorm, so each
    # law is one qk setting over 4 widths and recovers its exponent, −0.1, exactly (no noise;
    # the frontier takes the bowl's bottom). Pooled (`group_by=()`), the 64 extra parameters
    # are merged into their width's size (within 1 %): 4 sizes, not 8, and the exponent is off
    # by the 0.02 % size shift only. Failed before the fix: one law over 8 "sizes".
    runs = apply_column_map(pd.DataFrame(quickstart_rows((64, 128, 256, 512), slope=-0.1)), {})
    fits = fit_power_laws(runs)
    by_params = [law for law in fits.laws if law.x == "params"]
    assert [law.group for law in by_params] == [{"model.qk_norm": False}, {"model.qk_norm": True}]
    for law in by_params:
        assert law.n_points == 4 and law.resolved
        assert law.exponent == pytest.approx(-0.1, abs=1e-9)
    assert fits.group_by == ("model.width", "model.qk_norm")
    (pooled, _) = fit_power_laws(runs, group_by=()).laws  # L(params), L(flops)
    assert pooled.n_points == 4 and pooled.exponent == pytest.approx(-0.1, abs=1e-4)


def test_two_widths_with_and_without_qk_layernorm_are_not_a_power_law(tmp_path, capsys):
    # Rule: the quickstart (2 widths × qk-layernorm) has 2 sizes per group, fewer than the 3 a
    # law needs: `--kind all` skips the power laws, saying why, and neither the report's Answer
    # nor the top of the text summary shows one. Failed before the fix: "power-law L(params):
    # exponent −0.042, CI [−0.127, 0.043]" headed the quickstart's Answer.
    from scalesweep.commands.fit import main

    path = tmp_path / "runs.csv"
    frame = pd.DataFrame(quickstart_rows((64, 128), slope=-0.05)).assign(init_loss=5.5)
    frame.to_csv(path, index=False)
    assert main(["fit", str(path), "--out", str(tmp_path / "out")]) == 0
    summary = capsys.readouterr().out
    assert not summary.splitlines()[1].startswith("power-law")
    assert "skipped power-law" in summary and "needs at least 3 distinct values" in summary
    answer = (tmp_path / "out" / "report.md").read_text().split("## Answer")[1].split("\n## ")[0]
    assert "Power laws" not in answer and "L(params)" not in answer


def test_a_law_whose_interval_holds_zero_is_not_an_answer():
    # Rule: a law whose exponent's interval holds 0 is not `resolved`: it is no answer (the
    # report's Answer leaves it out), and the summary and the details say "not resolved".
    # Here 4 sizes whose frontier losses go down, up and down (no trend): slope ≈ 0.
    from scalesweep.fit.kinds import KINDS

    n = np.geomspace(1e6, 1e9, 4)
    runs = pd.DataFrame({"params": n, "loss": [3.0, 3.3, 2.9, 3.2]})
    fits = fit_power_laws(runs)
    (law,) = fits.laws
    assert law.ci[0] < 0 < law.ci[1] and not law.resolved
    data = fits.to_dict()
    kind = KINDS["power-law"]
    assert kind.answer is not None and kind.answer(data) == []
    assert kind.summary(data)[0].startswith("power-law L(params): not resolved: exponent")
    assert any("**no**" in line for line in kind.section(data))


def test_hparams_recovers_known_step_law():
    # Rule: from LR × BS grids with loss minimised at η = 2·N^-0.7·D^0.3, B = 0.5·D^0.6,
    # both laws are recovered.
    rows = []
    for n in (1e8, 3e8, 1e9):
        for d in (1e10, 3e10, 1e11):
            lr_opt, bs_opt = 2 * n**-0.7 * d**0.3, 0.5 * d**0.6
            for lr in lr_opt * np.geomspace(0.25, 4, 9):
                for bs in bs_opt * np.geomspace(0.25, 4, 9):
                    loss = 2 + 0.05 * np.log(lr / lr_opt) ** 2 + 0.03 * np.log(bs / bs_opt) ** 2
                    rows.append((n, d, lr, bs, loss))
    fit = fit_hparams(pd.DataFrame(rows, columns=["params", "tokens", "lr", "bs", "loss"]))
    assert fit.lr_law.exponents["params"] == pytest.approx(-0.7, abs=1e-6)
    assert fit.lr_law.exponents["tokens"] == pytest.approx(0.3, abs=1e-6)
    assert fit.bs_law.exponents["tokens"] == pytest.approx(0.6, abs=1e-6)
    assert fit.lr_law.coef == pytest.approx(2.0, rel=1e-4)


@pytest.mark.parametrize(
    ("law", "name", "published"),
    [("lr_law", "params", -0.713), ("lr_law", "tokens", 0.307), ("bs_law", "tokens", 0.571)],
)
def test_step_law_data_interval_contains_published_exponent(law, name, published):
    # Rule: on the Step Law grid (smoothed loss, best run per cell), each published exponent
    # lies inside our 95 % interval.
    runs = apply_column_map(pd.read_csv(DATA / "steplaw_dense_lr_bs_loss.csv"),
                            {"loss": "smooth loss"})  # fmt: skip
    fit = getattr(fit_hparams(runs), law)
    low, high = fit.ci[name]
    assert low < published < high


def batch_size_sweep(*, planned: bool) -> pd.DataFrame:
    """LR × batch-size runs at planned (N, D) cells as a sweep records them: `planned.tokens`
    is the plan, `tokens` the trained tokens, ceil(D / (bs·seq))·bs·seq at seq 256, different
    for every batch size. Truth: η_opt = 1e-2·(N/1e6)^-0.5·(D/2e6)^0.2 and B_opt = 32 in
    every cell (γ = 0); loss = 3 + 0.05·ln²(η/η_opt) + 0.03·ln²(bs/32), no noise."""
    rows = []
    for n in (1e6, 3e6, 1e7):
        for d in (2e6, 8e6, 3.2e7):
            lr_opt = 1e-2 * (n / 1e6) ** -0.5 * (d / 2e6) ** 0.2
            for bs in (16, 32, 64, 128):
                trained = math.ceil(d / (bs * 256)) * bs * 256
                for lr in lr_opt * 2.0 ** np.arange(-2, 3):
                    loss = 3 + 0.05 * np.log(lr / lr_opt) ** 2 + 0.03 * np.log(bs / 32) ** 2
                    rows.append((n, d, trained, lr, bs, loss))
    frame = pd.DataFrame(rows, columns=["params", "planned.tokens", "tokens", "lr", "bs", "loss"])
    return frame if planned else frame.drop(columns="planned.tokens")


@pytest.mark.parametrize("planned", [True, False])
def test_hparams_cells_are_the_planned_budgets(planned):
    # Rule: a cell is the planned (N, D) (`planned.tokens`, else trained tokens within 10 %),
    # the optimum is joint over LR × batch size in it, so B_opt = 32 in all 9 cells, γ = 0 and
    # the LR law is exact. Failed before the fix (finding 1): cells keyed on trained tokens held
    # one batch size each (36 cells) and γ came out 0.26-ish instead of 0.
    fit = fit_hparams(batch_size_sweep(planned=planned))
    assert len(fit.cells) == 9 and (fit.cells["bs"] == 32).all()
    assert fit.bs_law.exponents["tokens"] == pytest.approx(0.0, abs=1e-9)
    assert fit.lr_law.exponents["params"] == pytest.approx(-0.5, abs=1e-9)
    # Without the plan, a cell's D is its trained tokens' geometric mean (≤ 1.6 % above plan).
    assert fit.lr_law.exponents["tokens"] == pytest.approx(0.2, abs=1e-9 if planned else 0.005)
    assert "planned.tokens" in fit.basis.runs if planned else "within 10 %" in fit.basis.runs


def test_hparams_refuses_runs_that_sweep_neither_lr_nor_batch_size():
    # Rule: an isoFLOP sweep at one LR and one batch size has no optimum to fit: a UserError
    # naming both values (with --kind all the fit is skipped saying so), not a "law" with
    # exponents of 1e-17.
    runs = batch_size_sweep(planned=True).query("bs == 32")
    runs = runs[np.isclose(runs["lr"], runs.groupby(["params", "tokens"])["lr"].transform("min"))]
    fixed = runs.assign(lr=1e-3)
    with pytest.raises(UserError, match=r"sweep `lr` or `bs`.*lr=0\.001 and bs=32"):
        fit_hparams(fixed)
    assert fit_hparams(runs).lr_law.exponents["params"] == pytest.approx(-0.5, abs=1e-9)
