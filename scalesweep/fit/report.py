"""`report.md`: the headline numbers of each fit, with the plots embedded. A pure function of
the JSON-ready results, so the report says exactly what fit.json says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scalesweep.fit.format import interval, num
from scalesweep.fit.kinds import KINDS


def _prediction(p: Mapping[str, Any]) -> list[str]:
    lines = ["", f"## Prediction for C = {num(p['flops'])} FLOPs", ""]
    for source, q in p.items():
        if not isinstance(q, Mapping):
            continue
        ci = q.get("ci", {})
        loss = (
            f", loss = {num(q['loss_opt'])} {interval(ci.get('loss_opt'))}"
            if "loss_opt" in q
            else ""
        )
        lines.append(
            f"- {source}: N = {num(q['n_opt'])} {interval(ci.get('n_opt'))}, "
            f"D = {num(q['d_opt'])} {interval(ci.get('d_opt'))}{loss}"
        )
    return lines


def render(result: Mapping[str, Any], plots: Mapping[str, Sequence[str]]) -> str:
    """Markdown for `result` (the fit.json object); `plots` names each kind's plot files."""
    lines = [f"# Fit of {result['source']}", "", f"{result['n_runs']} runs: {result['status']}."]
    for note in result.get("notes", []):
        lines.append(f"- note: {note}")
    for kind in KINDS.values():
        if kind.name not in result["fits"]:
            continue
        lines += ["", f"## {kind.title}", "", *kind.section(result["fits"][kind.name])]
        for name in plots.get(kind.name, ()):
            lines += ["", f"![{name}]({name})"]
    if result.get("prediction"):
        lines += _prediction(result["prediction"])
    if result.get("skipped"):
        lines += ["", "## Skipped", ""]
        lines += [f"- {kind}: {why}" for kind, why in result["skipped"].items()]
    return "\n".join(lines) + "\n"
