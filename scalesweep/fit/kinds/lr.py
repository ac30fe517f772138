"""Registry entry of the LR family: `lr-sensitivity`, Wortsman et al. 2023's LR sensitivity per
group and the best LR's transfer across widths."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalesweep.fit.base import FitData, FitKind, Lines, finite
from scalesweep.fit.format import constant_columns, group_label, num, short
from scalesweep.fit.options import FitOptions


def _fit(data: FitData, o: FitOptions, inputs: Mapping[str, Any]) -> Any:
    from scalesweep.fit.laws.lr.sensitivity import DEFAULT_LR_RANGE, fit_lr_sensitivity

    return fit_lr_sensitivity(
        data.runs,
        group_by=o.group_by,
        lr_range=o.lr_range or DEFAULT_LR_RANGE,
        init_loss=o.init_loss,
        level=o.level,
    )


def _headline(fit: Any) -> dict[str, float]:
    return finite({f"fit.lr_transfer.k.{i}": t.k for i, t in enumerate(fit.transfer)})


def _scored(fit: Mapping[str, Any]) -> str:
    """`LRs in [0.003, 0.3] (the part of the asked [0.0003, 0.3] the runs' LRs span)`: the range
    the scores are an expectation over, as the law states it (`scored_range`)."""
    (lo, hi), scored = fit["lr_range"], fit.get("scored_range")
    if scored is None:
        return f"the LRs each group spans inside [{lo:g}, {hi:g}] (ranges differ: see the notes)"
    if all(abs(math.log(v / ask)) < 1e-6 for v, ask in zip(scored, (lo, hi), strict=True)):
        return f"LRs in [{lo:g}, {hi:g}]"
    return f"LRs in [{scored[0]:g}, {scored[1]:g}] (the part of [{lo:g}, {hi:g}] the LRs span)"


# More groups than this print one line for all of them (the range and the extremes); the table
# of every group is in report.md. A sweep of 80 groups printed 80 lines before.
MAX_GROUP_LINES = 6


def _summary(f: Mapping[str, Any]) -> Lines:
    groups, transfers = f["groups"], f["transfer_exponent"]
    lines = _group_lines(f) if len(groups) <= MAX_GROUP_LINES else _groups_collapsed(f)
    if len(transfers) <= MAX_GROUP_LINES:
        for t in transfers:
            key = {k: t[k] for k in f["group_by"] if k in t}
            lines.append(
                f"lr transfer {group_label(key)}: k={_exponent(t['k'])} CI {_k_interval(t['ci'])} "
                f"({t['n_widths']} widths{_unresolved(t)})"
            )
    else:
        ks = [t["k"] for t in transfers if t["k"] is not None]
        resolved = sum(bool(t.get("resolved")) for t in transfers)
        span = f"k from {num(min(ks))} to {num(max(ks))}, " if ks else ""
        lines.append(
            f"lr transfer: {len(transfers)} groups, {span}{resolved} resolved "
            "(every group in report.md)"
        )
    return [
        *lines,
        f"  sensitivity over {_scored(f)}",
        f"  groups by {f['group_by']}: {f['group_by_source']}",
    ]


def _group_lines(f: Mapping[str, Any]) -> list[str]:
    lines = []
    for g in f["groups"]:
        key = {k: g[k] for k in f["group_by"]}
        lines.append(
            f"lr-sensitivity {group_label(key)}: {num(g['sensitivity'])} "
            f"best_lr={num(g['best_lr'])} best_loss={num(g['best_loss'])} "
            f"({g['n_lr']} LRs, {g['n_diverged']} diverged)"
        )
    return lines


def _groups_collapsed(f: Mapping[str, Any]) -> list[str]:
    """One line for many groups: the sensitivities' range with the groups at its ends."""
    groups = f["groups"]
    scored = [g for g in groups if g["sensitivity"] is not None and math.isfinite(g["sensitivity"])]
    lrs = [g["best_lr"] for g in groups if g["best_lr"] is not None]
    line = f"lr-sensitivity: {len(groups)} groups by {f['group_by']}"
    if scored:
        low = min(scored, key=lambda g: g["sensitivity"])
        high = max(scored, key=lambda g: g["sensitivity"])
        keys = [{k: g[k] for k in f["group_by"]} for g in (low, high)]
        line += (
            f": sensitivity {num(low['sensitivity'])} ({group_label(keys[0])}) to "
            f"{num(high['sensitivity'])} ({group_label(keys[1])})"
        )
    if lrs:
        line += f"; best_lr {num(min(lrs))} to {num(max(lrs))}"
    diverged = sum(g["n_diverged"] for g in groups)
    return [f"{line}; {diverged} diverged (every group in report.md)"]


def _section(fit: Mapping[str, Any]) -> Lines:
    """A lead for the plots: every group's numbers are in the answer's table (one table, so
    that no second one counts its runs differently)."""
    return [
        f"Wortsman et al. 2023 LR sensitivity over {_scored(fit)} (a diverged run scores ℓ0); "
        "every group's numbers are in the answer's table above."
    ]


def _varying(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """The columns whose value differs between rows (a constant one says nothing per row)."""
    same = [] if len(rows) == 1 else constant_columns(rows, columns)
    return [c for c in columns if c not in same]


def _constants(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Lines:
    """`Every group has z_loss = 0.` for the columns `_varying` leaves out of a table."""
    fixed = [c for c in columns if c not in _varying(rows, columns)]
    if not fixed or not rows:
        return []
    return ["", "Every group has " + ", ".join(f"{c} = {num(rows[0].get(c))}" for c in fixed) + "."]


def _k_interval(ci: Sequence[float | None]) -> str:
    """`[-3.322, 3.322]`; a side left open by a best LR at the edge of the LR grid as ∞."""
    low = "-∞" if ci[0] is None else num(ci[0])
    high = "∞" if ci[1] is None else num(ci[1])
    return f"[{low}, {high}]"


def _unresolved(t: Mapping[str, Any]) -> str:
    """`; not resolved: ...` when k's interval cannot tell 0 from -1 (`TransferFit.resolved`)."""
    if t.get("resolved", True):
        return ""
    return "; not resolved: the interval the LR grid allows holds both k = 0 and k = -1"


def _exponent(k: float | None) -> str:
    """`num(k)`, with floating-point noise around 0 (|k| < 1e-9: the same best LR at every
    width) written as 0."""
    return "0" if k is not None and abs(k) < 1e-9 else num(k)


def _answer(fit: Mapping[str, Any]) -> Lines:
    cols = _varying(fit["groups"], fit["group_by"])
    header = [*map(short, cols), "best LR", "loss at best LR", "LR sensitivity", "LRs scored"]
    header += ["diverged / runs (every LR)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in fit["groups"]:
        values = [num(g[c]) for c in cols]
        values += [
            num(g["best_lr"]),
            num(g["best_loss"]),
            num(g["sensitivity"]),
            str(g["n_lr"]),
            f"{g['n_diverged']} / {g['n_runs']}",
        ]
        lines.append("| " + " | ".join(values) + " |")
    lines += _constants(fit["groups"], fit["group_by"])
    lines += [
        "",
        f"LR sensitivity (Wortsman et al. 2023): the mean excess of min(ℓ, ℓ0) over "
        f"the group's best loss, over {_scored(fit)}; a diverged run scores ℓ0. "
        "Lower is more stable. `LRs scored` counts the LRs inside that range; `diverged / runs` "
        "counts the group's runs at every LR, those outside the range included.",
    ]
    for t in fit["transfer_exponent"]:
        key = ", ".join(f"{short(c)}={num(t[c])}" for c in cols if c in t) or "all runs"
        k, ci = _exponent(t["k"]), _k_interval(t["ci"])
        verdict = "" if t.get("resolved", True) else "not resolved: "
        lines += [
            "",
            f"Best LR ∝ width^k ({key}): {verdict}k = {k} in {ci} over {t['n_widths']} widths "
            f"(the {fit['level']:.0%} CI, widened to what the LR grid's spacing allows)"
            + ("." if not verdict else ", which holds both k = 0 (the LR transfers) and k = -1."),
        ]
    return lines


def _report_notes(fit: Mapping[str, Any]) -> Lines:
    return [f"- LR-sensitivity groups: {', '.join(fit['group_by']) or 'all runs'}."]


def _plots(fit: Any, out: Path) -> list[Path]:
    from scalesweep.fit.plots.lr import lr_sensitivity_bars, lr_sensitivity_curves, lr_transfer

    written = [lr_sensitivity_curves(fit, out), lr_sensitivity_bars(fit, out)]
    if fit.transfer:
        written.append(lr_transfer(fit, out))
    return written


KINDS = (
    FitKind(
        name="lr-sensitivity",
        title="LR sensitivity",
        fit=_fit,
        headline=_headline,
        summary=_summary,
        section=_section,
        answer=_answer,
        report_notes=_report_notes,
        plots=_plots,
        captions={
            "lr_sensitivity.png": "Final validation loss against peak LR per width and "
            "intervention.",
            "lr_sensitivity_bars.png": "LR sensitivity per group.",
            "lr_transfer.png": "Best LR against width, with the fitted exponent.",
        },
    ),
)
