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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalesweep import metrics as m
from scalesweep.fit import html
from scalesweep.fit.format import constant_columns, interval, num, short
from scalesweep.fit.kinds import KINDS

if TYPE_CHECKING:
    import pandas as pd

Lines = list[str]
MAX_OPEN_ROWS = 40
"""A longer run table starts folded."""


def _varying(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """The columns whose value differs between rows (a constant one says nothing per row)."""
    same = [] if len(rows) == 1 else constant_columns(rows, columns)
    return [c for c in columns if c not in same]


def _constants(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Lines:
    """`Every group has z_loss = 0.` for the columns `_varying` leaves out of a table."""
    fixed = [c for c in columns if c not in _varying(rows, columns)]
    if not fixed or not rows:
        return []
    return ["", "Every group has " + ", ".join(f"{c} = {num(rows[0].get(c))}" for c in fixed) + "."]


def _exponent(k: float | None) -> str:
    """`num(k)`, with floating-point noise around 0 (|k| < 1e-9: the same best LR at every
    width) written as 0."""
    return "0" if k is not None and abs(k) < 1e-9 else num(k)


def _lr_answer(fit: Mapping[str, Any]) -> Lines:
    cols = _varying(fit["groups"], fit["group_by"])
    header = [*map(short, cols), "best LR", "loss at best LR", "LR sensitivity", "diverged / runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in fit["groups"]:
        values = [num(g[c]) for c in cols]
        values += [
            num(g["best_lr"]),
            num(g["best_loss"]),
            num(g["sensitivity"]),
            f"{g['n_diverged']} / {g['n_runs']}",
        ]
        lines.append("| " + " | ".join(values) + " |")
    lines += _constants(fit["groups"], fit["group_by"])
    lo, hi = fit["lr_range"]
    lines += [
        "",
        f"LR sensitivity (Wortsman et al. 2023): the mean excess of min(ℓ, ℓ0) over "
        f"the group's best loss, over LRs in [{lo:g}, {hi:g}]; a diverged run scores ℓ0. "
        "Lower is more stable.",
    ]
    for t in fit["transfer_exponent"]:
        key = ", ".join(f"{short(c)}={num(t[c])}" for c in cols if c in t) or "all runs"
        lines += [
            "",
            f"Best LR ∝ width^k ({key}): k = {_exponent(t['k'])}, {fit['level']:.0%} CI "
            f"{interval(t['ci'])}, over {t['n_widths']} widths.",
        ]
    return lines


def _isoflop_answer(fit: Mapping[str, Any]) -> Lines:
    kept = [b for b in fit["budgets"] if not b["excluded"]]
    lines = [
        f"N_opt ∝ C^a with a = {num(fit['a'])} {interval(fit['a_ci'])}; D_opt ∝ C^b with "
        f"b = {num(fit['b'])} {interval(fit['b_ci'])} ({fit['method']}, {len(kept)} of "
        f"{len(fit['budgets'])} budgets)."
    ]
    if kept:
        top = max(kept, key=lambda b: b["flops"])
        lines.append(
            f"\nAt the largest budget fitted, C = {num(top['flops'], 3)} FLOPs: "
            f"N_opt = {num(top['n_opt'])}, D_opt = {num(top['d_opt'])}, "
            f"loss = {num(top['loss_opt'])}."
        )
    return lines


def _parametric_answer(fit: Mapping[str, Any]) -> Lines:
    ci = fit.get("ci", {})
    return [
        f"L(N, D) = {num(fit['E'])} + {num(fit['A'])}/N^{num(fit['alpha'])} + "
        f"{num(fit['B'])}/D^{num(fit['beta'])}; N_opt ∝ C^a with a = {num(fit['a'])} "
        f"{interval(ci.get('a'))}, D_opt ∝ C^b with b = {num(fit['b'])} "
        f"{interval(ci.get('b'))} ({fit['n_points']} points)."
    ]


def _diagnostics_answer(fit: Mapping[str, Any]) -> Lines:
    from scalesweep.fit.diagnostics import markdown_table

    intro = "Largest attention logit during training, per group (rows) and peak LR (columns):"
    return [intro, "", *markdown_table(fit)]


ANSWERS: dict[str, Callable[[Mapping[str, Any]], Lines]] = {
    "lr-sensitivity": _lr_answer,
    "isoflop": _isoflop_answer,
    "parametric": _parametric_answer,
    "diagnostics": _diagnostics_answer,
}
"""The headline of each kind; a kind not here answers with its text summary."""

CAPTIONS = {
    "lr_sensitivity.png": "Final validation loss against peak LR per width and intervention.",
    "lr_sensitivity_bars.png": "LR sensitivity per group.",
    "lr_transfer.png": "Best LR against width, with the fitted exponent.",
    "isoflop_curves.png": "isoFLOP profiles: loss against N per budget, fitted curves, minima.",
    "isoflop_optimal.png": "N_opt(C) and D_opt(C) with their confidence bands.",
    "parametric_contours.png": "Contours of the fitted L(N, D) and the compute-optimal frontier.",
    "prediction.png": "N_opt and D_opt extrapolated to the budget asked for.",
    "diagnostics_curves.png": "Largest attention logit and output log Z against step, per LR.",
    "attention_logits.png": "Largest attention logit during training against LR.",
    "power_laws.png": "Loss on the compute frontier against each variable, with its power law.",
}


def _prediction(p: Mapping[str, Any]) -> Lines:
    """Each fit's answers at the budget asked for, a row per (fit, quantity), with the
    confidence interval (CI: where the fitted law lies) and the prediction interval (PI: where a
    new budget's optimum or a new run's loss falls)."""
    lines = ["| fit | quantity | value | CI | PI |", "|---|---|---|---|---|"]
    for source, q in p.items():
        if not isinstance(q, Mapping):
            continue
        ci, pi = q.get("ci", {}), q.get("pi", {})
        for key, label in (("n_opt", "N_opt"), ("d_opt", "D_opt"), ("loss_opt", "loss")):
            cells = [source, label, num(q.get(key)), interval(ci.get(key)), interval(pi.get(key))]
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
    for name, kind in KINDS.items():
        if name in result["fits"]:
            fit = result["fits"][name]
            answer = ANSWERS.get(name, lambda f, kind=kind: [f"- {s}" for s in kind.summary(f)])
            out.append((kind.title, answer(fit)))
    return out


def notes(result: Mapping[str, Any]) -> Lines:
    """Markdown bullets: what was set aside or skipped, and the groups used."""
    lines = [f"- {note}" for note in result.get("notes", [])]
    lines += [f"- {kind} not fitted: {why}" for kind, why in result.get("skipped", {}).items()]
    lr = result["fits"].get("lr-sensitivity")
    if lr is not None:
        lines.append(f"- LR-sensitivity groups: {', '.join(lr['group_by']) or 'all runs'}.")
    lines.append("- Every number here is in fit.json, written beside this report.")
    return lines


def _title(result: Mapping[str, Any]) -> str:
    source = str(result["source"])
    is_file = source.lower().endswith((".csv", ".parquet"))
    return f"Fit of {Path(source).name}" if is_file else f"Sweep report: {source}"


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
        body.append(html.image(path, f"{path.name}: {CAPTIONS.get(path.name, '')}"))
    for name, kind in KINDS.items():
        if name in result["fits"]:
            body.append(html.heading(2, kind.title, name))
            body += [
                html.image(p, f"{p.name}: {CAPTIONS.get(p.name, '')}") for p in plots.get(name, ())
            ]
            body.append(html.markdown(kind.section(result["fits"][name])))
    if runs is not None:
        body += [html.heading(2, "Runs", "runs"), _runs_html(runs)]
    body += [html.heading(2, "Notes", "notes"), html.markdown(notes(result))]
    return html.page(_title(result), body)


def run_table(runs: pd.DataFrame) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, status per row) of the runs: trial, the swept keys, status and the
    losses for a sweep; every column but the aliases for a CSV or Parquet table."""
    from scalesweep.fit.lr_groups import LR_COLUMNS, WIDTH_COLUMNS
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
