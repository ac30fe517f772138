"""Running fit kinds on a runs table: the order their `requires` sets, the fit.json object, the
prediction at `--predict-flops`, and the report files.

Every caller goes through here: `scalesweep fit` (all kinds or one) and the report a sweep writes
on itself (the kinds a sweep can always answer), so both have the same shape. Still pure: the
caller reads the source and logs the files (`scalesweep.sources`, `scalesweep.tracking`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.base import FitData, notes_of
from scalesweep.fit.kinds import KINDS
from scalesweep.fit.options import FitOptions

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class FitOutcome:
    """The kinds fitted: their typed results and the fit.json object built from them."""

    fits: dict[str, Any]
    """Kind name -> typed fit result, for the kinds asked for that could be fitted."""
    result: dict[str, Any]
    """The fit.json object: source, kind, n_runs, status, fits, skipped, notes, prediction."""

    def json(self) -> str:
        """fit.json's text; when one kind was asked for, its keys also at the top level (E, A,
        … or a, b, budgets, …)."""
        asked = self.result["kind"]
        fits = self.result["fits"]
        payload = {**fits[asked], **self.result} if asked in fits else self.result
        return json.dumps(payload, indent=2, allow_nan=False, default=json_default)


def _fit_one(
    name: str, data: FitData, options: FitOptions, done: dict[str, Any], failed: dict[str, str]
) -> Any:
    """Kind `name`'s result, its requirements fitted first (each once: `done` and `failed`
    remember results and reasons across the command)."""
    if name in failed:
        raise UserError(failed[name])
    if name not in done:
        kind = KINDS[name]
        try:
            inputs = {need: _fit_one(need, data, options, done, failed) for need in kind.requires}
        except UserError as error:
            failed[name] = (
                f"{kind.needs}; here {error}"
                if kind.needs
                else f"needs {', '.join(kind.requires)}, which could not be fitted: {error}"
            )
            raise UserError(failed[name]) from None
        try:
            done[name] = kind.fit(data, options, inputs)
        except UserError as error:
            failed[name] = str(error)
            raise
    return done[name]


def fit_all(
    data: FitData, names: Sequence[str], options: FitOptions, *, strict: bool
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(fits, skipped, notes): every kind in `names` fitted; with `strict`, a kind that cannot
    be fitted raises, else it is skipped with the reason."""
    done: dict[str, Any] = {}
    failed: dict[str, str] = {}
    fits: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    notes: list[str] = []
    for name in names:
        try:
            fits[name] = _fit_one(name, data, options, done, failed)
        except UserError as error:
            if strict:
                raise
            skipped[name] = str(error)
            continue
        notes += [n for n in notes_of(fits[name]) if n not in notes]
    return fits, skipped, notes


def prediction(fits: Mapping[str, Any], flops: float) -> tuple[dict[str, Any], dict[str, str]]:
    """(each allocating fit's answer at C, why the others gave none), every answer spending C
    as the runs count FLOPs (the convention is stated once at the top and in each answer)."""
    out: dict[str, Any] = {"flops": flops}
    unable: dict[str, str] = {}
    for name, fit in fits.items():
        predict = KINDS[name].predict
        if predict is None:
            continue
        try:
            out[name] = predict(fit, flops)
        except UserError as error:
            unable[name] = str(error)
    if len(out) == 1:
        reasons = "".join(f"; {name}: {why}" for name, why in unable.items())
        raise UserError(
            f"--predict-flops needs an isoflop, parametric or power-law fit (--kind){reasons}"
        )
    conventions = {v.get("flop_counting") for k, v in out.items() if k != "flops"}
    out["flop_counting"] = (
        conventions.pop() if len(conventions) == 1 else sorted(map(str, conventions))
    )
    return out, unable


def run_fits(
    data: FitData, names: Sequence[str], options: FitOptions, *, source: str, kind: str
) -> FitOutcome:
    """Fit the kinds `names` into a `FitOutcome`. `kind` is what was asked for: a kind's name
    (which must fit, or this raises), `all`, or `sweep` for a sweep's own report (each kind that
    cannot be fitted is skipped, saying why)."""
    fits, skipped, notes = fit_all(data, names, options, strict=kind in KINDS)
    runs = data.runs
    status = (
        runs[m.STATUS].astype(str).value_counts().to_dict()
        if m.STATUS in runs.columns
        else {"unknown": len(runs)}
    )
    result: dict[str, Any] = {
        "source": source,
        "kind": kind,
        "n_runs": len(runs),
        "status": status,
        "fits": {k: KINDS[k].to_dict(v) for k, v in fits.items()},
        "skipped": skipped,
        "notes": notes,
    }
    allocating = any(KINDS[name].predict is not None for name in fits)
    self_answered = all(KINDS[name].answers_target for name in fits)
    if options.predict_flops is not None and fits and (allocating or not self_answered):
        from scalesweep.fit.forecast.trust import backtests

        forecast, unable = prediction(fits, options.predict_flops)
        notes += [f"{name} made no forecast: {why}" for name, why in unable.items()]
        kinds = {name: KINDS[name] for name in fits}
        result["prediction"], result["backtest"] = backtests(kinds, data, options, forecast)
    if "isoflop" in fits and "parametric" in fits:
        from scalesweep.fit.forecast.approaches import compare_approaches

        result["approaches"] = compare_approaches(
            fits["isoflop"], fits["parametric"], result.get("prediction"), result.get("backtest")
        )
    return FitOutcome(fits, result)


def json_default(value: Any) -> Any:
    from scalesweep.fit.runs import finite_or_none

    converted = finite_or_none(value)
    if converted is value:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return converted


def headline_metrics(fits: Mapping[str, Any]) -> dict[str, float]:
    """The numbers each fit logs as metrics of the sweep's parent run."""
    return {k: v for name, fit in fits.items() for k, v in KINDS[name].headline(fit).items()}


def write_report(out: Path, outcome: FitOutcome, runs: pd.DataFrame | None) -> list[Path]:
    """fit.json, the plots, report.md and report.html in `out`; the files written."""
    from scalesweep.fit.plots.prediction import prediction as prediction_plot
    from scalesweep.fit.report.document import render, render_html

    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(outcome.json() + "\n")
    result = outcome.result
    plots = {name: KINDS[name].plots(fit, out) for name, fit in outcome.fits.items()}
    if result.get("prediction"):
        plots["prediction"] = [prediction_plot(outcome.fits, result["prediction"], out)]
    names = {kind: [p.name for p in paths] for kind, paths in plots.items()}
    (out / "report.md").write_text(render(result, names))
    (out / "report.html").write_text(render_html(result, plots, runs))
    reports = [out / "fit.json", out / "report.html", out / "report.md"]
    return reports + [p for paths in plots.values() for p in paths]
