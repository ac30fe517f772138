"""Registry entry of the hyperparameter laws: `hparams`, η_opt(N, D) and B_opt(D) in the Step
Law form (Li et al. 2025)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scalesweep.fit.base import FitData, FitKind, Lines, finite
from scalesweep.fit.format import basis, interval, num
from scalesweep.fit.options import FitOptions


def _fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.hparams import fit_hparams

    return fit_hparams(data.runs, level=o.level, n_col=o.n_col)


def _headline(h: Any) -> dict[str, float]:
    return finite(
        {
            "fit.hparams.lr_params_exp": h.lr_law.exponents["params"],
            "fit.hparams.lr_tokens_exp": h.lr_law.exponents["tokens"],
            "fit.hparams.bs_tokens_exp": h.bs_law.exponents["tokens"],
        }
    )


def _summary(h: Mapping[str, Any]) -> Lines:
    lr, bs = h["lr_law"], h["bs_law"]
    return [
        f"hparams: lr_opt = {num(lr['coef'])}·N^{num(lr['exponents']['params'], 3)}"
        f"·D^{num(lr['exponents']['tokens'], 3)}; bs_opt = {num(bs['coef'])}"
        f"·D^{num(bs['exponents']['tokens'], 3)}",
        basis(h),
    ]


def _section(fit: Mapping[str, Any]) -> Lines:
    lr, bs = fit["lr_law"], fit["bs_law"]
    return [
        f"η_opt = {num(lr['coef'])}·N^{num(lr['exponents']['params'])}"
        f"·D^{num(lr['exponents']['tokens'])} (N CI {interval(lr['ci']['params'])}, "
        f"D CI {interval(lr['ci']['tokens'])}); B_opt = {num(bs['coef'])}"
        f"·D^{num(bs['exponents']['tokens'])} (CI {interval(bs['ci']['tokens'])}), "
        f"from {fit['n_cells']} (N, D) cells (Step Law form, Li et al. 2025).",
    ]


KINDS = (
    FitKind(
        name="hparams",
        title="Hyperparameter laws",
        fit=_fit,
        headline=_headline,
        summary=_summary,
        section=_section,
    ),
)
