"""Registry entry of the schedule family: `schedule-law`, the loss curve of any LR schedule
from a few runs (Luo et al. 2025's multi-power law; Tissue et al. 2024's LR-annealing law),
backtested on the runs it was not fitted on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalesweep import metrics as m
from scalesweep.fit.base import FitData, FitKind, Lines, finite
from scalesweep.fit.format import num
from scalesweep.fit.options import FitOptions


def _fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.schedule.fit import fit_schedule_law

    # Runs without schedule params need their LRs as logged (every step); read only then.
    types = data.runs.get("schedule.type")
    lacking = types is None or bool(types.isna().any())
    return fit_schedule_law(
        data.runs,
        data.curves(m.VAL_LOSS),
        lr_curves=data.curves(m.LR) if lacking else None,
        group_by=o.group_by,
        fit_on=o.fit_on,
        law=o.schedule_law,
        schedules=o.predict_schedule,
        cooldown=o.best_cooldown,
    )


def _headline(fit: Any) -> dict[str, float]:
    tests = fit.to_dict()["backtest"][fit.law]
    return finite(
        {
            "fit.schedule_law.mean_abs_error": tests["mean_abs_error"],
            "fit.schedule_law.worst_abs_error": tests["worst_abs_error"],
        }
    )


def _key(group: Mapping[str, Any], columns: list[str]) -> str:
    return ", ".join(f"{c}={num(group[c])}" for c in columns) or "all runs"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"


def _group_lines(f: Mapping[str, Any], g: Mapping[str, Any]) -> Lines:
    law = g["laws"][f["law"]]
    lines = [
        f"schedule-law {_key(g, f['group_by'])}: {f['law']}, fitted on {', '.join(g['fit_runs'])} "
        f"(rmse {law['fit_rmse']:.3%})"
    ]
    for t in law["backtest"]:
        lines.append(
            f"  held out {t['run']} ({t['schedule']}): predicted {num(t['predicted'])} "
            f"actual {num(t['actual'])} error {_pct(t['error'])} curve {t['curve_error']:.3%}"
        )
    for p in g["predictions"]:
        lines.append(f"  predicted {p['label']}: final loss {num(p['final'])}")
    if g["best_cooldown"]:
        b = g["best_cooldown"]
        lines.append(
            f"  best cooldown: {b['fraction']:g} of the run, {b['shape']}, "
            f"predicted final loss {num(b['loss'])}"
        )
    return lines


def _summary(f: Mapping[str, Any]) -> Lines:
    lines = [line for g in f["groups"] for line in _group_lines(f, g)]
    for name, t in f["backtest"].items():
        if t["n_runs"]:
            lines.append(
                f"  {name} on {t['n_runs']} held-out runs: mean |error| "
                f"{t['mean_abs_error']:.3%}, worst {t['worst_abs_error']:.3%}, "
                f"curve {t['mean_curve_error']:.3%}"
            )
    return [*lines, f"  law: {f['law']} ({f['why']})"]


def _backtest_table(f: Mapping[str, Any], g: Mapping[str, Any]) -> Lines:
    lines = [
        "| law | run | schedule | predicted | actual | error | curve error |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, law in g["laws"].items():
        for t in law["backtest"]:
            lines.append(
                f"| {name}{' (used)' if name == f['law'] else ''} | {t['run']} | "
                f"{t['schedule']} | {num(t['predicted'])} | {num(t['actual'])} | "
                f"{_pct(t['error'])} | {t['curve_error']:.3%} |"
            )
    return lines


def _params(g: Mapping[str, Any]) -> Lines:
    return [
        f"- {name}: "
        + ", ".join(f"{k} = {num(v)}" for k, v in law["params"].items())
        + f" (η in units of {num(g['lr_unit'])}; fit rmse {law['fit_rmse']:.3%})"
        for name, law in g["laws"].items()
    ]


def _section(f: Mapping[str, Any]) -> Lines:
    lines = [
        "L(t) from the LRs of steps 0 … t-1: the multi-power law (Luo et al. 2025) and the "
        "LR-annealing law (Tissue et al. 2024), fitted per group on the fit runs; every other "
        f"run is predicted from its schedule alone. Predictions use {f['law']}: {f['why']}.",
    ]
    for g in f["groups"]:
        lines += ["", f"**{_key(g, f['group_by'])}**, fitted on {', '.join(g['fit_runs'])}:", ""]
        lines += _params(g)
        if any(law["backtest"] for law in g["laws"].values()):
            lines += ["", *_backtest_table(f, g)]
        for p in g["predictions"]:
            lines.append(f"\nPredicted {p['label']}: final loss {num(p['final'])}.")
        if g["best_cooldown"]:
            b = g["best_cooldown"]
            lines.append(
                f"\nBest WSD cooldown at this budget: {b['fraction']:g} of the run, "
                f"{b['shape']}, predicted final loss {num(b['loss'])}."
            )
    return lines


def _answer(f: Mapping[str, Any]) -> Lines:
    header = ["group", "fitted on", "held-out final error (mean, worst)", "best cooldown"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in f["groups"]:
        law = g["laws"][f["law"]]
        error = (
            "none held out"
            if law["mean_abs_error"] is None
            else f"{law['mean_abs_error']:.2%}, {law['worst_abs_error']:.2%}"
        )
        best = g["best_cooldown"]
        cooldown = (
            "not scanned"
            if not best
            else (f"{best['fraction']:g} {best['shape']} → {num(best['loss'])}")
        )
        lines.append(
            f"| {_key(g, f['group_by'])} | {', '.join(g['fit_runs'])} | {error} | {cooldown} |"
        )
    return [*lines, "", f"Predictions use the {f['law']} law: {f['why']}."]


def _report_notes(f: Mapping[str, Any]) -> Lines:
    return [f"- schedule-law: {note}" for note in f["notes"]]


def _plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.schedule import schedule_curves

    return [schedule_curves(fit, out)]


KINDS = (
    FitKind(
        name="schedule-law",
        title="Loss curves under any LR schedule",
        fit=_fit,
        headline=_headline,
        summary=_summary,
        section=_section,
        answer=_answer,
        report_notes=_report_notes,
        plots=_plots,
        captions={
            "schedule_law.png": "Validation loss against step per group: observed points, the "
            "law over the fit runs (solid), its predictions of the held-out runs (dashed) and "
            "of schedules never run (dotted).",
        },
    ),
)
