"""Chinchilla Approach 3: the parametric loss L(N, D) = E + A/N^α + B/D^β.

Fitted as Epoch's replication did (Besiroglu et al. 2024, "Chinchilla Scaling: A replication
attempt", Section 2): minimise the Huber loss (δ = 1e-3) between log L and
log L̂ = LSE(a − α log N, b − β log D, e), with A = e^a, B = e^b, E = e^e, **summed** over the
points (averaging shrinks the objective below L-BFGS's absolute tolerance and it stops early),
by L-BFGS. Where it starts (`method`):
- `projection` (the default): from the best local minima of a dense (α, β) grid on which
  (E, A, B) is solved exactly for each pair (`projection`, variable projection as in Czech et
  al. 2026's VPNLS): global, and ~0.1 s instead of ~1 s;
- `grid`: from every start of Epoch's grid α, β ∈ {0, 0.5, …, 2}, e ∈ {-1, -0.5, …, 1},
  a, b ∈ {0, 5, …, 25}, 4500 starts run as one batch (`numerics.lbfgs`).
The lowest objective wins and is polished by one scipy L-BFGS-B call. Both reach the same
optimum on Epoch's points and Porian et al.'s 14 sets (tests/fit/test_parametric.py).

Which runs: by default the best run of each (N, D) cell (the planned token budget, see
`runs.cell_tokens`), because the law describes the loss reachable at (N, D); off-optimal
learning rates or extra seeds of a cell would pull it up (two off-optimal runs per point moved
E from 1.800 to 1.880 on synthetic data). `all_runs=True` fits every completed run. N is the
column the runs' FLOP convention pairs with (`runs.choose_n`); predictions spend C as the runs
count it (`scalesweep.fit.laws.parametric.allocation`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalesweep.errors import UserError
from scalesweep.fit.laws.parametric.allocation import (
    SIX_ND,
    ComputeOptimal,
    FlopsPerToken,
    flops_per_token,
    optimal_arrays,
)
from scalesweep.fit.laws.parametric.allocation import compute_optimal as _allocate
from scalesweep.fit.laws.parametric.search import Method, bootstrap_arrays, fit_arrays
from scalesweep.fit.numerics.resampling import percentile_interval
from scalesweep.fit.runs import (
    Basis,
    best_per_cell,
    cell_tokens,
    choose_n,
    finite_or_none,
    flop_counting,
    group_budgets,
    prepare,
)


@dataclass(frozen=True)
class ParametricFit:
    """L(N, D) = E + A/N^α + B/D^β with its fit diagnostics."""

    E: float
    """Irreducible loss."""
    A: float
    """Model-size coefficient."""
    B: float
    """Data coefficient."""
    alpha: float
    """Model-size exponent α."""
    beta: float
    """Data exponent β."""
    a: float
    """N_opt ∝ C^a with a = β/(α+β)."""
    b: float
    """D_opt ∝ C^b with b = α/(α+β)."""
    n_points: int
    """Points fitted."""
    objective: float
    """Summed Huber loss at the optimum."""
    n_starts: int
    """L-BFGS starts (4500 for Epoch's grid; the projected surface's local minima polished
    with `projection`)."""
    n_converged: int
    """Starts that stopped by a convergence rule."""
    ci: dict[str, list[float | None]] = field(default_factory=dict)
    """Percentile bootstrap interval per parameter (E, A, B, alpha, beta, a, b)."""
    n_bootstrap: int = 0
    """Bootstrap resamples (0: no intervals)."""
    level: float = 0.95
    """Confidence level of `ci`."""
    method: Method = "projection"
    """Where L-BFGS started: the variable-projection grid's minima, or Epoch's 4500 starts."""
    n_runs_excluded: int = 0
    """Runs set aside before fitting (not completed, or without a finite value)."""
    notes: tuple[str, ...] = ()
    """What was derived or set aside (e.g. tokens = flops / (6·params))."""
    basis: Basis | None = None
    """Which N, which C convention and which runs the fit used."""
    flop_rule: FlopsPerToken = SIX_ND
    """How a budget C splits into N and D for predictions (C = k·N^p·D)."""
    bootstrap_samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    """(n_bootstrap, 5) refitted θ = (e, a, b, α, β); not serialised."""
    points: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    """The (params, tokens, loss) points fitted, for plots; not serialised."""

    @property
    def theta(self) -> np.ndarray:
        """θ = (e, a, b, α, β) = (ln E, ln A, ln B, α, β)."""
        return np.array(
            [math.log(self.E), math.log(self.A), math.log(self.B), self.alpha, self.beta]
        )

    def loss(self, n: Any, d: Any) -> Any:
        """The fitted L(N, D)."""
        return self.E + self.A / np.power(n, self.alpha) + self.B / np.power(d, self.beta)

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: finite_or_none(v)
            for k, v in asdict(self).items()
            if k not in ("ci", "bootstrap_samples", "notes", "basis", "flop_rule", "points")
        }
        out["ci"] = {k: [finite_or_none(x) for x in v] for k, v in self.ci.items()}
        out["notes"] = list(self.notes)
        out["basis"] = self.basis.to_dict() if self.basis else None
        out["flop_rule"] = self.flop_rule.to_dict()
        return out


def _law(theta: np.ndarray) -> dict[str, np.ndarray]:
    """E, A, B, α, β, a, b from rows of θ (vectorised over bootstrap samples)."""
    theta = np.atleast_2d(theta)
    e, a, b, alpha, beta = theta.T
    return {
        "E": np.exp(e),
        "A": np.exp(a),
        "B": np.exp(b),
        "alpha": alpha,
        "beta": beta,
        "a": beta / (alpha + beta),
        "b": alpha / (alpha + beta),
    }


def compute_optimal(fit: ParametricFit, flops: float) -> ComputeOptimal:
    """The recommended N, D and predicted loss for budget `flops`, spent as the runs count FLOPs
    (`fit.flop_rule`), with intervals from the bootstrap samples when the fit has them (and a
    prediction interval of the loss from the fitted points' residuals)."""
    residuals = deviations = None
    if not fit.points.empty:
        n, d, loss = (fit.points[c].to_numpy(float) for c in ("params", "tokens", "loss"))
        residuals = np.log(loss) - np.log(fit.loss(n, d))
        deviations = budget_deviations(fit.points, fit.theta, fit.flop_rule)
    return _allocate(
        fit.theta,
        flops,
        fit.flop_rule,
        samples=fit.bootstrap_samples,
        level=fit.level,
        log_residuals=residuals,
        log_n_deviations=deviations,
    )


def _asymmetry_note(theta: np.ndarray, interval: list[float | None]) -> tuple[str, ...]:
    """A note when α − β's interval excludes 0: the loss is then asymmetric about each budget's
    optimum in ln N, and Approach 2's vertices are biased (Czech et al. 2026)."""
    low, high = interval
    if low is None or high is None or low <= 0 <= high:
        return ()
    return (
        f"parametric: α − β = {theta[3] - theta[4]:.3g} [{low:.3g}, {high:.3g}] excludes 0: the "
        "loss is asymmetric about each budget's optimum in ln N, so Approach 2's vertices are "
        "biased (Czech et al. 2026); prefer Approach 3's allocation",
    )


def budget_deviations(points: pd.DataFrame, theta: np.ndarray, rule: FlopsPerToken) -> np.ndarray:
    """ln(N_opt of a budget's own isoFLOP profile / the law's N_opt there), for each budget of
    the points with an interior minimum: how single budgets' optima scatter about the law (empty
    when the points are no isoFLOP grid)."""
    from scalesweep.fit.laws.isoflop.profiles import fit_budget

    n, d = points["params"].to_numpy(float), points["tokens"].to_numpy(float)
    flops = points["flops"].to_numpy(float) if "flops" in points else rule.k * n**rule.p * d
    out = []
    for budget, group in points.groupby(group_budgets(flops), sort=True):
        own = fit_budget(group, float(budget))
        if own.n_opt is not None:
            law = optimal_arrays(theta, float(budget), rule)["n_opt"][0]
            out.append(np.log(own.n_opt / law))
    return np.array(out, dtype=float)


def parametric_points(
    runs: pd.DataFrame, *, n_col: str | None = None, all_runs: bool = False
) -> tuple[pd.DataFrame, Basis, FlopsPerToken, int, tuple[str, ...]]:
    """(points, basis, flop rule, runs set aside, notes): the (params, tokens, loss) rows
    Approach 3 fits: the best completed run per (N, D) cell, or every one with `all_runs`."""
    chosen, n_note = choose_n(runs, n_col)
    derived = "tokens" not in chosen.columns
    prepared = prepare(
        chosen,
        kind="parametric",
        numeric=("params", "tokens", "loss"),
        positive=("params", "tokens", "loss"),
        min_rows=6,
    )
    frame, convention = prepared.frame, flop_counting(chosen)
    rule = flops_per_token(frame, derived=derived, convention=convention)
    if all_runs:
        used = f"every completed run ({len(frame)}; --all-runs)"
    else:
        cells, how = cell_tokens(frame)
        frame = best_per_cell(frame.assign(cell_tokens=cells), ("params", "cell_tokens"))
        used = (
            f"the best run per (N, D) cell: {len(frame)} cells from {len(prepared.frame)} "
            f"completed runs ({how}; --all-runs for every run)"
        )
    _check_identifiable(frame)
    basis = Basis(n=n_note, flop_counting=convention, runs=used)
    return frame, basis, rule, len(prepared.excluded), prepared.notes


def _check_identifiable(frame: pd.DataFrame) -> None:
    """Five parameters need more than five distinct (N, D) points, and an exponent needs two
    values on its axis: fewer fit the points exactly with A or B at 1e18."""
    tokens = frame["cell_tokens"] if "cell_tokens" in frame else frame["tokens"]
    points = len(set(zip(frame["params"], tokens, strict=True)))
    sizes, budgets = frame["params"].nunique(), tokens.nunique()
    if points < 6 or sizes < 2 or budgets < 2:
        raise UserError(
            "parametric fit (5 parameters) needs at least 6 distinct (N, D) points with 2 or "
            f"more values of each, but got {points} point(s) from {sizes} value(s) of `params` "
            f"and {budgets} of `tokens`"
        )


def fit_parametric(
    runs: pd.DataFrame,
    *,
    n_bootstrap: int = 0,
    rng: np.random.Generator | None = None,
    level: float = 0.95,
    method: Method = "projection",
    starts: np.ndarray | None = None,
    n_col: str | None = None,
    all_runs: bool = False,
) -> ParametricFit:
    """Fit L(N, D) to the columns `params`, `tokens`, `loss` of a runs table (checked by
    `runs.prepare` first for a helpful error) with optional bootstrap intervals; the points
    are chosen by `parametric_points`.

    Example:
        >>> import numpy as np, pandas as pd
        >>> n = np.geomspace(1e7, 1e10, 8).repeat(8); d = np.tile(np.geomspace(1e9, 1e12, 8), 8)
        >>> loss = 1.8 + 400 / n**0.34 + 2000 / d**0.37
        >>> fit = fit_parametric(pd.DataFrame({"params": n, "tokens": d, "loss": loss}))
        >>> round(fit.alpha, 2), round(fit.beta, 2)
        (0.34, 0.37)
    """
    if not 0 < level < 1:
        raise UserError(f"`0 < level < 1` must hold, but got ({level=})")
    if n_bootstrap < 0:
        raise UserError(f"`n_bootstrap >= 0` must hold, but got ({n_bootstrap=})")
    frame, basis, rule, n_excluded, notes = parametric_points(runs, n_col=n_col, all_runs=all_runs)
    n, d, loss = (frame[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    theta, objective, n_starts, n_converged = fit_arrays(n, d, loss, method=method, starts=starts)
    ci: dict[str, list[float | None]] = {}
    samples = None
    if n_bootstrap:
        samples = bootstrap_arrays(
            n, d, loss, theta, n_resamples=n_bootstrap, rng=rng or np.random.default_rng(0)
        )
        ci = {key: percentile_interval(values, level) for key, values in _law(samples).items()}
        ci["alpha_minus_beta"] = percentile_interval(samples[:, 3] - samples[:, 4], level)
        notes += _asymmetry_note(theta, ci["alpha_minus_beta"])
    return ParametricFit(
        **{k: float(v[0]) for k, v in _law(theta).items()},
        n_points=len(frame),
        objective=objective,
        n_starts=n_starts,
        n_converged=n_converged,
        ci=ci,
        n_bootstrap=n_bootstrap,
        level=level,
        method=method if starts is None else "grid",
        n_runs_excluded=n_excluded,
        notes=notes,
        basis=basis,
        flop_rule=rule,
        bootstrap_samples=samples,
        points=frame[[c for c in ("params", "tokens", "loss", "flops") if c in frame.columns]],
    )
