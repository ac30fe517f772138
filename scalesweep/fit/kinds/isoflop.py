"""Registry entries of the isoFLOP family: `isoflop` (Chinchilla Approach 2, profiles per
budget) and `isoflop-envelope` (Approach 1, the lower envelope of the training curves)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.base import FitData, FitKind, Lines, finite
from scalesweep.fit.format import basis, interval, num
from scalesweep.fit.options import FitOptions


def _fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.isoflop.approach2 import fit_isoflop

    return fit_isoflop(
        data.runs,
        method=o.isoflop_method,
        window=o.window,
        robust=o.robust,
        level=o.level,
        n_bootstrap=o.isoflop_bootstrap,
        rng=o.rng(),
        n_col=o.n_col,
    )


def _summary(f: Mapping[str, Any]) -> Lines:
    excluded = sum(b["excluded"] for b in f["budgets"])
    lines = [
        f"isoflop: a={num(f['a'])} CI {interval(f['a_ci'])} b={num(f['b'])} "
        f"CI {interval(f['b_ci'])} ({len(f['budgets'])} budgets, {excluded} excluded)",
        basis(f),
    ]
    for b in f["budgets"]:
        if b["excluded"]:
            lines.append(f"  budget {num(b['flops'], 3)} excluded: {b['reason']}")
    return lines


def _section(fit: Mapping[str, Any]) -> Lines:
    lines = [
        f"Chinchilla Approach 2 ({fit['method']}): N_opt ∝ C^a with a = {num(fit['a'])} "
        f"{interval(fit['a_ci'])}; D_opt ∝ C^b with b = {num(fit['b'])} "
        f"{interval(fit['b_ci'])}.",
        "",
        "| FLOPs | N_opt | D_opt | loss | sizes | excluded |",
        "|---|---|---|---|---|---|",
    ]
    for b in fit["budgets"]:
        reason = b["reason"] if b["excluded"] else ""
        lines.append(
            f"| {num(b['flops'], 3)} | {num(b['n_opt'])} | {num(b['d_opt'])} | "
            f"{num(b['loss_opt'])} | {b['n_points']} | {reason} |"
        )
    return lines


def _answer(fit: Mapping[str, Any]) -> Lines:
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


def _plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.isoflop import isoflop_curves, isoflop_optimal

    return [isoflop_curves(fit, out), isoflop_optimal(fit, out)]


def _envelope_fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.isoflop.envelope import envelope_curves, fit_envelope

    curves = data.curves(m.VAL_LOSS, m.FLOPS)
    if curves is None:
        raise UserError(
            f"isoflop-envelope (Approach 1) needs per-step curves `{m.VAL_LOSS}` and "
            f"`{m.FLOPS}`: an MLflow sweep has them; for a file, give --curves FILE"
        )
    return fit_envelope(envelope_curves(data.runs, curves), level=o.level)


def _envelope_summary(f: Mapping[str, Any]) -> Lines:
    return [
        f"isoflop-envelope: a={num(f['a'])} CI {interval(f['a_ci'])} "
        f"({f['n_points']} sizes on the envelope)"
    ]


def _envelope_section(f: Mapping[str, Any]) -> Lines:
    return [
        "Chinchilla Approach 1 (Hoffmann et al. 2022, §3.1): at each point of a log-spaced "
        "FLOP grid, the run whose training curve is lowest there; N_opt ∝ C^a fitted "
        f"(grid points that at least two sizes cover): a = {num(f['a'])} {interval(f['a_ci'])} "
        f"over the {f['n_points']} sizes on the envelope, each at the middle of the FLOPs it "
        "holds."
    ]


KINDS = (
    FitKind(
        name="isoflop",
        title="isoFLOP profiles (Chinchilla Approach 2)",
        fit=_fit,
        headline=lambda f: finite({"fit.isoflop.a": f.a, "fit.isoflop.b": f.b}),
        summary=_summary,
        section=_section,
        answer=_answer,
        plots=_plots,
        captions={
            "isoflop_curves.png": "isoFLOP profiles: loss against N per budget, fitted curves, "
            "minima.",
            "isoflop_optimal.png": "N_opt(C) and D_opt(C) with their confidence bands.",
        },
        predict=lambda fit, flops: fit.predict(flops),
    ),
    FitKind(
        name="isoflop-envelope",
        title="Lower envelope of the training curves (Chinchilla Approach 1)",
        fit=_envelope_fit,
        summary=_envelope_summary,
        section=_envelope_section,
    ),
)
