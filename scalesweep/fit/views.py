"""The report side of the fit kinds: which plots each draws, and the training-diagnostics kind.

Light like `kinds`: numpy, pandas and matplotlib load inside the functions, so the registry
loads fast. Plot functions take (fit result, runs table, folder) and return the files written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalesweep import metrics as m
from scalesweep.errors import UserError

if TYPE_CHECKING:
    from scalesweep.fit.kinds import FitData, FitOptions

Lines = list[str]
SUMMARY_GROUPS = 10
"""Groups the terminal summary of a per-group fit lists; the rest are in fit.json."""


def parametric_plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit import plots

    return [plots.parametric_contours(fit, out)]


def isoflop_plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit import plots

    return [plots.isoflop_curves(fit, out), plots.isoflop_optimal(fit, out)]


def lr_plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit import plots_lr

    written = [plots_lr.lr_sensitivity_curves(fit, out), plots_lr.lr_sensitivity_bars(fit, out)]
    if fit.transfer:
        written.append(plots_lr.lr_transfer(fit, out))
    return written


def power_plots(fits: Any, out: Path) -> list[Path]:
    from scalesweep.fit import plots

    return [plots.power_laws(fits, out)]


# --- training diagnostics (Wortsman et al. 2023) -----------------------------------------------


def diagnostics_fit(data: FitData, options: FitOptions) -> Any:
    from scalesweep.fit.diagnostics import KEYS, fit_diagnostics

    curves = data.curves(*KEYS)
    if curves is None:
        raise UserError(
            f"diagnostics needs the per-step curves {list(KEYS)}: an MLflow sweep has them, "
            "a CSV or Parquet runs table does not"
        )
    noise = data.curves(m.GRAD_NOISE_SCALE)
    return fit_diagnostics(data.runs, curves, group_by=options.group_by, noise=noise)


def diagnostics_summary(fit: Mapping[str, Any]) -> Lines:
    from scalesweep.fit.diagnostics import extremes_table

    header, rows = extremes_table(fit)
    n = len(fit["group_by"])
    lines = []
    for row in rows[:SUMMARY_GROUPS]:
        key = ", ".join(f"{h}={v}" for h, v in zip(header[:n], row[:n], strict=True))
        values = ", ".join(f"{h}: {v}" for h, v in zip(header[n:], row[n:], strict=True))
        lines.append(f"diagnostics {key or 'all runs'}: largest attention logit {values}")
    if len(rows) > SUMMARY_GROUPS:
        lines.append(f"diagnostics: {len(rows) - SUMMARY_GROUPS} more group(s) in fit.json and "
                     "the report")  # fmt: skip
    return lines


def diagnostics_section(fit: Mapping[str, Any]) -> Lines:
    from scalesweep.fit.diagnostics import markdown_table

    lines = [
        f"Read from the per-step curves `{m.ATTN_LOGIT_MAX}` (the largest pre-softmax attention "
        f"logit) and `{m.OUTPUT_LOGZ}` (the mean log Z of the output softmax) of "
        f"{len(fit['runs'])} runs. Without qk-layernorm the attention logits grow by orders of "
        "magnitude with the learning rate and attention collapses (Wortsman et al. 2023, "
        "§3.1.1); a log Z far from 0 is the output-logit divergence that z-loss prevents "
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


def diagnostics_plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit import plots_lr

    return [plots_lr.diagnostics_curves(fit, out), plots_lr.attention_logit_growth(fit, out)]
