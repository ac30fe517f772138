"""How far to trust the forecast, as the report and the text summary say it: the backtests that
held out the largest budget, how they widened the prediction intervals, and Approaches 2 and 3
side by side (fit.json's `backtest` and `approaches`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scalesweep.fit.base import Lines
from scalesweep.fit.format import interval, num

QUANTITY_LABELS = {"loss_opt": "optimal loss", "n_opt": "N_opt", "d_opt": "D_opt"}


def percent(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.1f} %" if abs(value) >= 0.01 else f"{100 * value:+.2f} %"


def held_out_sentence(name: str, test: Mapping[str, Any]) -> str:
    """ "fitted without 3.2e+18, isoflop predicted 3.2e+18's optimal loss within +0.95 %, its
    N_opt within +6.8 % and its D_opt within −6.4 %" for one backtest of the largest budget."""
    target, fitted = num(test["target"], 3), num(test["fitted_to"], 3)
    dropped = f"{target}" if test["ahead"] == 1 else f"its {test['ahead']} largest budgets"
    errors = [
        f"{label} within {percent(test['error'][q])}"
        for q, label in QUANTITY_LABELS.items()
        if test["error"].get(q) is not None
    ]
    said = ", its ".join(errors)
    return f"fitted up to {fitted} (without {dropped}), {name} predicted {target}'s {said}"


def _per_efold(rate: float) -> str:
    """A log miss per e-fold as a user reads it: `0.5 %` when small, `×2.0` when large."""
    return f"{100 * rate:.2g} %" if rate < 0.1 else f"×{math.exp(rate):.2g}"


def _calibration_sentence(name: str, test: Mapping[str, Any]) -> str | None:
    cal = test["calibration"]
    parts = []
    for quantity, label in QUANTITY_LABELS.items():
        kappa, rate = cal["factor"].get(quantity), cal["rate"].get(quantity)
        if kappa is None:
            continue
        drift = "" if not rate else f", {_per_efold(rate)} per e-fold beyond its scatter"
        parts.append(f"{label} ×{kappa:.2f}{drift}")
    if not parts:
        return None
    return (
        f"{name}'s prediction intervals are calibrated on {test['n_backtests']} backtests "
        f"({'; '.join(parts)}), for a forecast {test['efolds']:.2g} e-folds of compute beyond "
        "its largest budget; `pi_law` in fit.json is the law's own"
    )


def backtest_lines(section: Mapping[str, Any]) -> Lines:
    """Sentences for the text summary: each backtest of the largest budget, and each law's
    calibration; or why there is none."""
    lines = [f"backtest: {section['note']}"] if section.get("note") else []
    for name, test in section.items():
        if not isinstance(test, Mapping):
            continue
        lines += [f"  backtest: {held_out_sentence(name, t)}" for t in test["held_out"]]
        if test.get("note"):
            lines.append(f"  backtest: {test['note']}")
        calibrated = _calibration_sentence(name, test)
        if calibrated:
            lines.append(f"  {calibrated}")
    return lines


def backtest_table(section: Mapping[str, Any]) -> Lines:
    """The report's table of the backtests that held out the largest budget."""
    if section.get("note"):
        return [section["note"]]
    header = "| law | fitted up to | held out | loss error | N_opt error | D_opt error | in PI |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for name, test in section.items():
        if not isinstance(test, Mapping):
            continue
        for t in test["held_out"]:
            covered = [QUANTITY_LABELS[q] for q, ok in t["pi_covered"].items() if ok is False]
            cells = [name, num(t["fitted_to"], 3), num(t["target"], 3)]
            cells += [percent(t["error"].get(q)) for q in QUANTITY_LABELS]
            cells.append("yes" if not covered else "missed: " + ", ".join(covered))
            lines.append("| " + " | ".join(cells) + " |")
    notes = [test.get("note") for test in section.values() if isinstance(test, Mapping)]
    notes += [
        sentence
        for name, test in section.items()
        if isinstance(test, Mapping) and (sentence := _calibration_sentence(name, test))
    ]
    return lines + [f"\n{n}" for n in notes if n]


def _verdict(flag: bool | None, yes: str, no: str, unknown: str) -> str:
    return unknown if flag is None else yes if flag else no


def approaches_lines(approaches: Mapping[str, Any]) -> Lines:
    """Approaches 2 and 3 side by side, the diagnostics, and the recommendation."""
    two, three = approaches["approach2"], approaches["approach3"]
    agree = approaches["agree"]
    lines = [
        f"Approach 2 (isoFLOP profiles): a = {num(two['a'])} {interval(two['a_ci'])}; "
        f"Approach 3 (parametric L(N, D)): a = {num(three['a'])} {interval(three['a_ci'])}; "
        f"{_verdict(agree['a'], 'they agree', 'they disagree', 'no intervals to compare')}.",
    ]
    if "n_opt" in two and "n_opt" in three:
        lines.append(
            f"At the budget asked for: N_opt = {num(two['n_opt'])} (Approach 2) and "
            f"{num(three['n_opt'])} (Approach 3), prediction intervals "
            f"{_verdict(agree['n_opt'], 'overlapping', 'apart', 'not both known')}."
        )
    asym = approaches["alpha_minus_beta"]
    lines.append(
        f"Diagnostics (Czech et al. 2026): {len(approaches['off_centre'])} budget(s) off the "
        f"centre of their sizes by more than a third of the span; α − β = {num(asym['value'])} "
        f"{interval(asym['ci'])}{' (α ≠ β)' if asym['differ'] else ''}."
    )
    trust = {"approach2": "Approach 2", "approach3": "Approach 3", "either": "either"}
    verdict = trust.get(approaches["recommend"], "neither without a closer look")
    lines.append(f"Trust {verdict}: {approaches['why']}.")
    return lines
