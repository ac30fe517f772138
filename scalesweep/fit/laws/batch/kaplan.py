"""Kaplan et al. 2020's two-variable laws: L(N, S_min) from loss curves and L(N, D) from runs.

    L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S                      (their eq. 1.6 / 5.6)
    L(N, D)     = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D                     (their eq. 1.5)

N is the non-embedding parameter count (`params_nonembed`), as Kaplan et al. define it.
S_min is the number of steps the run would have needed at a batch far above the critical one:
S_min = S/(1 + B_crit(L)/B) (their eq. 5.4), with B_crit(L) from the `critical-batch` fit of
the same sweep, used only between its lowest and highest fitted loss levels (points beyond them
are left out, with a note). Both are fitted by least squares on ln L (relative errors; losses of
very different models weigh alike) with scipy's `curve_fit`, started from the best point of a
grid over the exponents where the amplitudes are a non-negative linear least squares (`nnls`).

Intervals:
  - L(N, S_min): a delete-one jackknife over batch sizes, refitting the critical batch law and
    then L(N, S_min) without each batch size's runs, so the interval carries the uncertainty
    of B_crit(L) and the correlation of the points of one curve. Without enough batch sizes:
    curve_fit's asymptotic covariance, which ignores both (a note says so).
  - L(N, D): asymptotic, from curve_fit's covariance (scaled by the residual variance), since
    each run gives one independent point.
Every interval is a t interval; N_c, S_c and D_c are fitted as logarithms, so theirs are
asymmetric. Predictions at new (N, S_min) or (N, D) carry a delta-method interval.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.fit.laws.batch.contours import curve_points, default_group_by
from scalesweep.fit.laws.batch.critical import CriticalBatchFit, fit_critical_batch
from scalesweep.fit.numerics.regression import t_quantile
from scalesweep.fit.numerics.resampling import jackknife_cov
from scalesweep.fit.runs import finite_or_none, group_budgets, prepare

N = m.PARAMS_NONEMBED
EXPONENT_GRID = (0.03, 0.07, 0.15, 0.3, 0.6, 1.0, 1.5)
Model = Callable[..., np.ndarray]


def _log_ns(x: np.ndarray, log_n_c: float, alpha_n: float, log_s_c: float, alpha_s: float) -> Any:
    """ln L(N, S_min); x = (ln N, ln S_min)."""
    return np.logaddexp(alpha_n * (log_n_c - x[0]), alpha_s * (log_s_c - x[1]))


def _log_nd(x: np.ndarray, log_n_c: float, alpha_n: float, log_d_c: float, alpha_d: float) -> Any:
    """ln L(N, D); x = (ln N, ln D)."""
    return alpha_d * np.logaddexp(alpha_n / alpha_d * (log_n_c - x[0]), log_d_c - x[1])


def _starts(x: np.ndarray, loss: np.ndarray, nested: bool) -> list[np.ndarray]:
    """Grid starts, best first: for fixed exponents the amplitudes are linear (nnls) in
    L = a·N^-α_N + c·S^-α_S, or in L^(1/α_D) = a·N^(-α_N/α_D) + c/D when `nested`."""
    from scipy.optimize import nnls

    scored = []
    for e1, e2 in itertools.product(EXPONENT_GRID, EXPONENT_GRID):
        p1 = e1 / e2 if nested else e1
        y = loss ** (1 / e2) if nested else loss
        design = np.column_stack([np.exp(-p1 * x[0]), np.exp(-(1 if nested else e2) * x[1])])
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.all(np.isfinite(design)) or not np.all(np.isfinite(y)):
                continue
            (a, c), _ = nnls(design, y)
        if a <= 0 or c <= 0:
            continue
        theta = np.array([math.log(a) / p1, e1, math.log(c) / (1 if nested else e2), e2])
        model = _log_nd if nested else _log_ns
        sse = float(np.sum((model(x, *theta) - np.log(loss)) ** 2))
        if math.isfinite(sse):
            scored.append((sse, theta))
    return [theta for _, theta in sorted(scored, key=lambda item: item[0])]


def _least_squares(
    model: Model, x: np.ndarray, log_loss: np.ndarray, starts: Sequence[np.ndarray], kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """(θ, covariance) of the best `curve_fit` of ln L among the first few starts."""
    from scipy.optimize import curve_fit

    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for start in starts[:4]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theta, cov = curve_fit(model, x, log_loss, p0=start, maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((model(x, *theta) - log_loss) ** 2))
        if math.isfinite(sse) and (best is None or sse < best[0]):
            best = (sse, theta, cov)
    if best is None:
        raise UserError(f"{kind}: the least-squares fit did not converge from any start")
    return best[1], best[2]


@dataclass(frozen=True)
class KaplanFit:
    """A fitted Kaplan law: four parameters, their covariance, intervals and predictions."""

    kind: str
    """`kaplan-ns` or `kaplan-nd`."""
    names: tuple[str, ...]
    """Parameter names: (N_c, alpha_N, S_c, alpha_S) or (N_c, alpha_N, D_c, alpha_D)."""
    theta: tuple[float, ...]
    """The fitted (ln N_c, α_N, ln X_c, α_X)."""
    cov: tuple[tuple[float, ...], ...]
    """Covariance of `theta` behind every interval (jackknife or asymptotic)."""
    dof: int
    """Degrees of freedom of the t quantile."""
    interval: str
    """How the intervals were made, in words."""
    n_points: int
    """Points fitted."""
    n_runs: int
    """Runs those points came from."""
    rmse: float
    """Root mean square residual of ln L."""
    level: float = 0.95
    """Confidence level."""
    predictions: tuple[dict[str, Any], ...] = ()
    """The loss, with its interval, at each requested point."""
    notes: tuple[str, ...] = ()
    """What was set aside or assumed."""
    critical_batch: CriticalBatchFit | None = field(default=None, repr=False, compare=False)
    """The B_crit(L) law that turned steps into S_min (`kaplan-ns` only)."""
    points: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    """The fitted points (N, S_min or D, loss), for plots."""

    @property
    def x(self) -> str:
        """`S` or `D`: the second variable."""
        return self.names[2][0]

    def values(self) -> dict[str, float]:
        """N_c, α_N, X_c, α_X on their natural scales."""
        t = self.theta
        return dict(zip(self.names, (math.exp(t[0]), t[1], math.exp(t[2]), t[3]), strict=True))

    def intervals(self) -> dict[str, tuple[float, float]]:
        """t intervals; N_c and X_c from those of their logarithms (inf where they overflow)."""
        t, half = self.theta, t_quantile(self.level, self.dof) * np.sqrt(np.diag(self.cov))
        out = {}
        for i, name in enumerate(self.names):
            low, high = t[i] - half[i], t[i] + half[i]
            with np.errstate(over="ignore"):
                out[name] = (
                    (float(np.exp(low)), float(np.exp(high))) if i in (0, 2) else (low, high)
                )
        return out

    def _log_loss(self, theta: Any, n: Any, x: Any) -> Any:
        model = _log_ns if self.kind == "kaplan-ns" else _log_nd
        return model(np.array(np.broadcast_arrays(np.log(n), np.log(x)), float), *theta)

    def loss(self, n: Any, x: Any) -> Any:
        """L at `n` non-embedding parameters and `x` (S_min steps or D tokens)."""
        return np.exp(self._log_loss(self.theta, n, x))

    def predict(self, n: float, x: float) -> dict[str, Any]:
        """The loss at (n, x) with its delta-method confidence interval (the gradient of ln L
        in θ by central differences)."""
        theta = np.array(self.theta)
        shifts = np.diag(1e-6 * np.maximum(np.abs(theta), 1.0))
        gradient = np.array(
            [
                (self._log_loss(theta + h, n, x) - self._log_loss(theta - h, n, x)) / (2 * h[i])
                for i, h in enumerate(shifts)
            ]
        )
        var = float(gradient @ np.asarray(self.cov) @ gradient)
        half = t_quantile(self.level, self.dof) * math.sqrt(max(var, 0.0))
        loss = float(self.loss(n, x))
        return {
            "N": n,
            self.x: x,
            "loss": loss,
            "ci": [loss * math.exp(-half), loss * math.exp(half)],
        }

    def to_dict(self) -> dict[str, Any]:
        ci = self.intervals()
        out: dict[str, Any] = {k: finite_or_none(v) for k, v in self.values().items()}
        out["ci"] = {k: [finite_or_none(v) for v in pair] for k, pair in ci.items()}
        out |= {
            "interval": self.interval,
            "n_points": self.n_points,
            "n_runs": self.n_runs,
            "rmse_log": finite_or_none(self.rmse),
            "level": self.level,
            "predictions": list(self.predictions),
            "notes": list(self.notes),
        }
        if self.critical_batch is not None:
            cb = self.critical_batch
            out["b_crit_law"] = {"b_star": cb.b_star, "alpha_b": cb.alpha_b}
        return out


def _predictions(fit: KaplanFit, at: Sequence[Mapping[str, float]]) -> tuple[dict, ...]:
    return tuple(fit.predict(p["N"], p[fit.x]) for p in at if set(p) == {"N", fit.x})


def fit_kaplan_nd(
    runs: pd.DataFrame, *, level: float = 0.95, predict_at: Sequence[Mapping[str, float]] = ()
) -> KaplanFit:
    """L(N, D) from one row per run: `params_nonembed`, `tokens` (trained) and `loss` (the
    final validation loss by default), completed runs only.

    Example (exact points from Kaplan et al.'s constants):
        >>> n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e9, 4),
        ...                                        np.geomspace(1e7, 1e10, 4)))
        >>> loss = ((6.4e13 / n) ** (0.076 / 0.095) + 1.8e13 / d) ** 0.095
        >>> fit = fit_kaplan_nd(pd.DataFrame({N: n, "tokens": d, "loss": loss}))
        >>> {k: float(f"{v:.3g}") for k, v in fit.values().items()}
        {'N_c': 64000000000000.0, 'alpha_N': 0.076, 'D_c': 18000000000000.0, 'alpha_D': 0.095}
    """
    kind = "kaplan-nd"
    ready = prepare(
        runs, kind=kind, numeric=(N, "tokens", "loss"), positive=(N, "tokens", "loss"), min_rows=6
    )
    frame = ready.frame
    for column in (N, "tokens"):
        if frame[column].nunique() < 2:
            raise UserError(
                f"{kind} needs at least 2 distinct values of `{column}`, but all "
                f"{len(frame)} runs have {column}={frame[column].iloc[0]:g}"
            )
    # token counts within 10% of each other are one (whole steps make them differ slightly)
    counts = frame.groupby(N)["tokens"].agg(lambda d: len(set(group_budgets(d.to_numpy(float)))))
    if (counts >= 2).sum() < 2:
        raise UserError(
            f"{kind} needs at least 2 model sizes (`{N}`) each trained to 2 or more token "
            f"counts (10% apart), to tell the N term from the D term, but got token counts "
            f"per size { {float(k): int(v) for k, v in counts.items()} }"
        )
    x = np.log(frame[[N, "tokens"]].to_numpy(float)).T
    log_loss = np.log(frame["loss"].to_numpy(float))
    theta, cov = _least_squares(_log_nd, x, log_loss, _starts(x, np.exp(log_loss), True), kind)
    fit = KaplanFit(
        kind=kind,
        names=("N_c", "alpha_N", "D_c", "alpha_D"),
        theta=tuple(map(float, theta)),
        cov=tuple(map(tuple, np.asarray(cov, float))),
        dof=len(frame) - 4,
        interval=f"asymptotic (curve_fit covariance, t with {len(frame) - 4} dof)",
        n_points=len(frame),
        n_runs=len(frame),
        rmse=float(np.sqrt(np.mean((_log_nd(x, *theta) - log_loss) ** 2))),
        level=level,
        notes=ready.notes,
        points=pd.DataFrame({N: frame[N], "D": frame["tokens"], "loss": frame["loss"]}),
    )
    return _with(fit, predictions=_predictions(fit, predict_at))


def _with(fit: KaplanFit, **changes: Any) -> KaplanFit:
    from dataclasses import replace

    return replace(fit, **changes)


WARMUP = "schedule.warmup"
"""Warmup length: a fraction of the run if < 1, else steps (`scalesweep.config`)."""


def learning_points(
    points: pd.DataFrame, groups: Sequence[str], table: pd.DataFrame
) -> tuple[pd.DataFrame, str]:
    """The curve points L(N, S_min) is fitted to: per (group, batch size) the run that was
    fastest to the most loss levels of the critical-batch `table` (the best LR; the lowest
    loss where no level was reached), after its warmup when the runs table says how long."""
    lowest = points.groupby([*groups, "batch", "run_id"])["loss"].min().rename("low")
    wins = table.groupby([*groups, "batch", "run_id"]).size().rename("wins")
    score = pd.concat([lowest, wins], axis=1).fillna({"wins": 0}).reset_index()
    score = score.sort_values(["wins", "low"], ascending=[False, True], kind="stable")
    best = score.groupby([*groups, "batch"]).head(1)["run_id"]
    chosen = points[points["run_id"].isin(best)]
    if WARMUP not in chosen.columns:
        return chosen, "kaplan-ns: no `schedule.warmup` column; every logged step was fitted"
    warmup = pd.to_numeric(chosen[WARMUP], errors="coerce").fillna(0.0)
    length = chosen.groupby("run_id")["step"].transform("max")
    warmup = warmup.where(warmup >= 1, warmup * length)
    return chosen[chosen["step"] > warmup], "kaplan-ns: steps within each run's warmup left out"


def _s_min(points: pd.DataFrame, log_b_star: float, slope: float) -> np.ndarray:
    """S_min = S/(1 + B_crit(L)/B) (Kaplan et al. eq. 5.4)."""
    b_crit = np.exp(log_b_star + slope * np.log(points["loss"].to_numpy(float)))
    return points["step"].to_numpy(float) / (1 + b_crit / points["batch"].to_numpy(float))


def _ns_theta(points: pd.DataFrame, law: tuple[float, float], starts: list[np.ndarray]) -> Any:
    x = np.vstack([np.log(points[N].to_numpy(float)), np.log(_s_min(points, *law))])
    log_loss = np.log(points["loss"].to_numpy(float))
    theta, cov = _least_squares(_log_ns, x, log_loss, starts, "kaplan-ns")
    return theta, cov, float(np.sqrt(np.mean((_log_ns(x, *theta) - log_loss) ** 2))), x


def _ns_covariance(
    points: pd.DataFrame, cb: CriticalBatchFit, theta: np.ndarray, cov: np.ndarray
) -> tuple[np.ndarray, int, str, tuple[str, ...]]:
    """(covariance, dof, interval in words, notes): the jackknife over batch sizes, refitting
    with each critical-batch replicate's law; else curve_fit's asymptotic `cov`."""
    if not cb.replicates:
        note = (
            "kaplan-ns: asymptotic intervals ignore B_crit's uncertainty and the correlation "
            "of one curve's points (too few batch sizes for the jackknife)"
        )
        dof = len(points) - 4
        return cov, dof, f"asymptotic (curve_fit covariance, t with {dof} dof)", (note,)
    # every batch size with points is left out once, with the law refitted without it (the
    # law's own replicate; a batch size in no level of the law leaves the law as it is)
    laws = {batch: (log_b, slope) for batch, log_b, slope in cb.replicates}
    full = (math.log(cb.b_star), cb.law.exponent)
    rows = [
        _ns_theta(points[points["batch"] != batch], laws.get(batch, full), [theta])[0]
        for batch in sorted(points["batch"].unique())
    ]
    interval = f"jackknife over {len(rows)} batch sizes (B_crit law refitted each time)"
    return jackknife_cov(np.array(rows)), len(rows) - 1, interval, ()


def fit_kaplan_ns(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None,
    *,
    group_by: Sequence[str] | None = None,
    level: float = 0.95,
    predict_at: Sequence[Mapping[str, float]] = (),
    critical: CriticalBatchFit | None = None,
) -> KaplanFit:
    """L(N, S_min) from the curves of a batch-size sweep (see the module docstring): the
    `critical-batch` fit first (`critical`, when the caller has it for the same runs, groups
    and level), then S_min per curve point, then the four-parameter law."""
    kind = "kaplan-ns"
    if N not in runs.columns:
        raise UserError(
            f"{kind} needs the non-embedding parameter count `{N}` in the runs "
            f"table (map one with --col {N}=SOURCE)"
        )
    groups = tuple(default_group_by(list(runs.columns)) if group_by is None else group_by)
    cb = critical or fit_critical_batch(runs, curves, group_by=groups, level=level)
    extra = [c for c in (N, WARMUP) if c not in groups and c in runs.columns]
    points, notes = curve_points(runs, curves, (*groups, *extra), kind=kind)
    points, warmup_note = learning_points(points, groups, cb.table)
    used = [lv.loss for lv in cb.levels if lv.used]
    top, bottom = max(used), min(used)
    early, late = int((points["loss"] > top).sum()), int((points["loss"] < bottom).sum())
    points = points[(points["loss"] <= top) & (points["loss"] >= bottom)]
    notes += (
        f"{kind}: {early} points above L={top:.4g} and {late} below L={bottom:.4g}, the highest "
        "and lowest loss levels of the critical-batch law, left out (B_crit(L) is not measured "
        "beyond them, and S_min would rest on the law's extrapolation)",
    )
    if points[N].nunique() < 2:
        raise UserError(
            f"{kind} needs runs of at least 2 model sizes (`{N}`), but got "
            f"{sorted(points[N].unique())}"
        )
    law = (math.log(cb.b_star), cb.law.exponent)
    x = np.vstack([np.log(points[N].to_numpy(float)), np.log(_s_min(points, *law))])
    theta, cov, rmse, x = _ns_theta(points, law, _starts(x, points["loss"].to_numpy(float), False))
    cov, dof, interval, note = _ns_covariance(points, cb, theta, cov)
    notes += note
    fit = KaplanFit(
        kind=kind,
        names=("N_c", "alpha_N", "S_c", "alpha_S"),
        theta=tuple(map(float, theta)),
        cov=tuple(map(tuple, np.asarray(cov, float))),
        dof=dof,
        interval=interval,
        n_points=len(points),
        n_runs=points["run_id"].nunique(),
        rmse=rmse,
        level=level,
        notes=(*notes, warmup_note),
        critical_batch=cb,
        points=pd.DataFrame({N: points[N], "S": np.exp(x[1]), "loss": points["loss"]}),
    )
    return _with(fit, predictions=_predictions(fit, predict_at))
