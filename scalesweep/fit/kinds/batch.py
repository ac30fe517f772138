"""Registry entries of the batch-size family: `critical-batch` (B_crit(L), McCandlish et al.
2018; Kaplan et al. 2020 §5.1), and Kaplan et al. 2020's `kaplan-ns` (L(N, S_min), which
requires the critical-batch law) and `kaplan-nd` (L(N, D)).

Prediction points come from `FitOptions.predict_at` (`--predict-at`): `L=...` asks
critical-batch for B_crit at that loss, `N=...,S=...` asks kaplan-ns for the loss at
(N, S_min), `N=...,D=...` asks kaplan-nd for the loss at (N, D).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from scalesweep import metrics as m
from scalesweep.fit.base import FitData, FitKind, Lines
from scalesweep.fit.format import interval, num
from scalesweep.fit.options import FitOptions

# --- critical batch size -----------------------------------------------------------------------


def _critical_fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.batch.critical import fit_critical_batch

    curves = data.curves(m.VAL_LOSS)
    fit = fit_critical_batch(data.runs, curves, group_by=o.group_by, level=o.level)
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
    from scalesweep.fit.plots.batch import critical_batch_contours, critical_batch_law

    return [critical_batch_contours(fit, out), critical_batch_law(fit, out)]


# --- Kaplan L(N, S_min) and L(N, D) ------------------------------------------------------------


def _ns_fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.batch.kaplan import fit_kaplan_ns

    return fit_kaplan_ns(
        data.runs,
        data.curves(m.VAL_LOSS),
        group_by=o.group_by,
        level=o.level,
        predict_at=o.predict_at,
        critical=inputs["critical-batch"],
    )


def _nd_fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.batch.kaplan import fit_kaplan_nd

    return fit_kaplan_nd(data.runs, level=o.level, predict_at=o.predict_at)


def _kaplan_summary(name: str) -> Callable[[Mapping[str, Any]], Lines]:
    def summary(f: Mapping[str, Any]) -> Lines:
        values = " ".join(f"{k}={num(f[k])} CI {interval(f['ci'][k])}" for k in f["ci"])
        lines = [f"{name}: {values} ({f['n_points']} points, {f['interval']})"]
        for p in f["predictions"]:
            where = ", ".join(f"{k}={num(v, 3)}" for k, v in p.items() if k not in ("loss", "ci"))
            lines.append(f"  L({where}) = {num(p['loss'])} CI {interval(p['ci'])}")
        return lines

    return summary


def _kaplan_section(form: str) -> Callable[[Mapping[str, Any]], Lines]:
    def section(f: Mapping[str, Any]) -> Lines:
        lines = [f"{form}; least squares on ln L.", "", "| parameter | estimate | CI |"]
        lines.append("|---|---|---|")
        lines += [f"| {k} | {num(f[k])} | {interval(f['ci'][k])} |" for k in f["ci"]]
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


def _kaplan_headline(prefix: str) -> Callable[[Any], dict[str, float]]:
    def headline(fit: Any) -> dict[str, float]:
        return {f"{prefix}.{k}": float(v) for k, v in fit.values().items()}

    return headline


def _kaplan_plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.batch import kaplan_law

    return [kaplan_law(fit, out)]


KINDS = (
    FitKind(
        name="critical-batch",
        title="Critical batch size B_crit(L) (McCandlish et al. 2018; Kaplan et al. 2020 §5.1)",
        fit=_critical_fit,
        headline=lambda f: {
            "fit.critical_batch.b_star": f.b_star,
            "fit.critical_batch.alpha_b": f.alpha_b,
        },
        summary=_critical_summary,
        section=_critical_section,
        plots=_critical_plots,
    ),
    FitKind(
        name="kaplan-ns",
        title="Kaplan et al. 2020 L(N, S_min)",
        fit=_ns_fit,
        requires=("critical-batch",),
        needs="needs a batch-size sweep (runs at several batch sizes per model size, as "
        "search_spaces/batch_size.yaml sweeps) to fit the critical batch size B_crit(L) that "
        "turns its steps into S_min",
        headline=_kaplan_headline("fit.kaplan_ns"),
        summary=_kaplan_summary("kaplan-ns"),
        section=_kaplan_section(
            "L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S (Kaplan et al. 2020, eq. 5.6), "
            "S_min = S/(1 + B_crit(L)/B) from the critical-batch law"
        ),
        plots=_kaplan_plots,
    ),
    FitKind(
        name="kaplan-nd",
        title="Kaplan et al. 2020 L(N, D)",
        fit=_nd_fit,
        headline=_kaplan_headline("fit.kaplan_nd"),
        summary=_kaplan_summary("kaplan-nd"),
        section=_kaplan_section(
            "L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (Kaplan et al. 2020, eq. 1.5), "
            "from each run's final loss and trained tokens"
        ),
        plots=_kaplan_plots,
    ),
)
