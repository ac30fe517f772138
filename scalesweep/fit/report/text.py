"""The text summary `scalesweep fit` prints: a few lines per fit, the prediction, what was
skipped. Like the report, a pure function of the fit.json object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scalesweep.fit.base import Lines
from scalesweep.fit.format import interval, num
from scalesweep.fit.kinds import KINDS
from scalesweep.fit.report.forecast import approaches_lines, backtest_lines


def summary(result: Mapping[str, Any]) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in result["status"].items())
    lines = [f"{result['source']}: {result['n_runs']} runs ({counts})"]
    for name, fit in result["fits"].items():
        lines += KINDS[name].summary(fit)
    if result.get("prediction"):
        lines += prediction_lines(result["prediction"])
        lines += backtest_lines(result.get("backtest", {}))
    if result.get("approaches"):
        lines += [f"approaches: {line}" for line in approaches_lines(result["approaches"])]
    for kind, why in result.get("skipped", {}).items():
        lines.append(f"skipped {kind}: {why}")
    return "\n".join(lines)


def prediction_lines(prediction: Mapping[str, Any]) -> Lines:
    """One line per fit: each answer with its CI (the law) and, where it has one, its PI (a new
    budget's or run's value)."""
    convention = prediction["flop_counting"] or "FLOP convention unknown"
    lines = [f"prediction at C = {num(prediction['flops'])} ({convention}):"]
    for name, answer in prediction.items():
        if not isinstance(answer, dict):
            continue
        parts = []
        for key, label in (("n_opt", "N_opt"), ("d_opt", "D_opt"), ("loss_opt", "loss")):
            if answer.get(key) is None:
                continue
            part = f"{label}={num(answer.get(key))} CI {interval(answer['ci'].get(key))}"
            if answer.get("pi", {}).get(key):
                part += f" PI {interval(answer['pi'][key])}"
            parts.append(part)
        lines.append(f"  {name}: " + "; ".join(parts))
    return lines
