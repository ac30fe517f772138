"""Registry entry of the power laws: `power-law`, L(N), L(D) and L(C) on the loss frontier
(Kaplan et al. 2020, Section 3)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalesweep.fit.base import FitData, FitKind, Lines
from scalesweep.fit.format import basis, interval, num
from scalesweep.fit.options import FitOptions


def _fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.power_law import fit_power_laws

    return fit_power_laws(data.runs, saturating=o.saturating, level=o.level, n_col=o.n_col)


def _summary(fits: Mapping[str, Any]) -> Lines:
    return [
        f"power-law L({x}): exponent {num(f['exponent'])} CI {interval(f['ci'])}\n{basis(f)}"
        for x, f in fits.items()
    ]


def _section(fits: Mapping[str, Any]) -> Lines:
    lines = ["| variable | exponent | CI | R² | E |", "|---|---|---|---|---|"]
    for x, f in fits.items():
        lines.append(
            f"| {x} | {num(f['exponent'])} | {interval(f['ci'])} | {num(f['r2'])} | {num(f['E'])} |"
        )
    return lines


def _predict(fits: Any, flops: float) -> dict[str, Any]:
    """The loss on the compute frontier at `flops` from L(C), with the confidence band and the
    prediction interval of its log-log regression (none for the saturating form); a power law
    of the loss alone allocates no N or D."""
    import numpy as np

    from scalesweep.errors import UserError
    from scalesweep.fit.numerics.regression import loglog_ols

    law = fits.get("flops")
    if law is None:
        raise UserError("power-law: no L(C) was fitted (the runs have one FLOP budget)")
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


def _plots(fits: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.power_law import power_laws

    return [power_laws(fits, out)]


KINDS = (
    FitKind(
        name="power-law",
        title="Power laws (Kaplan et al. 2020)",
        fit=_fit,
        summary=_summary,
        section=_section,
        plots=_plots,
        captions={
            "power_laws.png": "Loss on the compute frontier against each variable, with its "
            "power law."
        },
        to_dict=lambda fits: {x: f.to_dict() for x, f in fits.items()},
        predict=_predict,
    ),
)
