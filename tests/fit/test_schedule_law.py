"""The schedule laws (scalesweep/fit/laws/schedule/): known truths recovered from two runs,
the held-out runs predicted, and bad input refused or noted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.laws.schedule.fit import fit_schedule_law
from scalesweep.fit.laws.schedule.laws import LAWS, Curve
from scalesweep.fit.laws.schedule.predict import COOLDOWN_FRACTIONS
from scalesweep.fit.options import parse_schedule, schedule_model
from tests.fit import schedule_truth as truth

FIT_ON = ({"schedule.type": "constant"}, {"schedule.type": "cosine"})
TOLERANCE = {
    # law: {param: relative tolerance}; the multi-power law's β, γ and C trade off against
    # each other on two runs (many shapes fit their curves as well), so only the terms that
    # set the loss are held to the truth, and the predictions below to 0.3 %.
    "multi-power": {"L0": 0.01, "A": 0.05, "alpha": 0.05, "B": 0.35},
    "lr-annealing": {"L0": 0.01, "A": 0.05, "alpha": 0.05, "C": 0.05},
}


@pytest.fixture(scope="module", params=sorted(truth.TRUTH))
def recovered(request):
    law = request.param
    runs, curves = truth.tables(truth.trials(law))
    return law, fit_schedule_law(runs, curves, fit_on=FIT_ON, cooldown=True)


def test_the_law_that_made_the_curves_is_chosen_and_its_parameters_recovered(recovered):
    # Rule: fitted on constant + cosine with 0.2 % noise, the generating law predicts the
    # held-out runs better, and its loss-setting parameters come back within TOLERANCE.
    law, fit = recovered
    assert fit.law == law, fit.why
    shapes, scales = truth.TRUTH[law]
    expected = dict(zip(LAWS[law].scales, scales, strict=True)) | LAWS[law].to_params(shapes)
    got = fit.groups[0].fits[law].params
    for name, tolerance in TOLERANCE[law].items():
        assert got[name] == pytest.approx(expected[name], rel=tolerance), name


def test_held_out_curves_are_predicted_within_0_3_percent_of_the_truth(recovered):
    # Rule: every run not fitted (linear decay, WSD 10/20/50 %) is predicted from its LRs alone
    # within 0.3 % mean relative error of its noise-free curve; final losses within 1 % on
    # average and 2 % at worst: a cosine's slow decay says little of how fast the loss follows
    # a sharp LR drop (the multi-power law's C, β, γ), so a 10 % cooldown's end is the hardest.
    law, fit = recovered
    group = fit.groups[0]
    assert [r.name for r in group.fit_runs] == ["w64-s0", "w64-s1"]
    assert len(group.backtests[law]) == 4
    finals = []
    for run, test in zip(group.held_out, group.backtests[law], strict=True):
        exact = truth.true_curve(law, run.schedule, run.steps)
        assert np.mean(np.abs(np.array(test.curve) / exact - 1)) < 0.003, run.label
        finals.append(abs(test.predicted / exact[-1] - 1))
    assert max(finals) < 0.02 and np.mean(finals) < 0.01, finals


def test_best_cooldown_is_within_a_grid_step_of_the_best_run(recovered):
    # Rule: the scanned cooldown with the lowest predicted final loss lies within one step of
    # the runs' cooldown grid (0.1, 0.2, 0.5, 1) of the best run's, and its true final loss is
    # within 0.3 % of the best the scan could find.
    law, fit = recovered
    scan = fit.groups[0].cooldown
    assert scan is not None
    steps = np.array([truth.STEPS])
    shapes = ("linear", "1-sqrt", "cosine")
    exact = {
        (f, s): truth.true_curve(law, _wsd(f, s), steps)[0]
        for f in COOLDOWN_FRACTIONS
        for s in shapes
    }
    grid = [0.1, 0.2, 0.5, 1.0]
    best_run = min(grid, key=lambda f: min(exact[f, s] for s in ("linear", "1-sqrt")))
    i = grid.index(best_run)
    assert grid[max(i - 1, 0)] <= scan.fraction <= grid[min(i + 1, len(grid) - 1)]
    assert exact[scan.fraction, scan.shape] == pytest.approx(min(exact.values()), rel=0.003)


def _wsd(fraction, shape):
    return {"type": "wsd", "cooldown_fraction": fraction, "cooldown_shape": shape}


def test_the_default_fit_runs_are_the_two_most_different_schedules():
    # Rule: without --fit-on, a group is fitted on the pair whose LRs differ most: here the
    # constant LR and the linear decay to 0.
    runs, curves = truth.tables(truth.trials("lr-annealing", widths=(64, 128)))
    fit = fit_schedule_law(runs, curves)
    assert fit.group_by == ("model.width",)
    for group in fit.groups:
        assert [r.label for r in group.fit_runs] == ["constant", "wsd cooldown=1 linear"]


def test_a_cooldown_trunk_and_its_branches_are_one_group():
    # Rule: branches of a cooldown sweep (shorter runs, their own tokens and warmup in steps,
    # `branch.of`) join their trunk's group; by default the trunk and its earliest branch are
    # fitted, and the other branch is predicted within 0.3 % of its noise-free curve.
    rows, points = [], []
    for name, total in (("trunk", 600), ("b300", 300), ("b450", 450)):
        schedule = {"type": "wsd", "cooldown_fraction": 0.2, "warmup": 12.0}
        steps = np.arange(10, total + 1, 10)
        loss = truth.true_curve("lr-annealing", schedule, steps, total)
        rows.append(
            {"run_id": name, "trial_id": name, m.STATUS: m.COMPLETED, "optim.lr": truth.PEAK}
            | {f"schedule.{k}": v for k, v in schedule.items()}
            | {"train.tokens": total * 1024, m.STEPS: total, "model.width": 64}
            | ({m.BRANCH_OF: "trunk"} if name != "trunk" else {})
        )
        points += [
            {"run_id": name, "step": s, m.VAL_LOSS: v} for s, v in zip(steps, loss, strict=True)
        ]
    fit = fit_schedule_law(pd.DataFrame(rows), pd.DataFrame(points), law="lr-annealing")
    (group,) = fit.groups
    assert [r.name for r in group.fit_runs] == ["trunk", "b300"]
    (test,) = group.backtests["lr-annealing"]
    assert test.run == "b450" and abs(test.error) < 0.003


def test_runs_without_schedule_params_use_train_lr_logged_at_every_step():
    # Rule: a run whose table has no schedule.* params takes its LRs from `train/lr` logged at
    # every step (the value at step s is step s-1's LR), exactly the recomputed ones; logged
    # more sparsely, the run is left out, saying why.
    trials = truth.trials("lr-annealing")
    runs, curves = truth.tables(trials)
    recomputed = fit_schedule_law(runs, curves, law="lr-annealing")
    model = schedule_model({"warmup": truth.WARMUP, **truth.SCHEDULES[3]}, "s3")
    lrs = truth.lrs(model, truth.PEAK, truth.STEPS)
    logged = pd.DataFrame({"run_id": "w64-s3", "step": np.arange(1, truth.STEPS + 1), m.LR: lrs})
    runs.loc[runs.run_id == "w64-s3", "schedule.type"] = np.nan
    read = fit_schedule_law(runs, curves, lr_curves=logged, law="lr-annealing")
    (old,) = [t for t in recomputed.groups[0].backtests["lr-annealing"] if t.run == "w64-s3"]
    (new,) = [t for t in read.groups[0].backtests["lr-annealing"] if t.run == "w64-s3"]
    assert new.schedule == "logged train/lr" and new.predicted == pytest.approx(old.predicted)
    sparse = fit_schedule_law(runs, curves, lr_curves=logged[logged.step % 10 == 0])
    assert any("w64-s3" in n and "every step" in n for n in sparse.notes)


def test_law_areas_match_a_loop_over_steps():
    # Rule: the vectorised areas equal the sums of the papers' definitions.
    rng = np.random.default_rng(1)
    lrs = np.sort(rng.uniform(0.1, 1, 50))[::-1]
    curve = Curve(lrs, np.array([10, 49]))
    assert curve.s1 == pytest.approx([lrs[:10].sum(), lrs[:49].sum()])
    m_prev, s2 = 0.0, []
    for i in range(1, 50):
        m_prev = 0.999 * m_prev + (lrs[i - 1] - lrs[i])
        s2.append(m_prev)
    assert curve.s2 == pytest.approx([sum(s2[:9]), sum(s2[:48])])
    drops, etas, areas = curve.decay_terms
    assert drops[2] == pytest.approx(lrs[2] - lrs[3]) and etas[2] == lrs[3]
    assert areas[0, 2] == pytest.approx(lrs[3:10].sum()) and areas[0, 20] == 0


# --- bad input ---------------------------------------------------------------------------------


def _tables(**change):
    trials = truth.trials("lr-annealing")
    for t in trials:
        t.update(change.get(t["name"], {}))
    return truth.tables(trials)


def test_diverged_runs_non_finite_points_and_short_curves_are_left_out_and_named():
    # Rule: a diverged run, a curve with a NaN and a curve of a few points are not fitted or
    # predicted; each is named with the reason.
    runs, curves = _tables(**{"w64-s3": {"status": m.DIVERGED}})
    curves.loc[(curves.run_id == "w64-s4") & (curves.step == 300), m.VAL_LOSS] = np.nan
    curves = curves[(curves.run_id != "w64-s5") | (curves.step >= 570)]
    fit = fit_schedule_law(runs, curves)
    notes = " ".join(fit.notes)
    assert "w64-s3: diverged" in notes
    assert "w64-s4: non-finite validation loss at step 300" in notes
    assert "w64-s5: 4 validation-loss points after warmup" in notes
    assert [r.name for r in fit.groups[0].held_out] == ["w64-s1"]


def test_finals_only_and_a_group_of_one_run_are_refused():
    # Rule: the laws need curves; a group with one run has nothing to fit on.
    runs, curves = _tables()
    with pytest.raises(UserError, match="needs per-step val/loss curves"):
        fit_schedule_law(runs, None)
    with pytest.raises(UserError, match=r"has one run \(w64-s0\)"):
        fit_schedule_law(runs.iloc[:1], curves)


def test_groups_under_one_schedule_are_not_fitted():
    # Rule: runs that differ only in what the law does not model (here the seed) leave the
    # law nothing to predict; a table of such groups is refused, naming them.
    runs, curves = _tables()
    same = runs[runs["schedule.type"] == "constant"]
    twin = same.assign(run_id="twin", trial_id="twin")
    twin_curve = curves[curves.run_id == "w64-s0"].assign(run_id="twin")
    with pytest.raises(UserError, match=r"one LR schedule \(w64-s0, twin\)"):
        fit_schedule_law(pd.concat([same, twin]), pd.concat([curves, twin_curve]))


def test_a_schedule_the_laws_cannot_express_is_named():
    runs, curves = _tables()
    runs.loc[runs.trial_id == "w64-s2", "schedule.type"] = "rex"
    fit = fit_schedule_law(runs, curves)
    assert any("w64-s2" in n and "cannot express" in n for n in fit.notes)


def test_fit_on_a_column_the_table_lacks_is_refused():
    runs, curves = _tables()
    with pytest.raises(UserError, match=r"--fit-on: \['schedule.kind'\] are not columns"):
        fit_schedule_law(runs, curves, fit_on=({"schedule.kind": "constant"},))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=wsd,cooldown=2", "cooldown_fraction: Input should be less than or equal to 1"),
        ("type=wsd,shap=linear", "wsd.shap: Extra inputs are not permitted"),
        ("type=cosine,cooldown=0.2", "cosine.cooldown_fraction: Extra inputs"),
        ("cooldown=0.2", "`type` must be given"),
        ("type=wsd,0.2", "each item must be KEY=VALUE"),
    ],
)
def test_predict_schedule_is_checked_by_the_config_schedule_model(text, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        parse_schedule(text)


def test_predict_schedule_takes_the_short_keys():
    assert parse_schedule("type=wsd,cooldown=0.2,shape=1-sqrt") == {
        "type": "wsd",
        "cooldown_fraction": 0.2,
        "cooldown_shape": "1-sqrt",
    }


def test_runs_table_without_run_ids_is_refused():
    runs, curves = _tables()
    with pytest.raises(UserError, match="run_id"):
        fit_schedule_law(pd.DataFrame(runs.drop(columns="run_id")), curves)
