"""The sweep report, as `report.html` (self-contained) and `report.md`.

Both are pure functions of the JSON-ready result (the fit.json object), the plot files and the
runs table, so the report says exactly what fit.json says. Order, as a researcher reads it:
1. the answer: per fit, the headline (best LR per group with its sensitivity; N_opt, D_opt and
   the loss at `--predict-flops` with intervals; the scaling exponents);
2. per fit, its plots and its details (`FitKind.section`);
3. the runs with their statuses (HTML only: a sweep can have thousands);
4. notes: runs set aside, fits skipped and why, the groups and conventions used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalesweep import metrics as m
from scalesweep.fit.format import interval, num
from scalesweep.fit.kinds import KINDS
from scalesweep.fit.report import html
from scalesweep.fit.report.forecast import approaches_lines, backtest_table

if TYPE_CHECKING:
    import pandas as pd

Lines = list[str]
MAX_OPEN_ROWS = 40
"""A longer run table starts folded."""


PREDICTION_CAPTION = "N_opt and D_opt extrapolated to the budget asked for."
"""The caption of prediction.png (`plots.prediction`)."""


def _caption(kind: str, path: Path) -> str:
    captions = KINDS[kind].captions if kind in KINDS else {"prediction.png": PREDICTION_CAPTION}
    return f"{path.name}: {captions.get(path.name, '')}"


def _prediction(p: Mapping[str, Any]) -> Lines:
    """Each fit's answers at the budget asked for, a row per (fit, quantity), with the
    confidence interval (CI: where the fitted law lies), the prediction interval (PI: where a
    new budget's optimum or a new run's loss falls, calibrated by the backtests) and the law's
    own PI before calibration."""
    lines = [
        "| fit | quantity | value | CI | PI (calibrated) | the law's PI |",
        "|---|---|---|---|---|---|",
    ]
    for source, q in p.items():
        if not isinstance(q, Mapping):
            continue
        ci, pi, law = q.get("ci", {}), q.get("pi", {}), q.get("pi_law", q.get("pi", {}))
        for key, label in (("n_opt", "N_opt"), ("d_opt", "D_opt"), ("loss_opt", "loss")):
            if q.get(key) is None:
                continue
            cells = [source, label, num(q.get(key)), interval(ci.get(key))]
            cells += [interval(pi.get(key)), interval(law.get(key))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def answers(result: Mapping[str, Any]) -> list[tuple[str, Lines]]:
    """(title, Markdown lines) of each headline, the prediction first."""
    out = []
    if result.get("prediction"):
        flops = result["prediction"]["flops"]
        out.append(
            (
                f"Compute-optimal N and D at C = {num(flops)} FLOPs",
                _prediction(result["prediction"]),
            )
        )
    if result.get("backtest"):
        out.append(("How far to trust it: backtests", backtest_table(result["backtest"])))
    if result.get("approaches"):
        out.append(("Approach 2 and Approach 3", approaches_lines(result["approaches"])))
    for name, kind in KINDS.items():
        if name in result["fits"]:
            fit = result["fits"][name]
            lines = kind.answer(fit) if kind.answer else [f"- {s}" for s in kind.summary(fit)]
            if lines:  # a kind with no finding (e.g. no power law resolved) has no answer
                out.append((kind.title, lines))
    return out


def notes(result: Mapping[str, Any]) -> Lines:
    """Markdown bullets: what was set aside or skipped, and the groups used."""
    lines = [f"- {note}" for note in result.get("notes", [])]
    lines += [f"- {kind} not fitted: {why}" for kind, why in result.get("skipped", {}).items()]
    for name, kind in KINDS.items():
        if name in result["fits"]:
            lines += kind.report_notes(result["fits"][name])
    lines.append("- Every number here is in fit.json, written beside this report.")
    return lines


def _title(result: Mapping[str, Any]) -> str:
    """`quickstart: sweep report` (the one a sweep writes when it ends) or `quickstart: fit
    report` (`scalesweep fit`, a CSV's file name in place of the sweep's), so that the two
    reports of one sweep, both logged to its parent run, are told apart by their title."""
    source = str(result["source"])
    name = Path(source).name if source.lower().endswith((".csv", ".parquet")) else source
    return f"{name}: {'sweep' if result.get('kind') == 'sweep' else 'fit'} report"


def _counts(result: Mapping[str, Any]) -> dict[str, int]:
    """Runs per status; {} for a table without a status column (fit.json says `unknown`)."""
    return {k: v for k, v in result["status"].items() if k != "unknown"}


def _status_line(result: Mapping[str, Any]) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in _counts(result).items()) or "no status column"
    return f"{result['n_runs']} runs ({counts}), from {result['source']}."


def render(result: Mapping[str, Any], plots: Mapping[str, Sequence[str]]) -> str:
    """report.md for `result` (the fit.json object); `plots` names each kind's plot files."""
    lines = [f"# {_title(result)}", "", _status_line(result), "", "## Answer"]
    for title, answer in answers(result):
        lines += ["", f"### {title}", "", *answer]
    for name, kind in KINDS.items():
        if name in result["fits"]:
            lines += ["", f"## {kind.title}", "", *kind.section(result["fits"][name])]
            lines += [f"\n![{file}]({file})" for file in plots.get(name, ())]
    lines += [f"\n![{file}]({file})" for file in plots.get("prediction", ())]
    return "\n".join([*lines, "", "## Notes", "", *notes(result)]) + "\n"


def render_html(
    result: Mapping[str, Any], plots: Mapping[str, Sequence[Path]], runs: pd.DataFrame | None
) -> str:
    """report.html: the same content as `render`, plots inline, and the run table."""
    body = [
        html.heading(1, _title(result)),
        html.paragraph(_status_line(result), "meta"),
        html.badges(_counts(result)),
        html.heading(2, "Answer", "answer"),
    ]
    for title, answer in answers(result):
        body.append(f'<div class="answer">{html.heading(3, title)}{html.markdown(answer)}</div>')
    for path in plots.get("prediction", ()):
        body.append(html.image(path, _caption("prediction", path)))
    for name, kind in KINDS.items():
        if name in result["fits"]:
            body.append(html.heading(2, kind.title, name))
            body += [html.image(p, _caption(name, p)) for p in plots.get(name, ())]
            body.append(html.markdown(kind.section(result["fits"][name])))
    if runs is not None:
        body += [html.heading(2, "Runs", "runs"), _runs_html(runs)]
    body += [html.heading(2, "Notes", "notes"), html.markdown(notes(result))]
    return html.page(_title(result), body)


def run_table(runs: pd.DataFrame) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, status per row) of the runs: trial, the swept keys, status and the
    losses for a sweep; every column but the aliases for a CSV or Parquet table."""
    from scalesweep.fit.laws.lr.groups import LR_COLUMNS, WIDTH_COLUMNS
    from scalesweep.fit.runs import ALIASES

    aliases = {c for c, sources in ALIASES.items() if any(s in runs.columns for s in sources)}
    swept = sorted(
        (c for c in runs.columns if "." in str(c) and runs[c].nunique(dropna=False) > 1),
        key=lambda c: (c not in WIDTH_COLUMNS, c in LR_COLUMNS, c),  # width first, LR last
    )
    if swept:
        summary = [c for c in (m.INIT_LOSS, m.FINAL_VAL_LOSS) if c in runs.columns]
        columns = [c for c in ("trial_id",) if c in runs.columns] + swept
        columns += [c for c in (m.STATUS,) if c in runs.columns] + summary
        runs = runs.sort_values(swept, kind="stable")
    else:
        columns = [c for c in runs.columns if c not in aliases]
    statuses = runs[m.STATUS].astype(str).tolist() if m.STATUS in runs else [""] * len(runs)
    rows = [[_cell(v) for v in row] for row in runs[columns].itertuples(index=False)]
    return [str(c) for c in columns], rows, statuses


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return num(float(value)) if isinstance(value, float) else str(value)


def _runs_html(runs: pd.DataFrame) -> str:
    header, rows, statuses = run_table(runs)
    table = html.table(header, rows, statuses)
    if len(rows) <= MAX_OPEN_ROWS:
        return table
    return f"<details><summary>{len(rows)} runs (show)</summary>{table}</details>"
