"""Training diagnostics across a sweep (Wortsman et al. 2023, "Small-scale proxies for
large-scale Transformer training instabilities", Sections 3.1 and 3.2).

Two instabilities show up at small scale before the loss says anything:
- attention-logit growth: without qk-layernorm the largest pre-softmax attention logit grows
  with the learning rate by orders of magnitude, and attention collapses to one-hot;
- output-logit divergence: log Z of the output softmax drifts ever further from its early
  value, without bound (healthy runs sit at a few nats); z-loss pulls it towards 0.

Per run this reads the per-step curves `train/attn_logit_max` and `train/output_logz` (logged
by the trainer every `train.log_every` steps) and keeps the largest attention logit over
training and the largest |log Z|, beside the run's LR, group columns (width, qk_norm, z_loss)
and status. Diverged runs are kept: their curves up to the divergence are the point.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.format import constant_columns, num, short
from scalesweep.fit.laws.lr.groups import default_group_by
from scalesweep.fit.runs import finite_or_none

KEYS = (m.ATTN_LOGIT_MAX, m.OUTPUT_LOGZ)


@dataclass(frozen=True)
class RunDiagnostics:
    """One run's extremes over training."""

    trial_id: str
    """The trial (child run name)."""
    key: dict[str, Any]
    """Group column -> value (width, qk_norm, z_loss)."""
    lr: float
    """Peak learning rate."""
    status: str
    """completed | diverged (failed runs have no curves worth reading)."""
    attn_logit_max: float | None
    """Largest attention logit over the logged steps (None when none was finite)."""
    output_logz_absmax: float | None
    """Largest |log Z| of the output softmax over the logged steps."""
    n_steps: int
    """Logged steps read."""
    grad_noise_scale: float | None = None
    """The gradient noise scale B_simple, in tokens, at the run's last logged step (McCandlish
    et al. 2018; logged when the run had two batch sizes: micro-batches or ranks)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            **{k: finite_or_none(v) for k, v in self.key.items()},
            "lr": finite_or_none(self.lr),
            m.STATUS: self.status,
            "attn_logit_max": finite_or_none(self.attn_logit_max),
            "output_logz_absmax": finite_or_none(self.output_logz_absmax),
            "n_steps": self.n_steps,
            "grad_noise_scale": finite_or_none(self.grad_noise_scale),
        }


@dataclass(frozen=True)
class DiagnosticsFit:
    """Per-run extremes, and the curves they came from (for the plots)."""

    runs: tuple[RunDiagnostics, ...]
    """One entry per run with curves, ordered by group, then LR."""
    group_by: tuple[str, ...]
    """Group columns."""
    curves: pd.DataFrame = field(repr=False, compare=False)
    """One row per (run, step): `trial_id, status, step, lr`, the group columns and the two
    metrics; not serialised."""
    notes: tuple[str, ...] = ()
    """What was left out."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_by": list(self.group_by),
            "runs": [r.to_dict() for r in self.runs],
            "notes": list(self.notes),
        }


def _extreme(values: pd.Series, *, absolute: bool) -> float | None:
    array = pd.to_numeric(values, errors="coerce").to_numpy(float)
    array = np.abs(array) if absolute else array
    finite = array[np.isfinite(array)]
    return float(finite.max()) if finite.size else None


def fit_diagnostics(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    group_by: Sequence[str] | None = None,
    noise: pd.DataFrame | None = None,
) -> DiagnosticsFit:
    """Per-run largest attention logit and |log Z| from `curves` (`run_id, step` and the two
    metric columns), joined to `runs` (`run_id, lr`, status, group columns) on `run_id`;
    `noise` (`run_id, step, train/grad_noise_scale`) adds each run's last noise scale.

    Example:
        >>> runs = pd.DataFrame({"run_id": ["a", "b"], "trial_id": ["t0", "t1"],
        ...                      "lr": [0.01, 1.0], "status": ["completed", "diverged"]})
        >>> curves = pd.DataFrame({"run_id": ["a", "a", "b"], "step": [10, 20, 10],
        ...                        KEYS[0]: [3.0, 5.0, 900.0], KEYS[1]: [-1.0, 2.0, -40.0]})
        >>> [(r.attn_logit_max, r.output_logz_absmax) for r in fit_diagnostics(runs, curves).runs]
        [(5.0, 2.0), (900.0, 40.0)]
    """
    _check_columns(runs, curves)
    groups = default_group_by(runs)[0] if group_by is None else tuple(group_by)
    columns = ["run_id", "lr", *groups, *(c for c in ("trial_id", m.STATUS) if c in runs)]
    info = runs[[c for c in dict.fromkeys(columns)]]
    joined = curves.drop(columns=[c for c in ("trial_id", m.STATUS) if c in info], errors="ignore")
    joined = joined.merge(info, on="run_id", how="inner").sort_values([*groups, "lr", "step"])
    if joined.empty:
        raise UserError("diagnostics: no run logged train/attn_logit_max and train/output_logz")
    last_noise: dict[Any, float] = {}
    if noise is not None and not noise.empty:
        ordered = noise.sort_values("step").groupby("run_id")[m.GRAD_NOISE_SCALE]
        last_noise = {k: float(v) for k, v in ordered.last().items()}
    results = []
    for run_id, rows in joined.groupby("run_id", sort=False):
        first = rows.iloc[0]
        results.append(
            RunDiagnostics(
                trial_id=str(first.get("trial_id", run_id)),
                key={g: _plain(first[g]) for g in groups},
                lr=float(first["lr"]),
                status=str(first.get(m.STATUS, m.COMPLETED)),
                attn_logit_max=_extreme(rows[m.ATTN_LOGIT_MAX], absolute=False),
                output_logz_absmax=_extreme(rows[m.OUTPUT_LOGZ], absolute=True),
                n_steps=len(rows),
                grad_noise_scale=last_noise.get(run_id),
            )
        )
    without = sorted(set(runs["run_id"]) - set(joined["run_id"]))
    notes = (f"diagnostics: {len(without)} run(s) without curves (failed, or not logged)",)
    return DiagnosticsFit(
        runs=tuple(results),
        group_by=groups,
        curves=joined.reset_index(drop=True),
        notes=notes if without else (),
    )


def _check_columns(runs: pd.DataFrame, curves: pd.DataFrame) -> None:
    for column, table, name in (
        ("run_id", runs, "runs"),
        ("lr", runs, "runs"),
        ("run_id", curves, "curves"),
        ("step", curves, "curves"),
    ):
        if column not in table.columns:
            raise UserError(f"diagnostics: the {name} table has no column `{column}`")
    missing = [k for k in KEYS if k not in curves.columns]
    if missing:
        raise UserError(f"diagnostics: the curves have no metric(s) {missing}")


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones; NaN (a group column a run lacks) to None."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and math.isnan(value) else value


def extremes_table(
    fit: Mapping[str, Any], key: str = "attn_logit_max"
) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of one per-run extreme (`attn_logit_max` or `output_logz_absmax`) per
    group (rows) and LR (columns), from the JSON-ready fit: Wortsman et al.'s attention-logit
    growth as a table. A diverged run's cell says so; several runs in a cell (seeds) are
    listed."""
    groups = fit["group_by"]
    lrs = sorted({r["lr"] for r in fit["runs"] if r["lr"] is not None})
    cells: dict[tuple[Any, ...], dict[float, list[str]]] = {}
    for r in fit["runs"]:
        value = "n/a" if r[key] is None else f"{r[key]:.3g}"
        if r[m.STATUS] == m.DIVERGED:
            value += " (diverged)"
        cells.setdefault(tuple(r[g] for g in groups), {}).setdefault(r["lr"], []).append(value)
    header = [*groups, *(f"lr={lr:g}" for lr in lrs)]
    rows = [
        [*group, *("; ".join(by_lr.get(lr, ["-"])) for lr in lrs)]
        for group, by_lr in sorted(cells.items(), key=lambda kv: sort_key(kv[0]))
    ]
    return header, rows


def markdown_table(fit: Mapping[str, Any], key: str = "attn_logit_max") -> list[str]:
    """`extremes_table` as Markdown lines, without the group columns that are the same in
    every run (named once below the table instead)."""
    groups = list(fit["group_by"])
    full_header, rows = extremes_table(fit, key)
    constant = constant_columns(fit["runs"], groups) if len(fit["runs"]) >= 2 else []
    same = {i for i, g in enumerate(groups) if g in constant}
    keys = [short(g) for g in groups]
    # The key alone unless two sections share it (planned.tokens and train.tokens).
    header = [g if keys.count(k) > 1 else k for g, k in zip(groups, keys, strict=True)]
    header += full_header[len(groups) :]
    lines = [
        "| " + " | ".join(h for i, h in enumerate(header) if i not in same) + " |",
        "|" + "---|" * (len(header) - len(same)),
    ]
    for row in rows:
        cells = [num(v) if i < len(groups) else str(v) for i, v in enumerate(row)]
        lines.append("| " + " | ".join(c for i, c in enumerate(cells) if i not in same) + " |")
    if same and rows:
        fixed = ", ".join(f"{groups[i]} = {num(rows[0][i])}" for i in sorted(same))
        lines += ["", f"Every run has {fixed}."]
    return lines


def sort_key(values: Sequence[Any]) -> tuple[Any, ...]:
    """Orders group keys by value (numbers, numpy's too, as numbers), None last."""
    return tuple((v is None, v if isinstance(v, numbers.Real) else str(v)) for v in values)
