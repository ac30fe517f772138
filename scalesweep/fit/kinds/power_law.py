"""Registry entry of the power laws: `power-law`, L(N), L(D) and L(C) on the loss frontier
(Kaplan et al. 2020, Section 3), one law per group of runs. Only a law whose exponent's
interval excludes 0 (`resolved`) is an answer; the others are listed as not resolved."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalesweep.fit.base import FitData, FitKind, Lines
from scalesweep.fit.format import basis, interval, num
from scalesweep.fit.options import FitOptions


def _fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.power_law import fit_power_laws

    return fit_power_laws(
        data.runs, saturating=o.saturating, level=o.level, n_col=o.n_col, group_by=o.group_by
    )


def _name(law: Mapping[str, Any]) -> str:
    """`L(params) (model.qk_norm=True)`."""
    group = ", ".join(f"{k}={num(v)}" for k, v in law["group"].items())
    return f"L({law['x']})" + (f" ({group})" if group else "")


def _unresolved(law: Mapping[str, Any]) -> str:
    return (
        f"{_name(law)}: not resolved: exponent {num(law['exponent'])} with CI "
        f"{interval(law['ci'])}, which holds 0, over {law['n_points']} values"
    )


def _summary(fit: Mapping[str, Any]) -> Lines:
    laws = fit["laws"]
    lines = [
        f"power-law {_name(law)}: exponent {num(law['exponent'])} CI {interval(law['ci'])} "
        f"({law['n_points']} values)\n{basis(law)}"
        for law in laws
        if law["resolved"]
    ]
    lines += [f"power-law {_unresolved(law)}" for law in laws if not law["resolved"]]
    return lines


def _predict(fit: Any, flops: float) -> dict[str, Any]:
    """The loss on the compute frontier at `flops` from L(C), with the confidence band and the
    prediction interval of its log-log regression (none for the saturating form); a power law
    of the loss alone allocates no N or D."""
    import numpy as np

    from scalesweep.errors import UserError
    from scalesweep.fit.numerics.regression import loglog_ols

    laws = [law for law in fit.laws if law.x == "flops"]
    if not laws:
        raise UserError("power-law: no L(C) was fitted (the runs have one FLOP budget)")
    if len(laws) > 1:
        groups = "; ".join(str(law.group) for law in laws)
        raise UserError(
            f"power-law: {len(laws)} groups have their own L(C) ({groups}); choose one with "
            "--group-by, or compare them with --kind compare"
        )
    law = laws[0]
    if not law.resolved:
        raise UserError("power-law: L(C) is not resolved (its exponent's interval holds 0)")
    answer: dict[str, Any] = {
        "flops": float(flops),
        "flop_counting": law.basis.flop_counting if law.basis else None,
        "loss_opt": float(law.predict(flops)),
        "n_opt": None,
        "d_opt": None,
        "ci": {},
        "pi": {},
    }
    if not law.saturating:
        refit = loglog_ols(law.points["flops"].to_numpy(float), law.points["loss"].to_numpy(float))
        for band, prediction in (("ci", False), ("pi", True)):
            bounds = refit.band(np.array([flops]), prediction=prediction)
            if bounds is not None:
                answer[band]["loss_opt"] = [float(bounds[0][0]), float(bounds[1][0])]
    return answer


def _answer(fit: Mapping[str, Any]) -> Lines:
    """Only the resolved laws: one whose interval holds 0 is no finding (empty: no answer)."""
    return [
        f"- {_name(law)} ∝ {law['x']}^{num(law['exponent'])}, CI {interval(law['ci'])}, over "
        f"{law['n_points']} values"
        for law in fit["laws"]
        if law["resolved"]
    ]


def _section(fit: Mapping[str, Any]) -> Lines:
    lines = [
        "| law | exponent | CI | R² | E | values | resolved |",
        "|---|---|---|---|---|---|---|",
    ]
    for law in fit["laws"]:
        cells = [_name(law), num(law["exponent"]), interval(law["ci"]), num(law["r2"])]
        cells += [num(law["E"]), str(law["n_points"]), "yes" if law["resolved"] else "**no**"]
        lines.append("| " + " | ".join(cells) + " |")
    unresolved = [f"- {_unresolved(law)}: not an answer." for law in fit["laws"]]
    unresolved = [u for u, law in zip(unresolved, fit["laws"], strict=True) if not law["resolved"]]
    groups = ", ".join(fit["group_by"]) or "none"
    return [*lines, "", *unresolved, f"\nGroups: {groups} ({fit['group_by_source']})."]


def _plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.power_law import power_laws

    return [power_laws(fit, out)]


KINDS = (
    FitKind(
        name="power-law",
        title="Power laws (Kaplan et al. 2020)",
        fit=_fit,
        summary=_summary,
        section=_section,
        answer=_answer,
        plots=_plots,
        captions={
            "power_laws.png": "Loss on the frontier against each variable, per group, with its "
            "power law (dashed: not resolved, the exponent's interval holds 0)."
        },
        predict=_predict,
    ),
)
