"""Registry entry of the training diagnostics: `diagnostics`, attention-logit growth and
output-logit divergence across a sweep (Wortsman et al. 2023, §3.1), read from the curves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.base import FitData, FitKind, Lines
from scalesweep.fit.format import group_label
from scalesweep.fit.options import FitOptions

SUMMARY_GROUPS = 10
"""Groups the terminal summary lists; the rest are in fit.json."""


def _fit(data: FitData, options: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.diagnostics import KEYS, fit_diagnostics

    curves = data.curves(*KEYS)
    if curves is None:
        raise UserError(
            f"diagnostics needs the per-step curves {list(KEYS)}: an MLflow sweep has them, "
            "a CSV or Parquet runs table does not"
        )
    noise = data.curves(m.GRAD_NOISE_SCALE)
    return fit_diagnostics(data.runs, curves, group_by=options.group_by, noise=noise)


def summary(fit: Mapping[str, Any]) -> Lines:
    from scalesweep.fit.laws.diagnostics import extremes_table

    header, rows = extremes_table(fit)
    n = len(fit["group_by"])
    lines = []
    for row in rows[:SUMMARY_GROUPS]:
        key = group_label(list(zip(header[:n], row[:n], strict=True)))
        values = ", ".join(f"{h}: {v}" for h, v in zip(header[n:], row[n:], strict=True))
        lines.append(f"diagnostics {key}: largest attention logit {values}")
    if len(rows) > SUMMARY_GROUPS:
        more = len(rows) - SUMMARY_GROUPS
        lines.append(f"diagnostics: {more} more group(s) in fit.json and the report")
    return lines


def _section(fit: Mapping[str, Any]) -> Lines:
    from scalesweep.fit.laws.diagnostics import markdown_table

    lines = [
        f"Read from the per-step curves `{m.ATTN_LOGIT_MAX}` (the largest pre-softmax attention "
        f"logit) and `{m.OUTPUT_LOGZ}` (the mean log Z of the output softmax) of "
        f"{len(fit['runs'])} runs. Without qk-layernorm the attention logits grow by orders of "
        "magnitude with the learning rate and attention collapses (Wortsman et al. 2023, "
        "§3.1.1). log Z itself is not 0 in a healthy run (it sits near a few nats and settles); "
        "output-logit divergence is log Z drifting ever further from its early value, growing "
        "without bound until the loss follows, which z-loss prevents by pulling log Z towards 0 "
        "(§3.1.2). The largest |log Z| during training:",
        "",
        *markdown_table(fit, "output_logz_absmax"),
    ]
    if any(r.get("grad_noise_scale") is not None for r in fit["runs"]):
        lines += [
            "",
            f"The gradient noise scale `{m.GRAD_NOISE_SCALE}` at each run's last logged step "
            "(B_simple = tr(Σ)/|G|² in tokens, McCandlish et al. 2018): a batch size well below "
            "it wastes steps, one well above it wastes tokens.",
            "",
            *markdown_table(fit, "grad_noise_scale"),
        ]
    return lines


def _answer(fit: Mapping[str, Any]) -> Lines:
    from scalesweep.fit.laws.diagnostics import markdown_table

    intro = "Largest attention logit during training, per group (rows) and peak LR (columns):"
    return [intro, "", *markdown_table(fit)]


def _plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.diagnostics import attention_logit_growth, diagnostics_curves

    return [diagnostics_curves(fit, out), attention_logit_growth(fit, out)]


KINDS = (
    FitKind(
        name="diagnostics",
        title="Training diagnostics (Wortsman et al. 2023)",
        fit=_fit,
        summary=summary,
        section=_section,
        answer=_answer,
        plots=_plots,
        captions={
            "diagnostics_curves.png": "Largest attention logit and output log Z against step, "
            "per LR, at the widest width swept only (named in each panel's title); every width's "
            "largest values are in the tables. A red x clipped to the log Z axis's edge is a "
            "diverged run's last value, written beside it. One column per value of a swept "
            "intervention, at most 4 (evenly spaced, named in the title when there are more).",
            "attention_logits.png": "Largest attention logit during training against LR.",
        },
    ),
)
