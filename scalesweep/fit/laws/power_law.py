"""Kaplan-style power laws of loss against N, D or C (Kaplan et al. 2020, Section 3).

`L(X) = k·X^p` is fitted as a line in log-log space with statsmodels OLS (standard error,
confidence interval and R² of the exponent). Only the frontier is fitted: the lowest loss at
each X (each size for N, each token count for D, each FLOP budget for C), because Kaplan's laws
describe the best loss reachable at X, not every run of a sweep. `saturating=True` fits
`L = E + A·X^(-α)` instead (nonlinear least squares on L, with asymptotic standard errors),
for when the irreducible loss E bends the log-log line. N is the column the runs' FLOP
convention pairs with (`runs.choose_n`; non-embedding for `kaplan`, Kaplan et al.'s N).

Which runs make one law (`fit_power_laws`):
- Groups: every run parameter that varies, except the LR, the seed and branch lineage (the
  LR-sensitivity fit's own rule, `lr.groups.default_group_by`), and except the columns the
  variable itself fixes (the width, at each N): a law is fitted per group, so an intervention
  (qk-layernorm, a parameterization) is never pooled into one frontier.
- Values of X within 1 % are one (qk-layernorm's 64 gains do not make a new model size; FLOP
  budgets within 10 %, as everywhere), and a law needs 3 distinct values (4 saturating).
- A law whose exponent's interval holds 0 (or that has no interval) is not `resolved`: the
  loss may not fall with X at all. It is reported as such, never as an answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.laws.lr.groups import default_group_by, group_key
from scalesweep.fit.numerics.regression import loglog_ols, t_quantile
from scalesweep.fit.runs import (
    SAME_SIZE,
    Basis,
    choose_n,
    finite_or_none,
    flop_counting,
    group_budgets,
    prepare,
)

KAPLAN_VARIABLES = ("params", "tokens", "flops")


@dataclass(frozen=True)
class PowerLawFit:
    """L = k·X^p, or L = E + A·X^(-α) when saturating."""

    x: str
    """The column fitted against (params, tokens or flops)."""
    exponent: float
    """p (log-log slope; negative when loss falls with X), or -α when saturating."""
    coef: float
    """k, or A when saturating."""
    se: float | None
    """Standard error of the exponent."""
    ci: tuple[float | None, float | None]
    """Confidence interval of the exponent."""
    r2: float | None
    """R² (log space for the plain law, linear space for the saturating one)."""
    n_points: int
    """Frontier points fitted."""
    saturating: bool = False
    """Whether E was fitted."""
    E: float | None = None
    """Irreducible loss (saturating only)."""
    E_ci: tuple[float | None, float | None] = (None, None)
    """Its confidence interval."""
    group: dict[str, Any] = field(default_factory=dict)
    """Group column -> value of the runs fitted ({} without groups)."""
    n_runs_excluded: int = 0
    """Runs set aside (not completed, or without a finite value)."""
    notes: tuple[str, ...] = ()
    """What was set aside."""
    basis: Basis | None = None
    """Which N, which C convention and which runs the fit used."""
    points: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    """The frontier (x, loss), for plots."""

    @property
    def resolved(self) -> bool:
        """Whether the exponent has an interval and it excludes 0 (the loss falls, or rises,
        with X beyond doubt at the fit's level)."""
        low, high = self.ci
        return low is not None and high is not None and not low <= 0.0 <= high

    def predict(self, x: Any) -> Any:
        base = self.coef * np.power(x, self.exponent)
        return base + (self.E or 0.0) if self.saturating else base

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "group": {k: finite_or_none(v) for k, v in self.group.items()},
            "resolved": self.resolved,
            "exponent": finite_or_none(self.exponent),
            "coef": finite_or_none(self.coef),
            "se": finite_or_none(self.se),
            "ci": [finite_or_none(v) for v in self.ci],
            "r2": finite_or_none(self.r2),
            "n_points": self.n_points,
            "saturating": self.saturating,
            "E": finite_or_none(self.E),
            "E_ci": [finite_or_none(v) for v in self.E_ci],
            "n_runs_excluded": self.n_runs_excluded,
            "notes": list(self.notes),
            "basis": self.basis.to_dict() if self.basis else None,
        }


def merged(values: Any, x: str) -> np.ndarray:
    """Each run's value of `x` as one of the distinct values a law sees (the geometric mean of
    values within 1 %; FLOPs grouped into budgets within 10 %)."""
    values = np.asarray(values, float)
    return group_budgets(values) if x == "flops" else group_budgets(values, SAME_SIZE)


def frontier(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """The lowest loss at each value of `x` (values merged as `merged` says)."""
    best = frame.assign(_key=merged(frame[x], x)).groupby("_key")["loss"].min()
    return pd.DataFrame({x: best.index.to_numpy(float), "loss": best.to_numpy(float)})


def _saturating(xs: np.ndarray, ys: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(E, ln A, α) and their standard errors by least squares from a grid of starts."""
    from scipy.optimize import curve_fit

    lx = np.log(xs)

    def model(lx_: np.ndarray, e: float, log_a: float, alpha: float) -> np.ndarray:
        return e + np.exp(log_a - alpha * lx_)

    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for alpha0 in (0.05, 0.1, 0.3, 0.6):
        for e0 in (0.0, 0.5 * ys.min(), 0.9 * ys.min()):
            log_a0 = math.log(max(ys.max() - e0, 1e-9)) + alpha0 * lx.min()
            try:
                popt, pcov = curve_fit(model, lx, ys, p0=[e0, log_a0, alpha0], maxfev=20000)
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((model(lx, *popt) - ys) ** 2))
            if np.isfinite(sse) and (best is None or sse < best[0]):
                best = (sse, popt, pcov)
    if best is None:
        raise UserError("power-law fit: the saturating form L = E + A·X^(-α) did not converge")
    return best[1], np.sqrt(np.clip(np.diag(best[2]), 0, None))


def fit_power_law(
    runs: pd.DataFrame,
    x: str,
    *,
    saturating: bool = False,
    level: float = 0.95,
    n_col: str | None = None,
) -> PowerLawFit:
    """L against one of params / tokens / flops over every run of `runs`, as one group (see
    the module docstring; `fit_power_laws` splits the runs into groups first).

    Example:
        >>> import numpy as np, pandas as pd
        >>> n = np.geomspace(1e6, 1e9, 10)
        >>> fit = fit_power_law(pd.DataFrame({"params": n, "loss": 30 * n**-0.076}), "params")
        >>> round(fit.exponent, 3), fit.resolved
        (-0.076, True)
    """
    chosen, n_note = choose_n(runs, n_col) if x == "params" else (runs, "not used")
    prepared = prepare(
        chosen, kind="power-law", numeric=(x, "loss"), positive=(x, "loss"), min_rows=3
    )
    law = _law(prepared.frame, x, {}, n_note, flop_counting(chosen), saturating, level)
    return replace(law, n_runs_excluded=len(prepared.excluded), notes=prepared.notes)


def _law(
    frame: pd.DataFrame,
    x: str,
    group: dict[str, Any],
    n_note: str,
    convention: str | None,
    saturating: bool,
    level: float,
) -> PowerLawFit:
    """One law on the frontier of `frame` (the prepared runs of one group)."""
    points = frontier(frame, x)
    used = f"the lowest loss at each `{x}` value: {len(points)} of {len(frame)} runs"
    minimum = 4 if saturating else 3
    if len(points) < minimum:
        raise UserError(_too_few(x, minimum, f"got {len(points)} ({_values(points[x])})"))
    xs, ys = points[x].to_numpy(float), points["loss"].to_numpy(float)
    common: dict[str, Any] = {
        "group": group,
        "basis": Basis(n=n_note, flop_counting=convention, runs=used),
        "points": points,
    }
    if saturating:
        return _saturating_fit(x, xs, ys, level, common)
    law = loglog_ols(xs, ys, level=level)
    return PowerLawFit(x, law.exponent, law.coef, law.se, law.ci, law.r2, len(xs), **common)


def _saturating_fit(
    x: str, xs: np.ndarray, ys: np.ndarray, level: float, common: dict[str, Any]
) -> PowerLawFit:
    params, se = _saturating(xs, ys, level)
    t = t_quantile(level, len(xs) - 3)
    e, log_a, alpha = params
    residual = ys - (e + np.exp(log_a) * xs**-alpha)
    r2 = 1 - float(np.sum(residual**2) / np.sum((ys - ys.mean()) ** 2))
    return PowerLawFit(
        x,
        exponent=float(-alpha),
        coef=float(math.exp(log_a)),
        se=float(se[2]),
        ci=(float(-alpha - t * se[2]), float(-alpha + t * se[2])),
        r2=r2,
        n_points=len(xs),
        saturating=True,
        E=float(e),
        E_ci=(float(e - t * se[0]), float(e + t * se[0])),
        **common,
    )


@dataclass(frozen=True)
class PowerLaws:
    """L(N), L(D), L(C) per group of runs (see the module docstring)."""

    laws: tuple[PowerLawFit, ...]
    """Every law fitted, resolved or not."""
    group_by: tuple[str, ...]
    """The candidate group columns (each law drops those its variable fixes)."""
    group_by_source: str
    """Why these columns: `--group-by`, or the run parameters that vary."""
    n_runs_excluded: int = 0
    """Runs set aside (not completed, or without a finite value), most over the variables."""
    notes: tuple[str, ...] = ()
    """What was set aside, and the laws not fitted with why."""

    @property
    def resolved(self) -> tuple[PowerLawFit, ...]:
        return tuple(law for law in self.laws if law.resolved)

    def to_dict(self) -> dict[str, Any]:
        return {
            "laws": [law.to_dict() for law in self.laws],
            "n_resolved": len(self.resolved),
            "group_by": list(self.group_by),
            "group_by_source": self.group_by_source,
            "n_runs_excluded": self.n_runs_excluded,
            "notes": list(self.notes),
        }


def split_columns(frame: pd.DataFrame, x: str, columns: Sequence[str]) -> tuple[str, ...]:
    """The `columns` that take more than one value at some value of `x` (merged): those the
    variable does not fix (the width is fixed by N; qk-layernorm is not)."""
    keyed = frame.assign(_x=merged(frame[x], x))
    return tuple(c for c in columns if keyed.groupby("_x")[c].nunique(dropna=False).max() > 1)


def _laws_of(
    runs: pd.DataFrame,
    x: str,
    columns: tuple[str, ...],
    *,
    saturating: bool,
    level: float,
    n_col: str | None,
    notes: list[str],
) -> tuple[list[PowerLawFit], int]:
    """(the laws of `x`, one per group, and the runs set aside); groups that cannot be fitted
    are named in `notes`."""
    chosen, n_note = choose_n(runs, n_col) if x == "params" else (runs, "not used")
    prepared = prepare(
        chosen, kind="power-law", numeric=(x, "loss"), positive=(x, "loss"), min_rows=3
    )
    notes += prepared.notes
    frame, minimum = prepared.frame, 4 if saturating else 3
    distinct = np.unique(merged(frame[x], x))
    if distinct.size < minimum:
        raise UserError(_too_few(x, minimum, f"got {distinct.size} ({_values(distinct)})"))
    split = split_columns(frame, x, columns)
    groups = list(frame.groupby(list(split), dropna=False, sort=True)) if split else [((), frame)]
    sizes = [np.unique(merged(rows[x], x)).size for _, rows in groups]
    if max(sizes) < minimum:
        got = f"its {len(sizes)} groups by {list(split)} have at most {max(sizes)}"
        raise UserError(_too_few(x, minimum, got))
    laws = []
    for (value, rows), size in zip(groups, sizes, strict=True):
        group = group_key(split, value) if split else {}
        if size < minimum:
            notes.append(f"power-law L({x}){_label(group)} not fitted: {size} distinct values")
            continue
        laws.append(_law(rows, x, group, n_note, flop_counting(chosen), saturating, level))
    return laws, len(prepared.excluded)


def _values(values: np.ndarray) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def _too_few(x: str, minimum: int, got: str) -> str:
    within = "10 %" if x == "flops" else "1 %"
    return (
        f"power-law fit of loss against `{x}` needs at least {minimum} distinct values of "
        f"`{x}` in a group (within {within} counted as one), but {got}"
    )


def _label(group: dict[str, Any]) -> str:
    return f" {group}" if group else ""


def fit_power_laws(
    runs: pd.DataFrame,
    *,
    saturating: bool = False,
    level: float = 0.95,
    n_col: str | None = None,
    group_by: Sequence[str] | None = None,
) -> PowerLaws:
    """L(N), L(D), L(C) per group, for whichever of params, tokens, flops the table has
    (`group_by` None: every varied run parameter but the LR, the seed and branch lineage)."""
    present = [x for x in KAPLAN_VARIABLES if x in runs.columns]
    if not present:
        raise UserError(
            f"power-law fit needs at least one of the columns {list(KAPLAN_VARIABLES)}, but the "
            f"table has columns {sorted(map(str, runs.columns))}"
        )
    columns, source = (
        default_group_by(runs) if group_by is None else (tuple(group_by), "--group-by")
    )
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise UserError(f"--group-by: column(s) {missing} are not in the table")
    laws: list[PowerLawFit] = []
    notes: list[str] = []
    reasons: list[str] = []
    excluded = 0
    for x in present:
        try:
            fitted, aside = _laws_of(
                runs, x, columns, saturating=saturating, level=level, n_col=n_col, notes=notes
            )
        except UserError as error:  # e.g. an LR sweep at one token budget still has L(N)
            reasons.append(f"power-law L({x}) not fitted: {error}")
            continue
        laws += fitted
        excluded = max(excluded, aside)
    if not laws:
        raise UserError("; ".join(reasons))
    return PowerLaws(tuple(laws), columns, source, excluded, tuple(dict.fromkeys(notes + reasons)))
