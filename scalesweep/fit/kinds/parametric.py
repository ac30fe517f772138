"""Registry entry of the parametric family: `parametric`, L(N, D) = E + A/N^α + B/D^β
(Chinchilla Approach 3, fitted as Epoch's replication did)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalesweep.fit.base import FitData, FitKind, Lines, finite
from scalesweep.fit.format import basis, interval, num
from scalesweep.fit.options import FitOptions

KEYS = ("E", "A", "B", "alpha", "beta", "a", "b")


def _fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.parametric.approach3 import fit_parametric

    return fit_parametric(
        data.runs,
        n_bootstrap=o.bootstrap,
        rng=o.rng(),
        method=o.parametric_method,
        level=o.level,
        n_col=o.n_col,
        all_runs=o.all_runs,
    )


def _summary(p: Mapping[str, Any]) -> Lines:
    values = " ".join(f"{k}={num(p[k])}" for k in KEYS)
    return [f"parametric: {values} ({p['n_points']} points)", basis(p)]


def _section(fit: Mapping[str, Any]) -> Lines:
    search = (
        f"L-BFGS from the {fit['n_starts']} lowest points of a variable-projection grid over "
        "(α, β) (Czech et al. 2026)"
        if fit.get("method") == "projection"
        else f"best of {fit['n_starts']} L-BFGS starts (Besiroglu et al. 2024)"
    )
    lines = [
        f"L(N, D) = E + A/N^α + B/D^β, Huber (δ = 1e-3) on log L summed over points, {search}.",
        "",
        "| parameter | estimate | CI |",
        "|---|---|---|",
    ]
    for key in KEYS:
        lines.append(f"| {key} | {num(fit[key])} | {interval(fit['ci'].get(key))} |")
    return [
        *lines,
        "",
        f"{fit['n_points']} points, objective {num(fit['objective'])}, "
        f"{fit['n_bootstrap']} bootstrap resamples.",
    ]


def _answer(fit: Mapping[str, Any]) -> Lines:
    ci = fit.get("ci", {})
    return [
        f"L(N, D) = {num(fit['E'])} + {num(fit['A'])}/N^{num(fit['alpha'])} + "
        f"{num(fit['B'])}/D^{num(fit['beta'])}; N_opt ∝ C^a with a = {num(fit['a'])} "
        f"{interval(ci.get('a'))}, D_opt ∝ C^b with b = {num(fit['b'])} "
        f"{interval(ci.get('b'))} ({fit['n_points']} points)."
    ]


def _plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.parametric import parametric_contours

    return [parametric_contours(fit, out)]


def _predict(fit: Any, flops: float) -> dict[str, Any]:
    from scalesweep.fit.laws.parametric.approach3 import compute_optimal

    return compute_optimal(fit, flops).to_dict()


KINDS = (
    FitKind(
        name="parametric",
        title="Parametric L(N, D) (Chinchilla Approach 3)",
        fit=_fit,
        headline=lambda f: finite({f"fit.parametric.{k}": getattr(f, k) for k in KEYS}),
        summary=_summary,
        section=_section,
        answer=_answer,
        plots=_plots,
        captions={
            "parametric_contours.png": "Contours of the fitted L(N, D) and the compute-optimal "
            "frontier."
        },
        predict=_predict,
    ),
)
