"""What a reader of the reports sees: titles that tell the sweep report from the fit report,
group keys written as `qk_norm=False`, one LR-sensitivity table, messages in the user's terms,
and diagnostics plots whose legends, markers and axes show what they claim. Pure functions on
small tables (no MLflow, no Ray)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from scalesweep import metrics as m
from scalesweep.fit import FitData, FitOptions
from scalesweep.fit.kinds import KINDS
from scalesweep.fit.laws.diagnostics import fit_diagnostics
from scalesweep.fit.laws.lr.sensitivity import fit_lr_sensitivity
from scalesweep.fit.pipeline import fit_all
from scalesweep.fit.plots import diagnostics as plots
from scalesweep.fit.report import document

RAW_DICT = re.compile(r"\{'[^']*':")


def _lr_runs() -> pd.DataFrame:
    """2 widths x qk_norm off/on x 4 LRs; width 128 with qk_norm on diverges at every LR but
    the smallest, and every width diverges at LR 1 (outside the scored [0.003, 0.3])."""
    rows = []
    for width in (64, 128):
        for qk in (False, True):
            for lr in (0.003, 0.03, 0.3, 1.0):
                diverged = lr == 1.0 or (width == 128 and qk and lr > 0.003)
                loss = np.nan if diverged else 3.0 + abs(np.log10(lr / 0.03)) - 0.1 * qk
                rows.append(
                    {
                        "run_id": f"{width}-{qk}-{lr}",
                        "trial_id": f"t{len(rows)}",
                        "model.width": width,
                        "model.qk_norm": qk,
                        "lr": lr,
                        "loss": loss,
                        m.INIT_LOSS: 5.5,
                        m.STATUS: m.DIVERGED if diverged else m.COMPLETED,
                    }
                )
    return pd.DataFrame(rows)


def _lr_result(kind: str) -> dict:
    runs = _lr_runs()
    fit = fit_lr_sensitivity(runs, group_by=("model.width", "model.qk_norm"))
    return {
        "source": "quickstart",
        "kind": kind,
        "n_runs": len(runs),
        "status": runs[m.STATUS].value_counts().to_dict(),
        "fits": {"lr-sensitivity": KINDS["lr-sensitivity"].to_dict(fit)},
        "skipped": {},
        "notes": list(fit.notes),
    }


def test_the_sweep_report_and_the_fit_report_of_one_sweep_have_different_titles():
    # Rule: both reports are logged to the sweep's parent run; their titles tell them apart.
    sweep, fit = document.render(_lr_result("sweep"), {}), document.render(_lr_result("all"), {})
    assert sweep.splitlines()[0] == "# quickstart: sweep report"
    assert fit.splitlines()[0] == "# quickstart: fit report"
    html = document.render_html(_lr_result("sweep"), {}, None)
    assert "<title>quickstart: sweep report</title>" in html


def test_notes_write_group_keys_as_key_value_never_a_raw_dict():
    # Rule: a note names a group as `qk_norm=True`, as tables and legends do.
    result = _lr_result("all")
    notes = document.notes(result)
    transfer = [n for n in notes if "LR transfer exponent" in n]
    assert transfer and transfer[0].startswith("- qk_norm=False: "), notes
    assert not [n for n in notes if RAW_DICT.search(n)], notes


def test_the_lr_sensitivity_table_appears_once_and_says_what_it_counts():
    # Rule: one table of the groups (the answer's); the LRs it scores and the diverged runs it
    # counts are labelled so that LR 1 (diverged, outside the scored range) is not read as
    # a scored LR.
    text = document.render(_lr_result("sweep"), {})
    headers = [line for line in text.splitlines() if line.startswith("|") and "best LR" in line]
    assert len(headers) == 1, headers
    assert "LRs scored" in headers[0] and "diverged / runs (every LR)" in headers[0]
    row = next(line for line in text.splitlines() if line.startswith("| 64 | False"))
    assert row.rstrip(" |").endswith("| 3 | 1 / 4")  # 3 LRs scored; LR 1 diverged of 4 runs


def test_kaplan_ns_without_a_batch_size_sweep_says_so_in_the_users_terms():
    # Rule: the message says what to run (a batch-size sweep), not only a kind's name.
    runs = _lr_runs().assign(params=1e6, tokens=1e8, steps=300, batch_size=16)
    _, skipped, _ = fit_all(FitData(runs), ["kaplan-ns"], FitOptions(), strict=False)
    assert skipped["kaplan-ns"].startswith("needs a batch-size sweep"), skipped
    assert "search_spaces/batch_size.yaml" in skipped["kaplan-ns"]


def _diagnostics():
    """Width 64 and 128, qk_norm off/on, LRs 0.01 and 1; width 128 without qk_norm diverges
    at LR 1 with log Z running away (to 80) while the completed runs sit at 4-9."""
    runs, curves = [], []
    for width in (64, 128):
        for qk in (False, True):
            for lr in (0.01, 1.0):
                diverged = width == 128 and not qk and lr == 1.0
                run_id = f"{width}-{qk}-{lr}"
                runs.append({"run_id": run_id, "trial_id": run_id, "lr": lr,
                             "model.width": width, "model.qk_norm": qk,
                             m.STATUS: m.DIVERGED if diverged else m.COMPLETED})  # fmt: skip
                for step in (10, 20, 30):
                    logz = 80.0 * step / 30 if diverged else 4.0 + 5 * lr * step / 30
                    curves.append({"run_id": run_id, "step": step,
                                   m.ATTN_LOGIT_MAX: (1 + 100 * lr * (not qk)) * step,
                                   m.OUTPUT_LOGZ: logz})  # fmt: skip
    return fit_diagnostics(
        pd.DataFrame(runs), pd.DataFrame(curves), group_by=("model.width", "model.qk_norm")
    )


@pytest.fixture
def figures(monkeypatch, tmp_path):
    """The figures the diagnostics plots save, by file name."""
    saved = {}

    def keep(fig, out, name):
        saved[name] = fig
        return out / name

    monkeypatch.setattr(plots, "save", keep)
    fit = _diagnostics()
    plots.diagnostics_curves(fit, tmp_path)
    plots.attention_logit_growth(fit, tmp_path)
    return saved


def test_diagnostics_curves_legend_names_only_what_is_drawn(figures):
    # Rule: each legend entry's colour and style is drawn in some panel; no orphan entries.
    fig = figures["diagnostics_curves.png"]
    legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend())
    drawn = {
        (tuple(np.round(line.get_color(), 6)) if not isinstance(line.get_color(), str)
         else line.get_color(), line.get_linestyle())
        for ax in fig.axes for line in ax.get_lines() if len(line.get_xdata())
    }  # fmt: skip
    for handle in legend.legend_handles:
        color = handle.get_color()
        key = tuple(np.round(color, 6)) if not isinstance(color, str) else color
        if handle.get_label().startswith("diverged"):
            assert any(style == "--" for _, style in drawn), handle.get_label()
        else:
            assert any(c == key for c, _ in drawn), handle.get_label()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["0.01", "1", "diverged (LR 1): dashed, ends in x"]


def test_diagnostics_curves_keep_the_diverged_runs_log_z_marker_on_the_axis(figures):
    # Rule: the log Z axis is scaled to the completed runs (4-9 here); the diverged run's x
    # (log Z 80) stays on the axis at its edge, its value written beside it.
    fig = figures["diagnostics_curves.png"]
    logz_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("output log Z")]
    ax = logz_axes[0]
    lo, hi = ax.get_ylim()
    assert hi < 80
    xs = [line for a in fig.axes[2:] for line in a.get_lines() if line.get_marker() == "x"]
    assert xs, "no diverged marker on the log Z row"
    assert all(lo <= float(line.get_ydata()[0]) <= hi for line in xs)
    texts = [t.get_text() for a in fig.axes for t in a.texts]
    assert any(t.startswith("80") for t in texts), texts


def test_diagnostics_curves_draw_at_most_four_panels_and_say_how_many_more(monkeypatch, tmp_path):
    # Rule: with 9 values of a swept key the figure has 4 columns (it was one per value: a
    # sweep of thousands of runs made it hundreds of panels wide), and its title says so.
    runs, curves = [], []
    for wd in range(9):
        run_id = f"wd{wd}"
        runs.append({"run_id": run_id, "trial_id": run_id, "lr": 0.01, "model.width": 64,
                     "optim.wd": wd / 10, m.STATUS: m.COMPLETED})  # fmt: skip
        curves += [{"run_id": run_id, "step": s, m.ATTN_LOGIT_MAX: 5.0 + s, m.OUTPUT_LOGZ: 4.0}
                   for s in (10, 20)]  # fmt: skip
    fit = fit_diagnostics(
        pd.DataFrame(runs), pd.DataFrame(curves), group_by=("model.width", "optim.wd")
    )
    saved = {}
    monkeypatch.setattr(plots, "save", lambda fig, out, name: saved.setdefault(name, fig))
    plots.diagnostics_curves(fit, tmp_path)
    fig = saved["diagnostics_curves.png"]
    assert len(fig.axes) == 2 * plots.MAX_PANELS == 8
    assert "4 of 9 values of optim.wd, evenly spaced" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"width=64, wd={wd}" for wd in (0.0, 0.3, 0.5, 0.8)], titles


def test_attention_logits_tell_qk_layernorm_on_from_off_by_colour_and_marker(figures):
    # Rule: the two groups Wortsman et al. compare differ in colour (and line style), widths
    # in marker.
    ax = figures["attention_logits.png"].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if "=" in line.get_label()}
    off, on = lines["width=64, qk_norm=False"], lines["width=64, qk_norm=True"]
    assert tuple(off.get_color()) != tuple(on.get_color())
    assert off.get_linestyle() != on.get_linestyle()
    wide = lines["width=128, qk_norm=False"]
    assert wide.get_marker() != off.get_marker()


def test_the_diagnostics_summary_names_groups_as_the_other_kinds_do():
    # Rule: `width=64, qk_norm=False`, as lr-sensitivity's lines and the legends say it; not
    # the raw column names (`model.width=64, model.qk_norm=False`).
    kind = KINDS["diagnostics"]
    lines = kind.summary(kind.to_dict(_diagnostics()))
    assert lines[0].startswith("diagnostics width=64, qk_norm=False: largest attention logit")
    assert not any("model." in line for line in lines), lines


def test_the_diagnostics_section_says_what_output_logit_divergence_looks_like():
    # Rule: healthy runs sit at log Z 4-9, so "far from 0" is not the divergence; the text says
    # it is log Z drifting without bound.
    fit = _diagnostics()
    section = " ".join(KINDS["diagnostics"].section(KINDS["diagnostics"].to_dict(fit)))
    assert "far from 0" not in section
    assert "without bound" in section
    caption = KINDS["diagnostics"].captions["diagnostics_curves.png"]
    assert "widest width" in caption


def test_a_trial_logs_its_largest_attention_logit_and_last_log_z_as_run_metrics():
    # Rule: the run-level summary carries the largest finite attention logit and the last
    # finite log Z (a diverging run's last step may log inf); both are logged as metrics.
    from scalesweep import tracking
    from scalesweep.summary import RunState, track_diagnostics

    state = RunState()
    for logit, logz in ((3.0, 6.0), (40.0, 7.5), (12.0, 9.0), (np.inf, np.nan)):
        track_diagnostics(state, {m.ATTN_LOGIT_MAX: logit, m.OUTPUT_LOGZ: logz})
    assert (state.max_attn_logit, state.final_output_logz) == (40.0, 9.0)
    logged = tracking.summary_metrics(
        {m.FINAL_VAL_LOSS: 2.0, m.MAX_ATTN_LOGIT: 40.0, m.FINAL_OUTPUT_LOGZ: 9.0}
    )
    assert logged == {m.FINAL_VAL_LOSS: 2.0, m.MAX_ATTN_LOGIT: 40.0, m.FINAL_OUTPUT_LOGZ: 9.0}


def test_the_trials_view_shows_the_diagnostics_and_opens_on_the_validation_loss():
    # Rule: the saved MLflow view has the two diagnostics as columns and `val/loss` as its
    # first chart (the UI's own order puts it after every perf/ and train/ chart).
    from scalesweep.tracking import ui

    view = ui.trials_view(["model.width"])
    columns = view["selectedColumns"]
    assert f"metrics.`{m.MAX_ATTN_LOGIT}`" in columns
    assert f"metrics.`{m.FINAL_OUTPUT_LOGZ}`" in columns
    chart, section = view["compareRunCharts"][0], view["compareRunSections"][0]
    assert chart["metricKey"] == m.VAL_LOSS and chart["type"] == "LINE"
    assert chart["metricSectionId"] == section["uuid"]
    # without it the UI sorts the sections it adds by name, val/ last (checked in Chromium
    # against MLflow 3.17's UI: with it, the val section opens first)
    assert view["isAccordionReordered"] is True
