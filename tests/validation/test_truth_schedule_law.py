"""The schedule laws recover a known truth through MLflow, as a sweep writes per-step curves.

Truth: tests/fit/schedule_truth.py, the LR-annealing law with L0 = 2, A = 4, α = 0.5,
C = 0.0007 (η in units of the peak LR 0.01), six schedules at two widths (constant, cosine,
linear decay, WSD 10 % linear, 20 % and 50 % 1-sqrt), 600 steps, val/loss every 10 steps with
0.2 % noise. `scalesweep fit --kind schedule-law` fits each width on constant + cosine.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalesweep import metrics as m
from scalesweep.commands.fit import main
from tests.fit import schedule_truth as truth

SWEEP = "schedule_truth"


@pytest.fixture(scope="module")
def sweep(store):
    trials = truth.trials("lr-annealing", widths=(64, 128))
    trials[-1]["status"] = m.DIVERGED  # width 128's WSD 50 %: left out, named
    store.write(SWEEP, trials)
    return store


def test_schedule_law_through_mlflow(sweep, tmp_path, capsys):
    # Rule: read back from MLflow, each width is fitted on constant + cosine, the law that made
    # the curves is chosen, every held-out run is predicted within 0.3 % of its noise-free
    # curve, a schedule never run is predicted, and the report shows the backtest.
    out = tmp_path / "fit"
    args = [SWEEP, "--tracking-uri", sweep.uri, "--kind", "schedule-law", "--json"]
    args += ["--fit-on", "schedule.type=constant", "--fit-on", "schedule.type=cosine"]
    args += ["--predict-schedule", "type=wsd,cooldown=0.3,shape=linear", "--out", str(out)]
    assert main(["fit", *args]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["law"] == "lr-annealing"
    assert fit["group_by"] == ["model.width"]
    assert any("w128-s5: diverged" in note for note in fit["notes"])
    assert [len(g["laws"]["lr-annealing"]["backtest"]) for g in fit["groups"]] == [4, 3]
    for group in fit["groups"]:
        assert group["fit_runs"] == [f"w{group['model.width']}-s0", f"w{group['model.width']}-s1"]
        for test in group["laws"]["lr-annealing"]["backtest"]:
            run = next(r for r in group["runs"] if r["run"] == test["run"])
            index = int(run["run"][-1])
            exact = truth.true_curve("lr-annealing", truth.SCHEDULES[index], np.array(run["steps"]))
            assert np.mean(np.abs(np.array(test["curve"]) / exact - 1)) < 0.003
        (predicted,) = group["predictions"]
        wsd = {"type": "wsd", "cooldown_fraction": 0.3, "cooldown_shape": "linear"}
        exact_final = truth.true_curve("lr-annealing", wsd, np.array([truth.STEPS]))[0]
        assert predicted["final"] == pytest.approx(exact_final, rel=0.003)
    report = (out / "report.md").read_text()
    assert "| lr-annealing (used) | w64-s2 | wsd cooldown=1 linear |" in report
    assert (out / "schedule_law.png").stat().st_size > 10_000


def test_a_bad_predicted_schedule_exits_2_naming_the_key(sweep, capsys):
    # Rule: a schedule key the config does not have is refused before anything is read.
    args = [SWEEP, "--tracking-uri", sweep.uri, "--kind", "schedule-law"]
    assert main(["fit", *args, "--predict-schedule", "type=wsd,cooldown_frac=0.2"]) == 2
    assert "wsd.cooldown_frac: Extra inputs are not permitted" in capsys.readouterr().err
