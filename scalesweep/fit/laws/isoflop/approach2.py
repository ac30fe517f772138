"""Chinchilla Approach 2: compute-optimal N, D and loss from isoFLOP profiles.

Approach 2 (Hoffmann et al. 2022, Section 3.2): for each FLOP budget, fit the final loss against
log N with a parabola and take its vertex as N_opt(C); then fit N_opt ∝ C^a and D_opt ∝ C^b in
log-log space (statsmodels OLS, standard errors and confidence intervals).

The default estimator per budget is Porian et al. 2024's, chosen by measurement on their 14
configurations (docs/fits.md): Akima interpolation of log L over log N, minimised on a grid of
25 points per interval, gets within 0.020 of every published exponent with the published value
inside the OLS interval on all 14, where local parabolas (`method="quadratic"`, fitted to the
`window` sizes nearest the sampled minimum, default 5) miss by up to 0.029 and cover 10. A
parabola through every size is worse still (0.073): a profile is a parabola in log N only near
its minimum. Several runs at one size (seeds, LR sweeps) count as their best loss.

Budgets are the runs' `planned.flops` when the table has it, else their FLOPs grouped within
10 %; C is in the runs' convention (`train.flop_counting`) and N is the column that convention
pairs with (`runs.choose_n`). The per-budget minima also give L_opt(C), a saturating power law
(`loss_law`), so `predict` returns N_opt, D_opt and L_opt at a new budget, each
with a confidence band (where the fitted law lies) and a prediction interval (where a new
budget's optimum falls, single budgets' scatter included).

A budget is excluded from the exponent fit, and reported with the reason, when its minimum is
not bracketed by the sampled sizes, its curvature is not positive, or it has fewer than 3 sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.laws.isoflop.loss_law import SaturatingLaw, select_window
from scalesweep.fit.laws.isoflop.profiles import OFF_CENTRE, BudgetFit, IsoflopMethod, fit_budget
from scalesweep.fit.numerics.regression import LogLogFit, loglog_ols
from scalesweep.fit.numerics.resampling import percentile_interval
from scalesweep.fit.runs import (
    PLANNED_FLOPS,
    Basis,
    choose_n,
    finite_or_none,
    flop_counting,
    group_budgets,
    planned,
    prepare,
)

NUMERIC = ("flops", "params", "loss")


@dataclass(frozen=True)
class IsoflopFit:
    """N_opt ∝ C^a and D_opt ∝ C^b from isoFLOP profiles (Chinchilla Approach 2)."""

    a: float
    """N_opt exponent."""
    b: float
    """D_opt exponent."""
    a_ci: tuple[float | None, float | None]
    """Interval for a: OLS conf_int, or the bootstrap percentile interval when bootstrapped."""
    b_ci: tuple[float | None, float | None]
    """Interval for b, likewise."""
    n_law: LogLogFit
    """The fit of N_opt against C."""
    d_law: LogLogFit
    """The fit of D_opt against C."""
    budgets: tuple[BudgetFit, ...]
    """Every budget, fitted or excluded."""
    method: str
    """"quadratic" or "akima"."""
    window: int | None
    """Sizes per parabola (None: all)."""
    level: float
    """Confidence level."""
    n_bootstrap: int = 0
    """Resamples of the loss noise requested for a_ci and b_ci; 0: OLS intervals."""
    n_bootstrap_kept: int = 0
    """Resamples behind a_ci and b_ci: those where every fitted budget kept an interior
    minimum (the budget set is the same in every resample)."""
    n_runs_excluded: int = 0
    """Runs set aside before fitting (not completed, or without a finite value)."""
    notes: tuple[str, ...] = ()
    """What was derived or set aside."""
    loss_law: SaturatingLaw | None = None
    """L_opt(C) over the fitted budgets' minima (None with fewer than 3 budgets)."""
    basis: Basis | None = None
    """Which N, which C convention and which runs the fit used."""
    bootstrap_ab: np.ndarray | None = field(default=None, repr=False, compare=False)
    """(n_bootstrap, 2) resampled (a, b); not serialised."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": finite_or_none(self.a),
            "b": finite_or_none(self.b),
            "a_ci": [finite_or_none(x) for x in self.a_ci],
            "b_ci": [finite_or_none(x) for x in self.b_ci],
            "n_law": self.n_law.to_dict(),
            "d_law": self.d_law.to_dict(),
            "budgets": [b.to_dict() for b in self.budgets],
            "method": self.method,
            "window": self.window,
            "level": self.level,
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_kept": self.n_bootstrap_kept,
            "n_runs_excluded": self.n_runs_excluded,
            "notes": list(self.notes),
            "loss_law": self.loss_law.to_dict() if self.loss_law else None,
            "basis": self.basis.to_dict() if self.basis else None,
        }

    def predict(self, flops: float) -> dict[str, Any]:
        """N_opt, D_opt (the power laws) and L_opt (the saturating law) at a budget in the
        runs' C, each with `ci`, the confidence band of its fitted law at `flops`, and `pi`,
        the prediction interval of a new budget's optimum there (null with too few budgets)."""
        x = np.array([flops], float)
        out: dict[str, Any] = {
            "flops": float(flops),
            "flop_counting": self.basis.flop_counting if self.basis else None,
            "n_opt": float(self.n_law.predict(flops)),
            "d_opt": float(self.d_law.predict(flops)),
            "loss_opt": float(self.loss_law.predict(x)[0]) if self.loss_law else None,
            "ci": {},
            "pi": {},
        }
        laws: dict[str, Any] = {"n_opt": self.n_law, "d_opt": self.d_law, "loss_opt": self.loss_law}
        for kind, prediction in (("ci", False), ("pi", True)):
            for key, law in laws.items():
                band = None if law is None else law.band(x, prediction=prediction)
                low, high = (None, None) if band is None else (band[0][0], band[1][0])
                out[kind][key] = [finite_or_none(low), finite_or_none(high)]
        return out


def budget_labels(frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The budget C of each run and where it came from: `planned.flops` when every run has
    one, else the runs' FLOPs grouped within 10 %."""
    plan = planned(frame, PLANNED_FLOPS)
    if plan is not None:
        return plan, f"budgets from `{PLANNED_FLOPS}`"
    return group_budgets(frame["flops"].to_numpy(float)), "budgets: the runs' FLOPs within 10 %"


def _fit_profiles(
    frame: pd.DataFrame,
    labels: np.ndarray,
    *,
    method: IsoflopMethod,
    window: int | None,
    robust: bool,
) -> list[BudgetFit]:
    return [
        fit_budget(group, float(budget), method=method, window=window, robust=robust)
        for budget, group in frame.groupby(labels, sort=True)
    ]


def fit_isoflop(
    runs: pd.DataFrame,
    *,
    method: IsoflopMethod = "akima",
    window: int | None = 5,
    robust: bool = False,
    level: float = 0.95,
    n_bootstrap: int = 0,
    rng: np.random.Generator | None = None,
    n_col: str | None = None,
) -> IsoflopFit:
    """Approach 2 on a runs table with columns flops, params, loss (tokens optional).

    With `n_bootstrap`, the loss noise is resampled (`_bootstrap`), the profiles refitted, and
    a_ci / b_ci are percentile intervals of the refitted exponents.

    Example:
        >>> import numpy as np, pandas as pd
        >>> rows = [(c, n, 1.7 + 400 / n**0.34 + 2000 / (c / 6 / n) ** 0.37)
        ...         for c in (1e18, 1e19, 1e20) for n in np.geomspace(1e7, 3e9, 9)]
        >>> fit = fit_isoflop(pd.DataFrame(rows, columns=["flops", "params", "loss"]))
        >>> round(fit.a, 2)
        0.52
    """
    _check(method, window)
    chosen, n_note = choose_n(runs, n_col)
    prepared = prepare(chosen, kind="isoflop", numeric=NUMERIC, positive=NUMERIC, min_rows=3)
    frame = prepared.frame
    if "tokens" in frame.columns:
        frame = frame.assign(tokens=pd.to_numeric(frame["tokens"], errors="coerce"))
    labels, how = budget_labels(frame)
    options: dict[str, Any] = {"method": method, "window": window, "robust": robust}
    budgets = _fit_profiles(frame, labels, **options)
    n_law, d_law = _exponent_fits(budgets, level=level)
    samples = _bootstrap(frame, labels, budgets, n_bootstrap, rng, level=level, **options)
    a_ci, b_ci = _percentiles(samples, level) if samples is not None else (n_law.ci, d_law.ci)
    used = [b for b in budgets if not b.excluded]
    runs_used = (
        f"the best run per size in each budget: {len(used)} of {len(budgets)} budgets fitted "
        f"from {len(frame)} completed runs ({how})"
    )
    return IsoflopFit(
        a=n_law.exponent,
        b=d_law.exponent,
        a_ci=a_ci,
        b_ci=b_ci,
        n_law=n_law,
        d_law=d_law,
        budgets=tuple(budgets),
        method=method,
        window=None if method == "akima" else window,
        level=level,
        n_bootstrap=n_bootstrap,
        n_bootstrap_kept=0 if samples is None else len(samples),
        n_runs_excluded=len(prepared.excluded),
        notes=prepared.notes + _bootstrap_notes(n_bootstrap, samples) + _centring_note(used),
        loss_law=_loss_law(used, level),
        basis=Basis(n=n_note, flop_counting=flop_counting(chosen), runs=runs_used),
        bootstrap_ab=samples,
    )


def _centring_note(used: list[BudgetFit]) -> tuple[str, ...]:
    """A note naming the budgets whose minimum sits off the centre of their sizes by more than
    `OFF_CENTRE` of the span in ln N: their vertex is biased (Czech et al. 2026)."""
    off = [b for b in used if b.centre_offset is not None and abs(b.centre_offset) > OFF_CENTRE]
    if not off:
        return ()
    where = ", ".join(f"C={b.flops:.3g} ({b.centre_offset:+.2f})" for b in off)
    return (
        f"isoflop: {len(off)} of {len(used)} budgets have their minimum off the centre of their "
        f"sizes by more than a third of the span in ln N ({where}): Approach 2 is biased there "
        "(Czech et al. 2026); centre their sizes on the optimum, or prefer Approach 3",
    )


def _check(method: str, window: int | None) -> None:
    if method not in ("quadratic", "akima"):
        raise UserError(f"`method in ('quadratic', 'akima')` must hold, but got ({method=})")
    if window is not None and window < 3:
        raise UserError(f"`window >= 3` must hold (a parabola needs 3 points), but got ({window=})")


def _loss_law(used: list[BudgetFit], level: float) -> SaturatingLaw | None:
    """L_opt(C) through the fitted budgets' minima; None with fewer than 3."""
    if len(used) < 3:
        return None
    minima = np.array([[b.flops, b.loss_opt] for b in used], float)
    return select_window(minima[:, 0], minima[:, 1], level=level)


def _smooth(log_n: np.ndarray, log_loss: np.ndarray) -> tuple[np.ndarray, int]:
    """(smoothed ln L, parameters used) of one budget: a polynomial in ln N of degree 3, through
    the points with 4 sizes or fewer (such a budget measures no noise: it adds none to the pool,
    and the pool's scale counts its parameters)."""
    degree = min(3, np.unique(log_n).size - 1)
    if degree < 1:
        return log_loss.copy(), len(log_loss)
    centred = log_n - log_n.mean()
    return np.polyval(np.polyfit(centred, log_loss, degree), centred), degree + 1


def _bootstrap(
    frame: pd.DataFrame,
    labels: np.ndarray,
    budgets: list[BudgetFit],
    n: int,
    rng: np.random.Generator | None,
    *,
    level: float,
    **options: Any,
) -> np.ndarray | None:
    """(kept resamples, 2) refitted (a, b), None when `n` is 0, by resampling the loss noise:
    the sizes are a chosen design, not random draws, so they stay; each budget's ln L is
    smoothed in ln N (`_smooth`) and every run gets its smoothed value plus a residual drawn
    from all runs' (Efron and Tibshirani 1993, §9.5: bootstrapping residuals), scaled up for
    the parameters the smoothing used. Budgets the fit excluded stay out; a resample in which a
    kept budget loses its interior minimum is dropped, not refitted on fewer budgets, so the
    budget set, and what the exponents mean, is the same in every resample."""
    if not n:
        return None
    generator = rng or np.random.default_rng(0)
    kept = [b.flops for b in budgets if not b.excluded]
    rows = np.concatenate([np.flatnonzero(labels == c) for c in kept])
    sample, sample_labels = frame.iloc[rows].reset_index(drop=True), labels[rows]
    log_n, log_loss = (
        np.log(sample["params"].to_numpy(float)),
        np.log(sample["loss"].to_numpy(float)),
    )
    smooth, used = np.empty_like(log_loss), 0
    for c in kept:
        at = sample_labels == c
        smooth[at], parameters = _smooth(log_n[at], log_loss[at])
        used += parameters
    residuals = log_loss - smooth
    residuals = (residuals - residuals.mean()) * np.sqrt(
        len(residuals) / max(len(residuals) - used, 1)
    )
    draws = []
    for _ in range(n):
        noisy = sample.assign(loss=np.exp(smooth + generator.choice(residuals, len(residuals))))
        refitted = _fit_profiles(noisy, sample_labels, **options)
        if any(b.excluded for b in refitted):
            continue
        n_b, d_b = _exponent_fits(refitted, level=level)
        draws.append((n_b.exponent, d_b.exponent))
    return np.array(draws, dtype=float).reshape(-1, 2)


def _percentiles(samples: np.ndarray, level: float) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    a_ci, b_ci = (percentile_interval(samples[:, j], level) for j in (0, 1))
    return (a_ci[0], a_ci[1]), (b_ci[0], b_ci[1])


def _bootstrap_notes(requested: int, samples: np.ndarray | None) -> tuple[str, ...]:
    if samples is None or len(samples) == requested:
        return ()
    return (
        f"isoflop bootstrap: {len(samples)} of {requested} resamples kept; in the others a "
        f"fitted budget lost its interior minimum (the interval is over the kept ones)",
    )


def _exponent_fits(budgets: list[BudgetFit], *, level: float) -> tuple[LogLogFit, LogLogFit]:
    kept = [b for b in budgets if not b.excluded]
    if len(kept) < 2:
        reasons = "; ".join(f"C={b.flops:.3g}: {b.reason}" for b in budgets if b.excluded)
        raise UserError(
            f"isoflop fit needs at least 2 budgets with an interior minimum, but got "
            f"{len(kept)} of {len(budgets)} ({reasons})"
        )
    flops = np.array([b.flops for b in kept])
    n_opt = np.array([b.n_opt for b in kept], dtype=float)
    d_opt = np.array([b.d_opt for b in kept], dtype=float)
    return loglog_ols(flops, n_opt, level=level), loglog_ols(flops, d_opt, level=level)
