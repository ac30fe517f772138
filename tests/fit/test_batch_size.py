"""The critical batch size B_crit(L): contours read from curves, per-level knees, the power law
with its jackknife interval, end to end through MLflow, and the ready sweep.

Known truth (tests/fit/kaplan_truth.py): Kaplan et al.'s L(N, S_min) and B_crit(L) =
2·10^8·L^(−1/0.21) tokens through the McCandlish trade-off, 3 sizes × 9 batch sizes (16 Ki to
4 Mi tokens) × 2 LRs (one 1.5× slower), 30 log-spaced evaluations per run, loss noise 0.3%.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalesweep import metrics as m
from scalesweep.commands.fit import main
from scalesweep.experiment import load_experiment
from scalesweep.fit.laws.batch.contours import reach_table, steps_to_reach
from scalesweep.fit.laws.batch.critical import MIN_BATCH_SIZES, fit_critical_batch, fit_level
from scalesweep.fit.laws.batch.kaplan import fit_kaplan_ns
from scalesweep.sweep.plan import plan
from tests.fit import kaplan_truth
from tests.fit.kaplan_truth import BATCH_SEQUENCES, KAPLAN, SEQ_LEN, frames, trials
from tests.sweep_runs import fit_json

truth_sweep = kaplan_truth.truth_sweep  # the session fixture: the known-truth sweep in MLflow

REPO = Path(__file__).resolve().parents[2]


def test_recovers_b_star_and_alpha_b_through_mlflow(truth_sweep, capsys):
    # Rule: from curves written to MLflow as a sweep writes them, the fit's intervals hold the
    # true B* = 2e8 tokens and α_B = 0.21; B_crit at L = 4 (truth 2.72e5) lies in its predicted
    # interval; at least 85% of the used levels' own intervals hold their true B_crit.
    uri, name = truth_sweep
    fit = fit_json(
        [name, "--tracking-uri", uri, "--kind", "critical-batch", "--predict-at", "L=4"], capsys
    )
    assert fit["b_star_ci"][0] < KAPLAN.b_star < fit["b_star_ci"][1]
    assert fit["alpha_b_ci"][0] < KAPLAN.alpha_b < fit["alpha_b_ci"][1]
    assert fit["b_star_ci"][1] / fit["b_star_ci"][0] < 1.5  # informative, not just wide
    assert fit["interval"] == f"jackknife over {len(BATCH_SEQUENCES)} batch sizes"
    (at4,) = fit["predictions"]
    assert at4["ci"][0] < KAPLAN.b_crit(4.0) < at4["ci"][1]
    used = [lv for lv in fit["levels"] if lv["used"]]
    assert len(used) >= 20 and len({json.dumps(lv["group"]) for lv in used}) == 3
    inside = [lv["b_crit_ci"][0] < KAPLAN.b_crit(lv["loss"]) < lv["b_crit_ci"][1] for lv in used]
    assert np.mean(inside) >= 0.85


def test_out_writes_contour_and_law_plots_and_logs_the_headline(
    truth_sweep,
    tmp_path,
    capsys,
    monkeypatch,
):
    # Rule: --out writes the contour plot (knees) and the B_crit(L) plot, embeds them in the
    # report's section, and logs B* and α_B as metrics of the sweep's parent run.
    from mlflow.tracking import MlflowClient

    from scalesweep import tracking

    monkeypatch.chdir(tmp_path)
    uri, name = truth_sweep
    out = tmp_path / "out"
    fit_json([name, "--tracking-uri", uri, "--kind", "critical-batch", "--out", str(out)], capsys)
    report = (out / "report.md").read_text()
    assert "## Critical batch size" in report
    for plot in ("critical_batch_contours.png", "critical_batch_law.png"):
        assert (out / plot).stat().st_size > 10_000 and f"]({plot})" in report
    parent = tracking.latest_parent_run_id(name, uri)
    logged = MlflowClient(uri).get_run(parent).data.metrics
    assert logged["fit.critical_batch.alpha_b"] == pytest.approx(KAPLAN.alpha_b, rel=0.05)


def test_a_curves_file_gives_the_same_fit_as_mlflow(truth_sweep, tmp_path, capsys):
    # Rule: a runs CSV plus --curves CSV (run_id, step, val/loss) is fitted exactly like the
    # same sweep read from MLflow.
    uri, name = truth_sweep
    from_mlflow = fit_json([name, "--tracking-uri", uri, "--kind", "critical-batch"], capsys)
    runs, curves = frames(trials())
    runs.to_csv(tmp_path / "runs.csv", index=False)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    from_files = fit_json(
        [
            str(tmp_path / "runs.csv"),
            "--curves",
            str(tmp_path / "curves.csv"),
            "--kind",
            "critical-batch",
        ],
        capsys,
    )
    assert from_files["b_star"] == pytest.approx(from_mlflow["b_star"], rel=1e-9)
    assert from_files["alpha_b_ci"] == pytest.approx(from_mlflow["alpha_b_ci"], rel=1e-9)


# --- contours ----------------------------------------------------------------------------------


def test_steps_to_reach_interpolates_a_power_law_curve_in_log_step():
    # Rule: on an exact L = 10·S^-0.5 curve logged at powers of 2, the step that reaches
    # L = 1 (truth S = 100) comes out within 1e-9 (log-log interpolation is exact here).
    steps = 2.0 ** np.arange(1, 14)
    assert steps_to_reach(steps, 10 * steps**-0.5, np.array([1.0]))[0] == pytest.approx(
        100, rel=1e-9
    )


def test_steps_to_reach_counts_the_first_crossing_of_the_monotone_fit():
    # Rule: a noisy curve that dips below a level and comes back is read through its decreasing
    # isotonic fit: the dip at step 20 (3.0) pools with step 40 (3.4) into one block of 3.2 > 3.1
    # centred at step √(20·40) ≈ 28.3, so the level 3.1 is reached between 28.3 and 80, not at
    # the dip.
    steps, losses = np.array([10.0, 20, 40, 80]), np.array([4.0, 3.0, 3.4, 2.9])
    (reached,) = steps_to_reach(steps, losses, np.array([3.1]))
    assert np.sqrt(20 * 40) < reached < 80


def test_steps_to_reach_is_nan_when_unknown():
    # Rule: a level never reached, or reached by the first logged point already, has no step.
    out = steps_to_reach(np.array([10.0, 20]), np.array([3.0, 2.0]), np.array([1.0, 3.5]))
    assert np.isnan(out).all()


def test_reach_table_takes_the_fastest_run_of_each_batch_size():
    # Rule: of two runs at one batch size (two LRs), the level's steps are the fewer.
    points = pd.DataFrame(
        {
            "run_id": ["fast"] * 3 + ["slow"] * 3,
            "batch": 64.0,
            "step": [10.0, 100, 1000] * 2,
            "loss": [4.0, 2.0, 1.0, 4.0, 3.0, 2.0],
        }
    )
    table = reach_table(points, np.array([2.5]), ())
    assert list(table["run_id"]) == ["fast"] and table["steps"].iloc[0] < 100


# --- one contour -------------------------------------------------------------------------------


def test_fit_level_recovers_an_exact_contour():
    # Rule: S(B) = S_min + E_min/B with S_min = 1000, E_min = 1e8 (knee 1e5) at 6 batch sizes
    # gives S_min, E_min and B_crit back to 1e-6.
    batch = np.geomspace(1e4, 1e6, 6)
    fit = fit_level({}, 3.0, batch, 1000 + 1e8 / batch, 0.95)
    assert fit.used and fit.b_crit == pytest.approx(1e5, rel=1e-6)
    assert (fit.s_min, fit.e_min) == pytest.approx((1000, 1e8), rel=1e-6)


def test_fit_level_refuses_a_knee_outside_the_batch_sizes_and_too_few_sizes():
    # Rule: a knee at 1e7 tokens, above every batch size tried (≤ 1e6), is fitted but not used,
    # with the reason; a level reached by fewer than 3 batch sizes is not fitted.
    batch = np.geomspace(1e4, 1e6, 6)
    outside = fit_level({}, 3.0, batch, 10 + 1e8 / batch, 0.95)
    assert not outside.used and "outside the batch sizes" in outside.reason
    few = fit_level({}, 3.0, batch[:2], 1000 + 1e8 / batch[:2], 0.95)
    assert few.b_crit is None and f"fewer than {MIN_BATCH_SIZES}" in few.reason


# --- what the fit says when it cannot ----------------------------------------------------------


def test_levels_reached_by_too_few_batch_sizes_are_named_in_the_notes():
    # Rule: when only the two smallest batch sizes train long enough to reach the lowest losses,
    # the levels they alone reach are listed in a note (not fitted), and the fit still runs.
    runs, curves = frames(trials())
    short = runs["train.batch_size"] > 32
    cut = dict(zip(runs["run_id"], np.where(short, runs["steps"] * 0.02, np.inf), strict=True))
    curves = curves[curves["step"] <= curves["run_id"].map(cut)]
    fit = fit_critical_batch(runs, curves)
    note = next(n for n in fit.notes if "fewer than 3 batch sizes" in n)
    assert "params_nonembed=1e+06" in note and "L = " in note
    assert any(len(lv.batch) == 2 for lv in fit.levels)


def test_three_batch_sizes_fall_back_to_the_wls_interval_with_a_note():
    # Rule: with 3 batch sizes none can be left out; the interval is the WLS one, said so.
    runs, curves = frames(trials())
    keep = runs["run_id"][runs["train.batch_size"].isin([64, 256, 1024])]
    fit = fit_critical_batch(runs[runs["run_id"].isin(keep)], curves[curves["run_id"].isin(keep)])
    assert fit.interval.startswith("WLS") and any("no jackknife" in n for n in fit.notes)


def test_a_fastest_lr_at_the_edge_of_the_lr_grid_is_noted():
    # Rule: as the Step Law fit does for its cells, a note names the batch sizes whose fastest
    # run has the smallest or largest LR that batch size tried (the best LR may lie beyond the
    # grid). In the truth sweep the best LR, 3e-3, is the largest of (1e-3, 3e-3) at all 27
    # (size, batch size) pairs; with a third, slower LR of 1e-2 it is interior: no note.
    # Failed before the fix: no note.
    runs, curves = frames(trials())
    fit = fit_critical_batch(runs, curves)
    (note,) = [n for n in fit.notes if "edge of the LRs" in n]
    assert "at 27 of 27" in note and "the largest at B = 1.64e+04" in note
    slow = runs[runs["optim.lr"] == 1e-3]
    renamed = {r: r.replace("lr0.001", "lr0.01") for r in slow["run_id"]}
    extra = slow.assign(**{"optim.lr": 1e-2, "run_id": slow["run_id"].map(renamed)})
    extra_curves = curves[curves["run_id"].isin(renamed)].replace({"run_id": renamed})
    three = fit_critical_batch(pd.concat([runs, extra]), pd.concat([curves, extra_curves]))
    assert not any("edge of the LRs" in n for n in three.notes)


def test_only_batch_sizes_in_the_law_count_in_its_degrees_of_freedom():
    # Rule: a batch size whose runs reached no loss level (here 8 Ki tokens, runs that never
    # learned: flat at ℓ0) is not left out by the jackknife, not in the degrees of freedom and
    # not in the "jackknife over N batch sizes" label, and a note names it; kaplan-ns's
    # jackknife also counts 9. Failed before the fix: "over 10 batch sizes", 9 dof.
    runs, curves = frames(trials())
    flat = runs[runs["train.batch_size"] == 16].assign(**{"train.batch_size": 8})
    flat = flat.assign(run_id="flat-" + flat["run_id"], steps=flat["steps"] * 2)
    flat_curves = pd.DataFrame(
        [{"run_id": r, "step": step, m.VAL_LOSS: 11.0} for r in flat["run_id"]
         for step in (0, 10, 100, 1000)]
    )  # fmt: skip
    both = pd.concat([runs, flat]), pd.concat([curves, flat_curves])
    fit = fit_critical_batch(*both)
    assert len(fit.batch_sizes) == 10
    assert fit.interval == "jackknife over 9 batch sizes" and fit.dof == 8
    assert len(fit.replicates) == 9
    assert any("batch size(s) 8192 (tokens per step) reached no loss level" in n for n in fit.notes)
    ns = fit_kaplan_ns(*both, critical=fit)
    assert ns.interval.startswith("jackknife over 9 batch sizes") and ns.dof == 8


def test_kaplan_ns_uses_b_crit_only_between_the_laws_levels():
    # Rule: S_min = S/(1 + B_crit(L)/B) needs B_crit(L), measured only between the lowest and
    # highest loss level of the critical-batch law: points below the lowest (late in the longest
    # runs) are left out like those above the highest, and a note counts both. Failed before
    # the fix: 30 points below L = 3.07 were fitted with an extrapolated B_crit.
    runs, curves = frames(trials())
    fit = fit_kaplan_ns(runs, curves)
    cb = fit.critical_batch
    assert cb is not None
    used = [lv.loss for lv in cb.levels if lv.used]
    assert fit.points["loss"].min() >= min(used) and fit.points["loss"].max() <= max(used)
    assert any(f"below L={min(used):.4g}" in n for n in fit.notes)


@pytest.mark.parametrize(
    ("keep", "args", "needle"),
    [
        # two batch sizes cannot show a trade-off
        (
            lambda runs: runs["train.batch_size"].isin([16, 32]),
            ["--curves"],
            "3 or more batch sizes",
        ),
        # a file source without --curves has no curves
        (lambda runs: runs["run_id"] == runs["run_id"], [], "--curves FILE"),
    ],
)
def test_unfittable_input_exits_2_saying_why(tmp_path, capsys, keep, args, needle):
    # Rule: a sweep the method cannot use is exit code 2 with the reason, no traceback.
    runs, curves = frames(trials())
    runs[keep(runs)].to_csv(tmp_path / "runs.csv", index=False)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    extra = [*args, str(tmp_path / "curves.csv")] if args else []
    code = main(["fit", str(tmp_path / "runs.csv"), "--kind", "critical-batch", *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err


def test_a_run_without_its_batch_names_the_columns(tmp_path, capsys):
    # Rule: without `tokens`/`steps` or `train.batch_size`/`model.seq_len` the error names them.
    runs, curves = frames(trials())
    runs.drop(columns=[m.TRAINED_TOKENS, m.STEPS, "model.seq_len"]).to_csv(tmp_path / "r.csv")
    curves.to_csv(tmp_path / "c.csv", index=False)
    code = main(
        [
            "fit",
            str(tmp_path / "r.csv"),
            "--curves",
            str(tmp_path / "c.csv"),
            "--kind",
            "critical-batch",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'train.batch_size', 'model.seq_len'" in err and "'steps'" in err


@pytest.mark.parametrize("point", ["N=1e9", "L=abc", "L=-1", "L=3,S=4"])
def test_a_bad_prediction_point_exits_2(capsys, point):
    # Rule: --predict-at takes L=, N=,S= or N=,D= with positive numbers; anything else is exit 2.
    code = main(["fit", "missing.csv", "--predict-at", point])
    err = capsys.readouterr().err
    assert code == 2 and "--predict-at" in err


# --- the ready sweep ---------------------------------------------------------------------------

SWEEP = REPO / "search_spaces" / "batch_size.yaml"


def test_the_ready_sweep_crosses_width_batch_and_lr_at_equal_tokens():
    # Rule: batch_size.yaml plans ≥ 2 widths × ≥ 5 batch sizes × ≥ 3 LRs, every batch size
    # with every LR (the LR re-tuned per batch size), and every trial trains the same tokens.
    result = plan(load_experiment(SWEEP))
    cells = pd.DataFrame([t.cell for t in result.trials])
    assert cells["model.width"].nunique() >= 2 and cells["train.batch_size"].nunique() >= 5
    assert (cells.groupby(["model.width", "train.batch_size"])["optim.lr"].nunique() >= 3).all()
    assert len({t.tokens for t in result.trials}) == 1


def test_the_cpu_variant_in_the_header_plans_on_cpu():
    # Rule: the `--set` overrides in the header's CPU variant validate and plan 24 CPU trials
    # of equal tokens.
    header = SWEEP.read_text().split("\nname:")[0]
    command = header.split("CPU-sized variant")[1].split("scalesweep sweep", 1)[1]
    words = shlex.split(" ".join(line.lstrip("# ").rstrip("\\") for line in command.splitlines()))
    overrides = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    experiment = load_experiment(SWEEP, overrides)
    result = plan(experiment)
    assert result.n_trials == 24 and len({t.tokens for t in result.trials}) == 1
    assert experiment.config.train.device == "cpu"


def test_truth_batch_sizes_are_in_tokens():
    # Rule (of the synthetic sweep): batch = sequences × seq_len tokens, as the fitter reads it.
    runs, _ = frames(trials())
    batch = runs[m.TRAINED_TOKENS] / runs[m.STEPS]
    assert (batch == runs["train.batch_size"] * SEQ_LEN).all()


@pytest.mark.parametrize(
    "module",
    [
        "scalesweep.noise_scale",
        "scalesweep.fit.laws.batch.critical",
        "scalesweep.fit.numerics.resampling",
        "scalesweep.fit.laws.batch.contours",
        "scalesweep.fit.laws.batch.kaplan",
        "scalesweep.fit.options",
    ],
)
def test_docstring_examples_run(module):
    # Rule: every example in these modules' docstrings prints what it says.
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
