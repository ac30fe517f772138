"""Kaplan-style power laws of loss against N, D or C (Kaplan et al. 2020, Section 3).

`L(X) = k·X^p` is fitted as a line in log-log space with statsmodels OLS (standard error,
confidence interval and R² of the exponent). Only the frontier is fitted: the lowest loss at
each X (each size for N, each token count for D, each FLOP budget for C), because Kaplan's laws
describe the best loss reachable at X, not every run of a sweep. `saturating=True` fits
`L = E + A·X^(-α)` instead (nonlinear least squares on L, with asymptotic standard errors),
for when the irreducible loss E bends the log-log line. N is the column the runs' FLOP
convention pairs with (`runs.choose_n`; non-embedding for `kaplan`, Kaplan et al.'s N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.numerics.regression import loglog_ols, t_quantile
from scalesweep.fit.runs import (
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
    n_runs_excluded: int = 0
    """Runs set aside (not completed, or without a finite value)."""
    notes: tuple[str, ...] = ()
    """What was set aside."""
    basis: Basis | None = None
    """Which N, which C convention and which runs the fit used."""
    points: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    """The frontier (x, loss), for plots."""

    def predict(self, x: Any) -> Any:
        base = self.coef * np.power(x, self.exponent)
        return base + (self.E or 0.0) if self.saturating else base

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": self.x,
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


def frontier(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """The lowest loss at each value of `x` (FLOPs grouped into budgets within 10 %)."""
    keys = group_budgets(frame[x].to_numpy(float)) if x == "flops" else frame[x].to_numpy(float)
    best = frame.assign(_key=keys).groupby("_key")["loss"].min()
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
    """L against one of params / tokens / flops (see the module docstring).

    Example:
        >>> import numpy as np, pandas as pd
        >>> n = np.geomspace(1e6, 1e9, 10)
        >>> fit = fit_power_law(pd.DataFrame({"params": n, "loss": 30 * n**-0.076}), "params")
        >>> round(fit.exponent, 3)
        -0.076
    """
    chosen, n_note = choose_n(runs, n_col) if x == "params" else (runs, "not used")
    prepared = prepare(
        chosen, kind="power-law", numeric=(x, "loss"), positive=(x, "loss"), min_rows=3
    )
    points = frontier(prepared.frame, x)
    used = f"the lowest loss at each `{x}` value: {len(points)} of {len(prepared.frame)} runs"
    basis = Basis(n=n_note, flop_counting=flop_counting(chosen), runs=used)
    minimum = 4 if saturating else 3
    if len(points) < minimum:
        raise UserError(
            f"power-law fit of loss against `{x}` needs at least {minimum} distinct values of "
            f"`{x}`, but got {len(points)}"
        )
    xs, ys = points[x].to_numpy(float), points["loss"].to_numpy(float)
    common: dict[str, Any] = {
        "n_runs_excluded": len(prepared.excluded),
        "notes": prepared.notes,
        "basis": basis,
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


def fit_power_laws(
    runs: pd.DataFrame, *, saturating: bool = False, level: float = 0.95, n_col: str | None = None
) -> dict[str, PowerLawFit]:
    """L(N), L(D), L(C) for whichever of params, tokens, flops the table has."""
    present = [x for x in KAPLAN_VARIABLES if x in runs.columns]
    if not present:
        raise UserError(
            f"power-law fit needs at least one of the columns {list(KAPLAN_VARIABLES)}, but the "
            f"table has columns {sorted(map(str, runs.columns))}"
        )
    fits: dict[str, PowerLawFit] = {}
    why: dict[str, str] = {}
    for x in present:
        try:
            fits[x] = fit_power_law(runs, x, saturating=saturating, level=level, n_col=n_col)
        except UserError as error:  # e.g. an LR sweep at one token budget still has L(N)
            why[x] = str(error)
    if not fits:
        raise UserError("; ".join(why.values()))
    first = next(iter(fits))
    skipped = tuple(f"power-law L({x}) not fitted: {reason}" for x, reason in why.items())
    fits[first] = replace(fits[first], notes=fits[first].notes + skipped)
    return fits
