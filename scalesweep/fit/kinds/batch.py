"""Registry entries for the batch-size fits: `critical-batch`, `kaplan-ns` and `kaplan-nd`.

`scalesweep.fit.kinds` builds a `FitKind` from each mapping in `ENTRIES` (its fields by name),
so these kinds live beside their fits while the registry stays one list. Like the registry,
this module loads without numpy or pandas; the fits import them when they run.

Prediction points come from `FitOptions.predict_at` (`--predict-at`): `L=...` asks
critical-batch for B_crit at that loss, `N=...,S=...` asks kaplan-ns for the loss at
(N, S_min), `N=...,D=...` asks kaplan-nd for the loss at (N, D).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalesweep.fit.format import interval, num

if TYPE_CHECKING:
    from scalesweep.fit.kinds import FitData, FitOptions

Lines = list[str]
KAPLAN_FORMS = {
    "kaplan-ns": "L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S (Kaplan et al. 2020, eq. 5.6), "
    "S_min = S/(1 + B_crit(L)/B) from the critical-batch law",
    "kaplan-nd": "L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (Kaplan et al. 2020, eq. 1.5), "
    "from each run's final loss and trained tokens",
}


# --- critical batch size -----------------------------------------------------------------------


def _critical_batch(data: FitData, o: FitOptions) -> Any:
    """The critical-batch law of the runs, fitted once for the kinds that need it."""
    from scalesweep import metrics as m
    from scalesweep.fit.batch_size import fit_critical_batch

    key = ("critical-batch", o.group_by, o.level)
    if key not in data.shared:
        curves = data.curves(m.VAL_LOSS)
        data.shared[key] = fit_critical_batch(data.runs, curves, group_by=o.group_by, level=o.level)
    return data.shared[key]


def _critical_fit(data: FitData, o: FitOptions) -> Any:
    from dataclasses import replace

    fit = _critical_batch(data, o)
    at = tuple(fit.predict(p["L"]) for p in o.predict_at if set(p) == {"L"})
    return replace(fit, predictions=at)


def _critical_summary(f: Mapping[str, Any]) -> Lines:
    lines = [
        f"critical-batch: B*={num(f['b_star'])} CI {interval(f['b_star_ci'])} "
        f"alpha_B={num(f['alpha_b'])} CI {interval(f['alpha_b_ci'])} "
        f"({f['n_levels_used']} loss levels, {len(f['batch_sizes'])} batch sizes, "
        f"{f['interval']})"
    ]
    for p in f["predictions"]:
        lines.append(f"  B_crit(L={num(p['loss'])}) = {num(p['b_crit'])} CI {interval(p['ci'])}")
    return lines


def _critical_section(f: Mapping[str, Any]) -> Lines:
    lines = [
        "B_crit(L) = B*·L^(−1/α_B) (Kaplan et al. 2020 eq. 5.3), each B_crit = E_min/S_min from "
        "S(B) = S_min + E_min/B over the batch sizes that reached L (McCandlish et al. 2018).",
        "",
        f"B* = {num(f['b_star'])} tokens {interval(f['b_star_ci'])}, α_B = {num(f['alpha_b'])} "
        f"{interval(f['alpha_b_ci'])}; intervals: {f['interval']}; groups: "
        f"{', '.join(f['group_by']) or 'none'}; batch sizes (tokens): "
        f"{', '.join(num(b, 3) for b in f['batch_sizes'])}.",
        "",
        "| group | L | batch sizes | S_min | E_min | B_crit | CI | used |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lv in f["levels"]:
        group = ", ".join(f"{k}={num(v, 3)}" for k, v in lv["group"].items()) or "all"
        lines.append(
            f"| {group} | {num(lv['loss'])} | {len(lv['batch'])} | {num(lv['s_min'])} | "
            f"{num(lv['e_min'])} | {num(lv['b_crit'])} | {interval(lv['b_crit_ci'])} | "
            f"{'yes' if lv['used'] else lv['reason']} |"
        )
    for p in f["predictions"]:
        lines.append(f"\nB_crit at L = {num(p['loss'])}: {num(p['b_crit'])} {interval(p['ci'])}.")
    return lines


def _critical_plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit import batch_plots

    return [batch_plots.critical_batch_contours(fit, out), batch_plots.critical_batch_law(fit, out)]


# --- Kaplan L(N, S_min) and L(N, D) ------------------------------------------------------------


def _ns_fit(data: FitData, o: FitOptions) -> Any:
    from scalesweep import metrics as m
    from scalesweep.fit.kaplan import fit_kaplan_ns

    curves = data.curves(m.VAL_LOSS)
    return fit_kaplan_ns(data.runs, curves, group_by=o.group_by, level=o.level,
                         predict_at=o.predict_at, critical=_critical_batch(data, o))  # fmt: skip


def _nd_fit(data: FitData, o: FitOptions) -> Any:
    from scalesweep.fit.kaplan import fit_kaplan_nd

    return fit_kaplan_nd(data.runs, level=o.level, predict_at=o.predict_at)


def _kaplan_names(f: Mapping[str, Any]) -> list[str]:
    return [k for k in f["ci"]]


def _kaplan_summary(kind: str) -> Any:
    def summary(f: Mapping[str, Any]) -> Lines:
        values = " ".join(f"{k}={num(f[k])} CI {interval(f['ci'][k])}" for k in _kaplan_names(f))
        lines = [f"{kind}: {values} ({f['n_points']} points, {f['interval']})"]
        for p in f["predictions"]:
            where = ", ".join(f"{k}={num(v, 3)}" for k, v in p.items() if k not in ("loss", "ci"))
            lines.append(f"  L({where}) = {num(p['loss'])} CI {interval(p['ci'])}")
        return lines

    return summary


def _kaplan_section(kind: str) -> Any:
    def section(f: Mapping[str, Any]) -> Lines:
        lines = [
            f"{KAPLAN_FORMS[kind]}; least squares on ln L.",
            "",
            "| parameter | estimate | CI |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {num(f[k])} | {interval(f['ci'][k])} |" for k in _kaplan_names(f)]
        lines += [
            "",
            f"{f['n_points']} points from {f['n_runs']} runs, RMSE of ln L "
            f"{num(f['rmse_log'])}; intervals: {f['interval']}.",
        ]
        for p in f["predictions"]:
            where = ", ".join(f"{k} = {num(v, 3)}" for k, v in p.items() if k not in ("loss", "ci"))
            lines.append(f"\nPredicted loss at {where}: {num(p['loss'])} {interval(p['ci'])}.")
        return lines

    return section


def _kaplan_headline(kind: str) -> Any:
    prefix = "fit." + kind.replace("-", "_")

    def headline(fit: Any) -> dict[str, float]:
        return {f"{prefix}.{k}": float(v) for k, v in fit.values().items()}

    return headline


def _kaplan_plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit import batch_plots

    return [batch_plots.kaplan_law(fit, out)]


ENTRIES: tuple[dict[str, Any], ...] = (
    {
        "name": "critical-batch",
        "title": "Critical batch size B_crit(L) (McCandlish et al. 2018; Kaplan et al. 2020 §5.1)",
        "fit": _critical_fit,
        "headline": lambda f: {
            "fit.critical_batch.b_star": f.b_star,
            "fit.critical_batch.alpha_b": f.alpha_b,
        },
        "summary": _critical_summary,
        "section": _critical_section,
        "plots": _critical_plots,
    },
    *(
        {
            "name": kind,
            "title": f"Kaplan et al. 2020 {'L(N, S_min)' if kind == 'kaplan-ns' else 'L(N, D)'}",
            "fit": _ns_fit if kind == "kaplan-ns" else _nd_fit,
            "headline": _kaplan_headline(kind),
            "summary": _kaplan_summary(kind),
            "section": _kaplan_section(kind),
            "plots": _kaplan_plots,
        }
        for kind in ("kaplan-ns", "kaplan-nd")
    ),
)
"""The kinds' `FitKind` fields, in registry order."""


def parse_point(text: str) -> dict[str, float]:
    """`--predict-at` "N=1e9,S=1e5" -> {"N": 1e9, "S": 1e5}; the keys must be one of the forms
    {L}, {N, S} or {N, D}, the values positive numbers.

    Example:
        >>> parse_point("N=1e9, D=2e10")
        {'N': 1000000000.0, 'D': 20000000000.0}
    """
    import math

    from scalesweep.errors import UserError

    forms = ({"L"}, {"N", "S"}, {"N", "D"})
    point: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        try:
            number = float(value) if sep else math.nan
        except ValueError:
            number = math.nan
        if not (number > 0 and math.isfinite(number)):
            raise UserError(
                f"--predict-at {text!r}: `{key}` must be a positive number, "
                f"written KEY=VALUE, but got {item.strip()!r}"
            )
        point[key] = number
    if set(point) not in forms:
        raise UserError(
            f"--predict-at {text!r}: the keys must be L (critical-batch), N,S "
            f"(kaplan-ns) or N,D (kaplan-nd), but got {sorted(point)}"
        )
    return point
