"""Kaplan et al. 2020's L(N, S_min) and L(N, D): known truths recovered inside their intervals,
predictions at new points, and the input they refuse.

L(N, S_min): the sweep of tests/fit/kaplan_truth.py (α_N = 0.077, N_c = 6.5e13, α_S = 0.76,
S_c = 2.1e3, B_crit from B* = 2e8, α_B = 0.21), loss noise 0.3%, through MLflow.
L(N, D): Kaplan et al.'s published constants (α_N = 0.076, α_D = 0.095, N_c = 6.4e13,
D_c = 1.8e13) on a 6 × 6 grid of N in [1e6, 1e9] and D in [1e7, 1e10], loss noise 0.5%.
"""

from __future__ import annotations

import numpy as np
import pytest

from scalesweep import metrics as m
from scalesweep.commands.fit import main
from scalesweep.fit.laws.batch.contours import curve_points
from scalesweep.fit.laws.batch.kaplan import fit_kaplan_ns, learning_points
from tests.fit import kaplan_truth
from tests.fit.kaplan_truth import KAPLAN, ND_TRUTH, frames, nd_loss, nd_runs, trials
from tests.sweep_runs import fit_json

truth_sweep = kaplan_truth.truth_sweep  # the session fixture: the known-truth sweep in MLflow


def test_kaplan_ns_recovers_the_learning_curve_law_through_mlflow(truth_sweep, capsys):
    # Rule: S_c, α_S, N_c and α_N lie inside their jackknife intervals; the predicted loss at
    # N = 1e9, S_min = 1e5 (truth 2.400) lies inside its interval.
    uri, name = truth_sweep
    fit = fit_json(
        [name, "--tracking-uri", uri, "--kind", "kaplan-ns", "--predict-at", "N=1e9,S=1e5"], capsys
    )
    truth = {
        "N_c": KAPLAN.n_c,
        "alpha_N": KAPLAN.alpha_n,
        "S_c": KAPLAN.s_c,
        "alpha_S": KAPLAN.alpha_s,
    }
    for key, value in truth.items():
        low, high = fit["ci"][key]
        assert low < value < high, (key, fit[key], fit["ci"][key])
    assert fit["ci"]["alpha_S"][1] - fit["ci"]["alpha_S"][0] < 0.2  # informative
    assert fit["interval"].startswith("jackknife over 9 batch sizes")
    (at,) = fit["predictions"]
    true_loss = KAPLAN.floor(1e9) + (KAPLAN.s_c / 1e5) ** KAPLAN.alpha_s
    assert at["ci"][0] < true_loss < at["ci"][1]


def test_kind_all_fits_the_critical_batch_law_once_for_both_kinds(truth_sweep, capsys, monkeypatch):
    # Rule: kaplan-ns builds on the critical-batch law; under --kind all that law is fitted
    # once and both answers equal those of each kind run alone.
    from scalesweep.fit.laws.batch import critical as batch_size
    from scalesweep.fit.laws.batch import kaplan

    uri, name = truth_sweep
    alone = {kind: fit_json([name, "--tracking-uri", uri, "--kind", kind], capsys)
             for kind in ("critical-batch", "kaplan-ns")}  # fmt: skip
    calls = []
    original = batch_size.fit_critical_batch

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_size, "fit_critical_batch", counted)
    monkeypatch.setattr(kaplan, "fit_critical_batch", counted)
    both = fit_json([name, "--tracking-uri", uri, "--kind", "all"], capsys)["fits"]
    assert len(calls) == 1
    for kind in ("critical-batch", "kaplan-ns"):
        assert both[kind] == alone[kind]["fits"][kind]


def test_kaplan_nd_recovers_the_published_constants(tmp_path, capsys):
    # Rule: the four constants lie inside their asymptotic intervals, and the loss predicted at
    # N = 1e10, D = 1e11 (outside the data) lies inside its interval.
    path = tmp_path / "runs.csv"
    nd_runs().to_csv(path, index=False)
    fit = fit_json([str(path), "--kind", "kaplan-nd", "--predict-at", "N=1e10,D=1e11"], capsys)
    for key, value in ND_TRUTH.items():
        low, high = fit["ci"][key]
        assert low < value < high, (key, fit[key], fit["ci"][key])
    assert fit["interval"].startswith("asymptotic")
    (at,) = fit["predictions"]
    assert at["ci"][0] < nd_loss(1e10, 1e11) < at["ci"][1]


def test_kaplan_nd_writes_its_plot_and_report_section(tmp_path, capsys):
    # Rule: --out draws L against D per size and the report has the section with its table.
    path, out = tmp_path / "runs.csv", tmp_path / "out"
    nd_runs().to_csv(path, index=False)
    fit_json([str(path), "--kind", "kaplan-nd", "--out", str(out)], capsys)
    report = (out / "report.md").read_text()
    assert "## Kaplan et al. 2020 L(N, D)" in report and "| alpha_D |" in report
    assert (out / "kaplan_nd.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda runs: runs.drop(columns=[m.PARAMS_NONEMBED]), "params_nonembed"),
        (lambda runs: runs.assign(**{m.PARAMS_NONEMBED: 1e8}), "2 distinct values"),
        (lambda runs: runs.head(5), "at least 6"),
        # one token count per size (up to 5% apart): N and D cannot be told apart
        (
            lambda runs: runs.assign(
                **{m.TRAINED_TOKENS: runs[m.PARAMS_NONEMBED] * 20 * np.linspace(1, 1.05, len(runs))}
            ),
            "2 or more token",
        ),
    ],
)
def test_kaplan_nd_refuses_what_it_cannot_fit(tmp_path, capsys, change, needle):
    # Rule: without N, with one model size, with fewer than 6 runs, or with one token count
    # per size: exit 2 saying which.
    path = tmp_path / "runs.csv"
    change(nd_runs()).to_csv(path, index=False)
    code = main(["fit", str(path), "--kind", "kaplan-nd"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err


def test_kaplan_ns_needs_the_non_embedding_size(tmp_path, capsys):
    # Rule: kaplan-ns without `params_nonembed` is exit 2 naming it (N is non-embedding).
    runs, curves = frames(trials())
    runs.drop(columns=[m.PARAMS_NONEMBED]).to_csv(tmp_path / "runs.csv", index=False)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    code = main(
        [
            "fit",
            str(tmp_path / "runs.csv"),
            "--curves",
            str(tmp_path / "curves.csv"),
            "--kind",
            "kaplan-ns",
        ]
    )
    assert code == 2 and "`params_nonembed`" in capsys.readouterr().err


def test_learning_points_take_the_best_lr_after_warmup():
    # Rule: per (size, batch size) only the run fastest to most loss levels is fitted (here the
    # LR 3e-3 runs, never the 1.5× slower 1e-3 ones), and steps within a 10% warmup are left out.
    runs, curves = frames(trials())
    runs["schedule.warmup"] = 0.1
    table = fit_kaplan_ns(runs, curves).critical_batch.table  # type: ignore[union-attr]
    points, _ = curve_points(runs, curves, (m.PARAMS_NONEMBED, "schedule.warmup"), kind="test")
    kept, note = learning_points(points, (m.PARAMS_NONEMBED,), table)
    assert kept["run_id"].str.endswith("lr0.003").all() and kept["run_id"].nunique() == 27
    length = kept.groupby("run_id")["step"].transform("max")
    assert (kept["step"] > 0.1 * length).all() and "warmup" in note


def test_kaplan_ns_with_three_batch_sizes_says_its_interval_is_asymptotic():
    # Rule: without the jackknife the interval is asymptotic and a note says what it ignores.
    runs, curves = frames(trials())
    keep = runs["run_id"][runs["train.batch_size"].isin([64, 256, 1024])]
    fit = fit_kaplan_ns(runs[runs["run_id"].isin(keep)], curves[curves["run_id"].isin(keep)])
    assert fit.interval.startswith("asymptotic")
    assert any("ignore B_crit's uncertainty" in note for note in fit.notes)
