"""Registry entry of `compare`: the effective compute multiplier of each value of `--variant`
against the baseline (OLMo's ladder, Marin's speedup), with bootstrap intervals, the crossover,
the wall-clock multiplier where the runs log throughput, and with `--predict-flops` the
multiplier at that budget beside a backtest."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalesweep.fit.base import FitData, FitKind, Lines, finite
from scalesweep.fit.format import basis, interval, num
from scalesweep.fit.options import FitOptions


def _fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from dataclasses import replace

    from scalesweep.fit.forecast.compare import compare_backtest
    from scalesweep.fit.laws.compare.fit import fit_compare

    shared = True if o.shared_E else None
    fit = fit_compare(
        data.runs,
        variant=o.variant,
        baseline=o.baseline,
        shared_e=shared,
        target=o.predict_flops,
        level=o.level,
        n_boot=o.bootstrap,
        rng=o.rng(),
    )
    if o.predict_flops is None or fit.laws is None:
        return fit
    return replace(fit, backtest=compare_backtest(fit, shared_e=shared, rng=o.rng()))


def _times(value: Any) -> str:
    return "n/a" if value is None else f"{num(value, 3)}×"


def _point(p: Mapping[str, Any]) -> str:
    wall = f"; wall clock {_times(p['wall_clock'])}" if p.get("wall_clock") is not None else ""
    return f"M = {_times(p['multiplier'])} {interval(p['ci'])}{wall}"


def _headline_point(c: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """(where, point): the target when asked for, else the largest budget."""
    if c["at_target"]:
        return f"C = {num(c['at_target']['flops'], 3)} (target, extrapolated)", c["at_target"]
    last = c["at_budgets"][-1]
    return f"C = {num(last['flops'], 3)} (largest budget)", last


def _crossing(fit: Mapping[str, Any], c: Mapping[str, Any]) -> str:
    if fit["method"] != "laws":
        return "crossover: not estimated without a law"
    if c["crossover"] is None:
        return "no crossover within 1000× the largest budget"
    where = "inside the data" if c["crossover"] <= fit["budgets"][-1] else "beyond the data"
    share = c["crossover_share"]
    resamples = f", in {share:.0%} of the resamples" if share is not None else ""
    return (
        f"crossover (M = 1) at C = {num(c['crossover'], 3)} ({where}; "
        f"{interval(c['crossover_ci'])}{resamples})"
    )


def _head(fit: Mapping[str, Any]) -> str:
    how = (
        f"a law L(C) = E + A·C^-α per value ({'E shared' if fit['shared_E'] else 'own E'})"
        if fit["method"] == "laws"
        else "per-budget multipliers, no law"
    )
    return (
        f"compare {fit['variant']}: baseline {fit['baseline']} ({fit['baseline_why']}); {how}, "
        f"{len(fit['budgets'])} budgets, {fit['level']:.0%} bootstrap intervals "
        f"({fit['bootstrap']} resamples)"
    )


def _summary(fit: Mapping[str, Any]) -> Lines:
    lines = [_head(fit) + "\n" + basis(fit)]
    for c in fit["comparisons"]:
        where, point = _headline_point(c)
        per_budget = ", ".join(
            f"{num(p['flops'], 3)}: {_times(p['multiplier'])} {interval(p['ci'])}"
            for p in c["at_budgets"]
        )
        verdict = "" if c["resolvable"] else " (no resolvable difference)"
        lines.append(
            f"compare {fit['variant']} = {c['value']}: {_point(point)} at {where}{verdict}\n"
            f"  per budget: {per_budget}\n  {_crossing(fit, c)}"
        )
    lines += _backtest_lines(fit.get("backtest"))
    return lines


def _backtest_lines(section: Mapping[str, Any] | None) -> Lines:
    if not section:
        return []
    lines = []
    for test in section["held_out"]:
        parts = [
            f"{value} M {_times(m['predicted'])} {interval(m['ci'])} against "
            f"{_times(m['full_fit'])} from all budgets"
            for value, m in test["multiplier"].items()
        ]
        losses = ", ".join(
            f"{value} loss {num(x['predicted'])} against {num(x['measured'])} ({x['error']:+.2%})"
            for value, x in test["loss"].items()
        )
        lines.append(
            f"  backtest: fitted up to C = {num(test['fitted_to'], 3)} (largest {test['dropped']} "
            f"left out), at C = {num(test['target'], 3)}: {'; '.join(parts)}; {losses}"
        )
    if section.get("note"):
        lines.append(f"  backtest: {section['note']}")
    return lines


def _answer(fit: Mapping[str, Any]) -> Lines:
    lines = []
    for c in fit["comparisons"]:
        where, point = _headline_point(c)
        if not c["resolvable"]:
            lines.append(
                f"- `{fit['variant']} = {c['value']}` against `{fit['baseline']}`: no resolvable "
                f"difference ({_point(point)} at {where}; every interval holds 1)"
            )
            continue
        better = "less" if (point["multiplier"] or 0) >= 1 else "more"
        caveat = (
            ""
            if point["resolved"]
            else " (its interval holds 1 there: resolved only at the measured budgets the "
            "table below marks)"
        )
        lines.append(
            f"- `{fit['variant']} = {c['value']}` reaches the loss of `{fit['baseline']}` with "
            f"{better} compute: {_point(point)} at {where}, {fit['level']:.0%} interval{caveat}"
        )
    return lines


def _section(fit: Mapping[str, Any]) -> Lines:
    lines = [_head(fit) + ".", "", "| value | C | M | interval | resolved | wall clock |"]
    lines.append("|---|---|---|---|---|---|")
    for c in fit["comparisons"]:
        points = [*c["at_budgets"], *([c["at_target"]] if c["at_target"] else [])]
        for p in points:
            where = num(p["flops"], 3) + ("" if p["measured"] else " (target)")
            cells = [c["value"], where, _times(p["multiplier"]), interval(p["ci"])]
            cells += ["yes" if p["resolved"] else "no", _times(p["wall_clock"])]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {c['value']}: {_crossing(fit, c)}." for c in fit["comparisons"]]
    for law in fit["laws"]:
        lines.append(
            f"- L(C) of {law['value']}: E = {num(law['E'])}, A = {num(law['A'])} at C0 = "
            f"{num(law['c0'], 3)}, α = {num(law['alpha'])}"
        )
    lines += [f"- {line.strip()}" for line in _backtest_lines(fit.get("backtest"))]
    return lines


def _headline(fit: Any) -> dict[str, float]:
    out = {}
    for c in fit.comparisons:
        point = c.at_target or c.at_budgets[-1]
        out[f"compare_multiplier_{c.value}"] = point.value
    return finite(out)


def _plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.compare import compare_laws, compare_multiplier

    return [compare_laws(fit, out), compare_multiplier(fit, out)]


KINDS = (
    FitKind(
        name="compare",
        title="Compute multiplier of a variant (OLMo, Marin)",
        fit=_fit,
        summary=_summary,
        section=_section,
        answer=_answer,
        headline=_headline,
        plots=_plots,
        captions={
            "compare_laws.png": "Frontier loss (best configuration per budget, mean over seeds) "
            "against compute per variant, with each law and its bootstrap band.",
            "compare_multiplier.png": "The compute multiplier M(C) of each variant against the "
            "baseline with its bootstrap band; M = 1 is no difference, diamonds the target.",
        },
        answers_target=True,
    ),
)
