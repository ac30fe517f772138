"""The sweep report: report.html self-contained, its numbers those of fit.json, in the order a
researcher reads (answer, plots, runs, notes); the sweep's own report on its parent run; the
training-diagnostics kind; the MLflow UI view and the sweep's closing lines."""

from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.commands.fit import main
from scalesweep.commands.sweep import closing_lines
from scalesweep.fit.format import interval, num
from scalesweep.fit.laws.diagnostics import fit_diagnostics
from scalesweep.fit.plots.groups import varying
from scalesweep.fit.report import html
from scalesweep.sweep.report import sweep_report
from scalesweep.tracking import ui as tracking_ui
from tests.sweep_runs import write_sweep

PORIAN = Path(__file__).parents[1] / "data" / "porian2024_isoflop_runs.csv"
ONE_CONFIG = "rw/tuned/short/const/standard/val"


class Page(HTMLParser):
    """Every tag with its attributes, and the text, of an HTML document."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[str | None] = []  # the class of every <tr> with <td> cells
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "td" and self.tags[-2][0] == "tr":
            self.rows.append(self.tags[-2][1].get("class"))


@pytest.fixture(scope="module")
def porian(tmp_path_factory):
    """`scalesweep fit` of one configuration of Porian et al.'s isoFLOP runs, with a prediction:
    (fit.json, report.html text, output folder)."""
    folder = tmp_path_factory.mktemp("porian")
    frame = pd.read_csv(PORIAN)
    frame[frame["config"] == ONE_CONFIG].to_csv(folder / "runs.csv", index=False)
    out = folder / "out"
    args = ["fit", str(folder / "runs.csv"), "--kind", "isoflop", "--predict-flops", "1e21"]
    assert main([*args, "--out", str(out)]) == 0
    return json.loads((out / "fit.json").read_text()), (out / "report.html").read_text(), out


def test_report_html_is_self_contained_with_every_plot_inline(porian):
    # Rule: report.html loads nothing from anywhere (no scripts, stylesheets or remote URLs);
    # every plot written is embedded, byte for byte, as a base64 PNG.
    _, text, out = porian
    page = Page(text)
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe")]
    urls = [v for _, a in page.tags for k, v in a.items() if k in ("src", "href") and v]
    assert all(u.startswith("data:image/png;base64,") for u in urls), urls
    embedded = {base64.b64decode(u.split(",", 1)[1]) for u in urls}
    written = {p.read_bytes() for p in out.glob("*.png")}
    assert written and embedded == written
    assert {p.name for p in out.glob("*.png")} >= {"isoflop_curves.png", "prediction.png"}


def test_report_answers_first_with_the_numbers_of_fit_json(porian):
    # Rule: the report opens with the answer (N_opt and D_opt at --predict-flops with their
    # intervals, the exponents), as fit.json has them; then plots, then runs, then notes.
    result, text, _ = porian
    answer = text[text.index('id="answer"') : text.index("<figure")]
    predicted = result["prediction"]["isoflop"]
    for key in ("n_opt", "d_opt"):
        assert num(predicted[key]) in answer
        for kind in ("ci", "pi"):
            assert html.markdown([interval(predicted[kind][key])]).strip("<p>/") in answer
    fit = result["fits"]["isoflop"]
    assert f"a = {num(fit['a'])} {interval(fit['a_ci'])}" in answer
    order = [text.index(s) for s in ('id="answer"', "<figure", 'id="runs"', 'id="notes"')]
    assert order == sorted(order)


def test_text_summary_gives_each_prediction_with_its_ci_and_pi(porian, capsys):
    # Rule: the terminal shows the prediction as one readable line per fit (not a JSON dump),
    # each answer with its confidence and prediction interval, as fit.json has them.
    result, _, out = porian
    capsys.readouterr()
    args = ["fit", str(out.parent / "runs.csv"), "--kind", "isoflop", "--predict-flops", "1e21"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("prediction at C = 1e+21"))
    predicted = result["prediction"]["isoflop"]
    expected = f"N_opt={num(predicted['n_opt'])} CI {interval(predicted['ci']['n_opt'])} PI "
    assert lines[start + 1].startswith(f"  isoflop: {expected}{interval(predicted['pi']['n_opt'])}")


def test_runs_of_a_csv_are_all_in_the_table(porian):
    # Rule: the run table has one row per run of the source.
    result, text, _ = porian
    assert len(Page(text[text.index('id="runs"') :]).rows) == result["n_runs"] == 121


# --- the sweep's own report, from MLflow -----------------------------------------------------


def lr_trials(lrs=(1e-3, 1e-2, 1e-1, 1.0)) -> list[dict]:
    """Width × qk_norm × LR as a sweep records it: without qk-layernorm the attention logits
    grow with the LR and LR 1.0 diverges; per-step curves of loss and diagnostics."""
    trials = []
    for width in (32, 64):
        for qk in (False, True):
            for lr in lrs:
                diverged = not qk and lr == 1.0
                growth = (lr / 1e-3) ** (0.2 if qk else 1.0)
                steps = (10, 20) if diverged else (10, 20, 30, 40)
                curve = [(s, {m.VAL_LOSS: 3.0, m.FLOPS: 1e9 * s, m.ATTN_LOGIT_MAX: 5.0 * growth
                              * s / 10, m.OUTPUT_LOGZ: -0.1 * s}) for s in steps]  # fmt: skip
                loss = 2.0 + 0.1 * math.log10(lr / 1e-2) ** 2 + (0.0 if qk else 0.05)
                trials.append({
                    "name": f"w{width}-qk{int(qk)}-lr{lr:g}",
                    "params": {"model.width": width, "model.qk_norm": qk, "optim.lr": lr},
                    "summary": {m.INIT_LOSS: 5.5, m.FINAL_VAL_LOSS: None if diverged else loss,
                                m.PARAMS: 1e3 * width**2, m.TRAINED_FLOPS: 1e9 * width},
                    "status": m.DIVERGED if diverged else m.COMPLETED,
                    "curve": curve,
                })  # fmt: skip
    return trials


@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory):
    """The sweep written to a SQLite store, and its report: (uri, parent run id, report
    folder)."""
    folder = tmp_path_factory.mktemp("qk")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # a SQLite store keeps its artifacts under ./mlruns
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        parent = write_sweep(uri, "qk", lr_trials(), spool_dir=folder / "spool")
        sweep_report("qk", uri, parent, folder / "report")
    return uri, parent, folder / "report"


def test_sweep_report_is_logged_to_the_parent_with_the_numbers_of_fit_json(lr_sweep):
    # Rule: the report a sweep writes when it ends goes to its parent run under report/ and
    # shows, first, each group's best LR and LR sensitivity and each run's largest attention
    # logit, exactly as fit.json has them; diverged rows are marked in the run table.
    uri, parent, out = lr_sweep
    path = out / "report.html"
    logged = {a.path for a in MlflowClient(uri).list_artifacts(parent, "report")}
    assert {"report/report.html", "report/fit.json", "report/lr_sensitivity.png",
            "report/diagnostics_curves.png", "report/attention_logits.png"} <= logged  # fmt: skip
    result = json.loads((out / "fit.json").read_text())
    text = path.read_text()
    answer = text[text.index('id="answer"') : text.index("<figure")]
    for g in result["fits"]["lr-sensitivity"]["groups"]:
        row = [str(g["model.width"]), str(g["model.qk_norm"]), num(g["best_lr"]),
               num(g["best_loss"]), num(g["sensitivity"])]  # fmt: skip
        assert "".join(f"<td>{c}</td>" for c in row) in answer
    for run in result["fits"]["diagnostics"]["runs"]:
        assert f"{run['attn_logit_max']:.3g}" in answer
    assert "(diverged)" in answer
    rows = Page(text[text.index('id="runs"') :]).rows
    assert len(rows) == 16 and rows.count(m.DIVERGED) == 2


def test_diagnostics_show_the_logits_growing_without_qk_norm(lr_sweep):
    # Rule: the diagnostics kind reads the curves of completed and diverged runs and keeps each
    # run's largest attention logit: here they grow 1000× with the LR without qk-layernorm.
    _, _, out = lr_sweep
    runs = json.loads((out / "fit.json").read_text())["fits"]["diagnostics"]
    by = {(r["model.width"], r["model.qk_norm"], r["lr"]): r for r in runs["runs"]}
    assert len(by) == 16
    assert by[(64, False, 1.0)][m.STATUS] == m.DIVERGED
    assert by[(64, False, 0.1)]["attn_logit_max"] == pytest.approx(5.0 * 100 * 4)
    assert by[(64, True, 0.1)]["attn_logit_max"] == pytest.approx(5.0 * 100**0.2 * 4)


def test_sweep_report_of_one_lr_says_why_there_is_no_lr_sensitivity(tmp_path, monkeypatch):
    # Rule: a sweep that ran one learning rate reports its runs and diagnostics, and says that
    # the LR sensitivity needs more than one LR.
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = write_sweep(uri, "one", lr_trials(lrs=(1e-2,)), spool_dir=tmp_path / "spool")
    sweep_report("one", uri, parent, tmp_path / "report")
    result = json.loads((tmp_path / "report" / "fit.json").read_text())
    assert "one learning rate" in result["skipped"]["lr-sensitivity"]
    assert set(result["fits"]) == {"diagnostics"}


def test_diagnostics_of_a_csv_is_refused_with_the_reason(tmp_path, capsys):
    # Rule: the diagnostics kind needs per-step curves; on a CSV it exits 2 and says so.
    path = tmp_path / "runs.csv"
    pd.DataFrame({"lr": [0.01], "loss": [2.0]}).to_csv(path, index=False)
    assert main(["fit", str(path), "--kind", "diagnostics"]) == 2
    assert "per-step curves" in capsys.readouterr().err


def test_diagnostics_extremes_ignore_non_finite_values_and_note_runs_without_curves():
    # Rule: a run's largest logit and |log Z| are over its finite values (a diverged run's
    # last point may be inf or NaN); runs without curves are counted in a note.
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "lr": [0.1, 1.0, 0.01],
                         m.STATUS: [m.COMPLETED, m.DIVERGED, m.FAILED]})  # fmt: skip
    curves = pd.DataFrame({"run_id": ["a", "a", "b", "b"], "step": [1, 2, 1, 2],
                           m.ATTN_LOGIT_MAX: [2.0, 3.0, 50.0, np.inf],
                           m.OUTPUT_LOGZ: [-1.0, -4.0, np.nan, 7.0]})  # fmt: skip
    fit = fit_diagnostics(runs, curves)
    got = {r.lr: (r.attn_logit_max, r.output_logz_absmax, r.status) for r in fit.runs}
    assert got == {0.1: (3.0, 4.0, m.COMPLETED), 1.0: (50.0, 7.0, m.DIVERGED)}
    assert fit.notes and "1 run(s) without curves" in fit.notes[0]


def test_diagnostics_report_the_last_noise_scale_of_runs_that_logged_one():
    # Rule: the gradient noise scale is a training diagnostic: each run's value at its last
    # logged step is in the fit (None for a run with one batch size) and, when any run has
    # one, the report section has a table of it per group and LR.
    from scalesweep.fit import KINDS

    diagnostics_section = KINDS["diagnostics"].section

    runs = pd.DataFrame({"run_id": ["a", "b"], "lr": [0.1, 1.0], m.STATUS: [m.COMPLETED] * 2})
    curves = pd.DataFrame({"run_id": ["a", "b"], "step": [10, 10],
                           m.ATTN_LOGIT_MAX: [2.0, 5.0], m.OUTPUT_LOGZ: [1.0, 2.0]})  # fmt: skip
    noise = pd.DataFrame({"run_id": ["a", "a"], "step": [20, 10],
                          m.GRAD_NOISE_SCALE: [900.0, 300.0]})  # fmt: skip
    fit = fit_diagnostics(runs, curves, noise=noise)
    assert {r.lr: r.grad_noise_scale for r in fit.runs} == {0.1: 900.0, 1.0: None}
    section = "\n".join(diagnostics_section(fit.to_dict()))
    assert m.GRAD_NOISE_SCALE in section and "900" in section
    assert m.GRAD_NOISE_SCALE not in "\n".join(
        diagnostics_section(fit_diagnostics(runs, curves).to_dict())
    )


def test_diagnostics_summary_lists_at_most_ten_groups():
    # Rule: the terminal summary names the first 10 groups and counts the rest (an isoFLOP
    # grid under --kind all has a group per run); fit.json keeps them all.
    from scalesweep.fit.kinds.diagnostics import SUMMARY_GROUPS
    from scalesweep.fit.kinds.diagnostics import summary as diagnostics_summary

    ids = [f"r{i}" for i in range(12)]
    runs = pd.DataFrame({"run_id": ids, "lr": 0.01, "model.width": range(12)})
    curves = pd.DataFrame({"run_id": ids, "step": 10, m.ATTN_LOGIT_MAX: 3.0, m.OUTPUT_LOGZ: 1.0})
    fit = fit_diagnostics(runs, curves).to_dict()
    lines = diagnostics_summary(fit)
    assert SUMMARY_GROUPS == 10 and len(fit["runs"]) == 12
    assert len(lines) == 11 and lines[-1].startswith("diagnostics: 2 more group(s)")


def test_tracking_curves_include_diverged_runs_only_when_asked(lr_sweep):
    # Rule: `tracking.curves` reads completed runs by default (isoFLOP envelopes want nothing
    # else) and, with `statuses`, diverged ones too, each row carrying its run's status.
    uri, _, _ = lr_sweep
    default = tracking.curves("qk", uri, keys=(m.ATTN_LOGIT_MAX,))
    both = tracking.curves("qk", uri, keys=(m.ATTN_LOGIT_MAX,), statuses=m.FINISHED_STATUSES)
    assert set(default[m.STATUS]) == {m.COMPLETED}
    assert set(both[m.STATUS]) == {m.COMPLETED, m.DIVERGED}
    assert both["run_id"].nunique() == 16 and default["run_id"].nunique() == 14


def test_tracking_curves_with_a_shared_cache_fetch_each_history_once(lr_sweep, monkeypatch):
    # Rule: `scalesweep fit --kind all` asks for val/loss from three fits; a shared cache
    # fetches each (run, key) history from MLflow once and returns the same table.
    # (A SQL store answers in bulk: the (run, key) pairs its bulk reads were asked for.)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri, _, _ = lr_sweep
    plain = tracking.curves("qk", uri, keys=(m.ATTN_LOGIT_MAX,))
    fetched: list[tuple[str, str]] = []
    original = SqlAlchemyStore.get_metric_history_bulk

    def counting(self, run_ids, key, max_results):
        fetched.extend((run_id, key) for run_id in run_ids)
        return original(self, run_ids, key, max_results)

    monkeypatch.setattr(SqlAlchemyStore, "get_metric_history_bulk", counting)
    cache: dict = {}
    first = tracking.curves("qk", uri, keys=(m.ATTN_LOGIT_MAX,), cache=cache)
    again = tracking.curves("qk", uri, keys=(m.ATTN_LOGIT_MAX, m.OUTPUT_LOGZ), cache=cache)
    assert len(fetched) == len(set(fetched)) == 2 * 14
    pd.testing.assert_frame_equal(first, plain)
    assert again[m.ATTN_LOGIT_MAX].tolist() == plain[m.ATTN_LOGIT_MAX].tolist()


# --- pieces -------------------------------------------------------------------------------------


def test_markdown_subset_becomes_escaped_html():
    # Rule: the report's Markdown (paragraphs, lists, pipe tables, `code`) turns into HTML
    # with text escaped, so a value like `<b>` cannot become markup.
    out = html.markdown(["a `x<y` b", "", "- one", "- two", "", "| h | k |", "|---|---|",
                         "| 1 | <b> |"])  # fmt: skip
    assert "<p>a <code>x&lt;y</code> b</p>" in out
    assert "<ul><li>one</li><li>two</li></ul>" in out
    assert "<tr><th>h</th><th>k</th></tr><tr><td>1</td><td>&lt;b&gt;</td></tr>" in out


def test_labels_name_only_what_the_sweep_varied():
    # Rule: a group column with one value everywhere (z_loss = 0) is left out of plot labels;
    # the width is always named.
    keys = [{"model.width": 64, "model.qk_norm": q, "model.z_loss": 0.0} for q in (False, True)]
    assert varying(keys) == [{"model.width": 64, "model.qk_norm": q} for q in (False, True)]


def test_experiment_is_marked_model_training_with_a_trials_view(lr_sweep):
    # Rule: the sweep's experiment says "model training" to the MLflow UI and holds a saved
    # view of the trials (child runs only) with the swept params, final_val_loss and status.
    uri, _, _ = lr_sweep
    experiment_id = tracking_ui.set_up_experiment(uri, "s", ["model.width", "optim.lr"])
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    saved = json.loads(tags["mlflow.sharedViewState.scalesweep-trials"])
    state = json.loads(saved["state"])
    assert state["selectedColumns"] == ["params.`model.width`", "params.`optim.lr`",
                                        "metrics.`final_val_loss`", "metrics.`max_attn_logit`",
                                        "metrics.`final_output_logz`", "tags.`status`"]  # fmt: skip
    assert state["searchFilter"] == "tags.`scalesweep.role` = 'trial'"
    assert tracking_ui.set_up_experiment(uri, "s", []) == experiment_id  # idempotent


def test_closing_lines_give_the_runs_view_and_the_report(tmp_path):
    # Rule: the sweep's last lines give the runs view URL (the server's own for an HTTP store;
    # `mlflow ui`'s default, with the command to start it, for a file store) and the report.
    report = tmp_path / "report.html"
    for uri, base in (("http://10.0.0.5:5000", "http://10.0.0.5:5000"),
                      (f"sqlite:///{tmp_path / 'db'}", "http://127.0.0.1:5000")):  # fmt: skip
        outcome = SimpleNamespace(tracking_uri=uri, parent_run_id="p1")
        text = "\n".join(closing_lines("s", "7", outcome, report))
        runs = f"{base}/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey="
        assert runs in text and str(report) in text
        assert f"{base}/#/experiments/7/runs/p1/artifacts/report/report.html" in text
        assert ("mlflow ui --backend-store-uri" in text) == uri.startswith("sqlite")


def test_an_exponent_of_floating_point_noise_reads_as_zero():
    # Rule: the LR-transfer exponent of a sweep whose best LR is the same at every width is 0
    # up to rounding (1e-15); the answer writes 0, and any other exponent as fit.json has it.
    from scalesweep.fit.kinds.lr import _exponent

    assert _exponent(-2.092e-15) == "0"
    assert _exponent(-0.5123456) == num(-0.5123456) == "-0.5123"
