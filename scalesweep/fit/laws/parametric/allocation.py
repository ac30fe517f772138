"""Compute-optimal allocation under a fitted L(N, D) = E + A/N^α + B/D^β, in the runs' C.

`--predict-flops C` must mean the same C for every answer. The isoFLOP fit's budgets are the
runs' `flops`, counted under `train.flop_counting`; so the parametric answer spends C the same
way: C = k·N^p·D, with (k, p) fitted to the runs' flops / tokens against the N the fit used
(exactly k = 6, p = 1 when the N pairs with the convention as C = 6·N·D, e.g. total parameters
under `6N` or non-embedding ones under `kaplan`; close to it under `chinchilla` and `palm`,
whose attention terms depend on the shape). Minimising L along C = k·N^p·D:

    dL/d ln N = 0  ⇔  α·A·N^-α = p·β·B·D^-β
                   ⇔  N_opt = (α·A / (p·β·B))^(1/(α+pβ)) · (C/k)^(β/(α+pβ))

which is Hoffmann et al.'s eq. 4 (G·(C/6)^a) when k = 6 and p = 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.numerics.resampling import percentile_interval
from scalesweep.fit.runs import finite_or_none


@dataclass(frozen=True)
class FlopsPerToken:
    """C = k·N^p·D: how the runs' FLOPs relate to the N a fit used and the tokens D."""

    k: float
    """FLOPs per token per N^p (6 for C = 6ND)."""
    p: float
    """Exponent of N (1 for C = 6ND)."""
    source: str
    """How (k, p) were found: C = 6ND by definition, or fitted to the runs (max deviation)."""
    flop_counting: str | None = None
    """The runs' FLOP convention (`train.flop_counting`), when the table says."""

    def to_dict(self) -> dict[str, Any]:
        return {k: finite_or_none(v) for k, v in asdict(self).items()}


SIX_ND = FlopsPerToken(6.0, 1.0, "C = 6·N·D")


def flops_per_token(frame: pd.DataFrame, *, derived: bool, convention: str | None) -> FlopsPerToken:
    """(k, p) from the runs' `flops` / `tokens` against `params` (the N fitted), by a log-log
    line; C = 6·N·D when the table has no `flops` or its tokens were derived from them."""
    if derived or "flops" not in frame.columns:
        return FlopsPerToken(6.0, 1.0, "C = 6·N·D (the table gives no FLOPs per token)", convention)
    per_token = pd.to_numeric(frame["flops"], errors="coerce") / frame["tokens"]
    ok = np.isfinite(per_token) & (per_token > 0)
    ln_n, ln_f = np.log(frame["params"][ok].to_numpy(float)), np.log(per_token[ok].to_numpy())
    if np.unique(ln_n).size < 2:
        k = float(np.exp(np.median(ln_f - ln_n)))
        return FlopsPerToken(k, 1.0, f"C = {k:.4g}·N·D (one size)", convention)
    p, ln_k = np.polyfit(ln_n, ln_f, 1)
    worst = float(np.max(np.abs(np.expm1(ln_f - (ln_k + p * ln_n)))))
    source = f"C = k·N^p·D fitted to the runs' flops/tokens (max deviation {worst:.2%})"
    return FlopsPerToken(float(np.exp(ln_k)), float(p), source, convention)


def optimal_arrays(
    theta: np.ndarray, flops: float | np.ndarray, rule: FlopsPerToken
) -> dict[str, np.ndarray]:
    """N_opt, D_opt and L at the optimum for budget `flops`, for each row of θ = (e, a, b, α, β)
    (see the module docstring); or, for one θ, at each of an array of budgets."""
    e, a, b, alpha, beta = np.atleast_2d(theta).T
    big_e, big_a, big_b, p = np.exp(e), np.exp(a), np.exp(b), rule.p
    with np.errstate(all="ignore"):
        root = 1.0 / (alpha + p * beta)
        n_opt = (alpha * big_a / (p * beta * big_b)) ** root * (flops / rule.k) ** (beta * root)
        d_opt = flops / (rule.k * n_opt**p)
        loss = big_e + big_a / n_opt**alpha + big_b / d_opt**beta
    return {"n_opt": n_opt, "d_opt": d_opt, "loss_opt": loss}


@dataclass(frozen=True)
class ComputeOptimal:
    """The compute-optimal allocation for one budget C = k·N^p·D under the fitted law."""

    flops: float
    """The budget C, in the runs' FLOP convention."""
    n_opt: float
    """Parameters (the N the fit used)."""
    d_opt: float
    """Tokens."""
    loss_opt: float
    """Predicted loss L(N_opt, D_opt)."""
    flop_rule: FlopsPerToken
    """How C was spent: C = k·N^p·D and the convention it counts."""
    ci: dict[str, list[float | None]] = field(default_factory=dict)
    """Bootstrap percentile intervals for n_opt, d_opt, loss_opt (empty without bootstrap):
    the uncertainty of the fitted law at C."""
    pi: dict[str, list[float | None]] = field(default_factory=dict)
    """Prediction intervals (empty without bootstrap): of loss_opt, where the loss of a run
    trained at (N_opt, D_opt) falls, the law's uncertainty plus the scatter of single runs
    around it; of n_opt and d_opt, where a budget's own optimum falls (with 2 or more budgets
    whose isoFLOP profile has an interior minimum)."""

    def to_dict(self) -> dict[str, Any]:
        out = {k: finite_or_none(getattr(self, k)) for k in ("flops", "n_opt", "d_opt", "loss_opt")}
        out["flop_counting"] = self.flop_rule.flop_counting
        out["flop_rule"] = self.flop_rule.to_dict()
        for kind in ("ci", "pi"):
            out[kind] = {k: [finite_or_none(x) for x in v] for k, v in getattr(self, kind).items()}
        return out


def compute_optimal(
    theta: np.ndarray,
    flops: float,
    rule: FlopsPerToken = SIX_ND,
    *,
    samples: np.ndarray | None = None,
    level: float = 0.95,
    log_residuals: np.ndarray | None = None,
    log_n_deviations: np.ndarray | None = None,
) -> ComputeOptimal:
    """The recommended N, D and predicted loss for budget `flops`, with percentile intervals
    from bootstrap `samples` of θ when given. With the fit's `log_residuals` (ln L − ln L̂ per
    point) too, the loss also gets a prediction interval: each sample's ln L̂ plus a residual
    drawn at random (the bootstrap prediction interval of Davison & Hinkley 1997, §6.3.3). With
    `log_n_deviations` (how single budgets' own N_opt scatter about the law), N_opt and D_opt
    get one likewise: where a new budget's own optimum falls."""
    if not (flops > 0 and math.isfinite(flops)):
        raise UserError(f"`flops > 0` must hold, but got ({flops=})")
    point = optimal_arrays(theta, flops, rule)
    ci: dict[str, list[float | None]] = {}
    pi: dict[str, list[float | None]] = {}
    if samples is not None and len(samples):
        resampled = optimal_arrays(samples, flops, rule)
        for key, values in resampled.items():
            ci[key] = percentile_interval(values, level)
        rng = np.random.default_rng(0)
        if log_residuals is not None and len(log_residuals):
            draws = rng.choice(log_residuals, len(samples))
            pi["loss_opt"] = percentile_interval(resampled["loss_opt"] * np.exp(draws), level)
        if log_n_deviations is not None and len(log_n_deviations) >= 2:
            n_new = resampled["n_opt"] * np.exp(rng.choice(log_n_deviations, len(samples)))
            pi["n_opt"] = percentile_interval(n_new, level)
            pi["d_opt"] = percentile_interval(flops / (rule.k * n_new**rule.p), level)
    return ComputeOptimal(
        flops=float(flops),
        n_opt=float(point["n_opt"][0]),
        d_opt=float(point["d_opt"][0]),
        loss_opt=float(point["loss_opt"][0]),
        flop_rule=rule,
        ci=ci,
        pi=pi,
    )
