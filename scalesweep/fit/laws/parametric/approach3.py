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

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scalesweep.errors import UserError
from scalesweep.fit.laws.parametric.allocation import (
    SIX_ND,
    ComputeOptimal,
    FlopsPerToken,
    flops_per_token,
)
from scalesweep.fit.laws.parametric.allocation import compute_optimal as _allocate
from scalesweep.fit.laws.parametric.projection import huber_weights, projected_starts
from scalesweep.fit.numerics.huber import HUBER_DELTA, huber_objective, log_loss_of
from scalesweep.fit.numerics.lbfgs import Prune, minimize_batch
from scalesweep.fit.numerics.resampling import percentile_interval
from scalesweep.fit.runs import (
    Basis,
    best_per_cell,
    cell_tokens,
    choose_n,
    finite_or_none,
    flop_counting,
    prepare,
)

# Parameter order everywhere in this module: θ = (e, a, b, α, β).
NAMES = ("e", "a", "b", "alpha", "beta")
ALPHA_GRID = np.arange(0.0, 2.5, 0.5)
E_GRID = np.arange(-1.0, 1.5, 0.5)
LOG_AB_GRID = np.arange(0.0, 30.0, 5.0)
# The summed Huber objective is ~1e-3, so L-BFGS's default relative reduction test (relative
# to max(|f|, 1)) is effectively absolute and stops a refit from a nearby start after a few
# tiny steps: bootstrap intervals on A and B then come out ~100x too narrow. Refits and the
# final polish use these tolerances; with them the bootstrap spread of E, A, B, α, β matches
# the standard errors Besiroglu et al. report (0.03, 125, 1293, 0.02, 0.02).
TIGHT_FTOL, TIGHT_GTOL = 1e-13, 1e-9
DEFAULT_FTOL, DEFAULT_GTOL = 2.220446049250313e-09, 1e-5
"""scipy's L-BFGS-B defaults, as `minimize_batch` has them: enough for Epoch's grid, whose
starts all converge to the same few optima."""
POLISH_OPTIONS = {"ftol": TIGHT_FTOL, "gtol": TIGHT_GTOL, "maxiter": 15000}
GRID_PRUNE = Prune()
"""How the grid search stops its stragglers (see `fit_arrays`)."""
Method = Literal["projection", "grid"]


def start_grid() -> np.ndarray:
    """The 4500 starts of Besiroglu et al. 2024 as rows (e, a, b, α, β)."""
    combos = itertools.product(E_GRID, LOG_AB_GRID, LOG_AB_GRID, ALPHA_GRID, ALPHA_GRID)
    return np.array(list(combos), dtype=float)


def _scipy_polish(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray
) -> tuple[np.ndarray, float]:
    """One scipy L-BFGS-B call from `theta`, with the analytic gradient."""

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = huber_objective(x[None, :], log_n, log_d, log_loss)
        return float(f[0]), g[0]

    # Tight tolerances: the winner is polished to a true optimum, not to where the default
    # absolute tolerance (the objective is ~1e-3) happens to stop.
    result = minimize(fun, theta, jac=True, method="L-BFGS-B", options=POLISH_OPTIONS)
    return np.asarray(result.x, dtype=float), float(result.fun)


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
    residuals = None
    if not fit.points.empty:
        n, d, loss = (fit.points[c].to_numpy(float) for c in ("params", "tokens", "loss"))
        residuals = np.log(loss) - np.log(fit.loss(n, d))
    return _allocate(
        fit.theta,
        flops,
        fit.flop_rule,
        samples=fit.bootstrap_samples,
        level=fit.level,
        log_residuals=residuals,
    )


def fit_arrays(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    *,
    method: Method = "projection",
    starts: np.ndarray | None = None,
    polish: bool = True,
    prune: Prune | None = GRID_PRUNE,
) -> tuple[np.ndarray, float, int, int]:
    """The best θ from `starts` (default: by `method`, see the module docstring), its
    objective, the starts and how many of them converged. Pure numpy; `fit_parametric` wraps it
    for DataFrames.

    Stragglers far above the best objective are stopped once 99 % of the starts have stopped
    (`prune`, see `numerics.lbfgs`): the answer is the same to 4 significant digits on
    Epoch's data, with and without the 5 highest losses, and the grid takes a third of the
    objective calls (benchmarks/fit_speed.py)."""
    log_n, log_d, log_loss = np.log(n), np.log(d), np.log(loss)

    def batch(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return huber_objective(x, log_n, log_d, log_loss)

    def best_of(rows: np.ndarray, prune: Prune | None, *, tight: bool) -> tuple[Any, float, int]:
        ftol, gtol = (TIGHT_FTOL, TIGHT_GTOL) if tight else (DEFAULT_FTOL, DEFAULT_GTOL)
        result = minimize_batch(batch, rows, prune=prune, ftol=ftol, gtol=gtol)
        values = np.where(np.isfinite(result.fun), result.fun, np.inf)
        best = int(np.argmin(values))
        return result.x[best], float(values[best]), int(result.converged.sum())

    if starts is None and method == "projection":
        first = projected_starts(n, d, loss)
        # tight tolerances: these few starts lie along the valley floor, where progress is slow
        theta, objective, converged = best_of(first, None, tight=True)
        weights = huber_weights(log_loss - log_loss_of(theta, log_n, log_d), HUBER_DELTA)
        second = projected_starts(n, d, loss, weights=weights)
        again, value, more = best_of(second, None, tight=True)
        if value < objective:
            theta, objective = again, value
        n_starts, converged = len(first) + len(second), converged + more
    else:
        grid = start_grid() if starts is None else np.atleast_2d(starts)
        theta, objective, converged = best_of(grid, prune, tight=False)
        n_starts = len(grid)
    if polish:
        polished, value = _scipy_polish(theta, log_n, log_d, log_loss)
        if value <= objective:
            theta, objective = polished, value
    return theta, objective, n_starts, converged


def bootstrap_arrays(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    theta: np.ndarray,
    *,
    n_resamples: int,
    rng: np.random.Generator,
    chunk: int = 250,
) -> np.ndarray:
    """Refit θ on `n_resamples` resamples of the points (drawn with replacement), each started
    from the full-grid best `theta` rather than the whole grid (4500× cheaper; the resampled
    optimum lies near the original one). Resamples run as one batch: a resample is a row of
    multiplicities weighting the summed Huber loss. Refits use tight tolerances (see
    `TIGHT_FTOL`)."""
    log_n, log_d, log_loss = np.log(n), np.log(d), np.log(loss)
    size = len(n)
    out = np.empty((n_resamples, 5))
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        counts = np.stack(
            [np.bincount(rng.integers(0, size, size), minlength=size) for _ in range(k)]
        )
        weights = counts.astype(float)

        def batch(
            x: np.ndarray, rows: np.ndarray, w: np.ndarray = weights
        ) -> tuple[np.ndarray, np.ndarray]:
            return huber_objective(x, log_n, log_d, log_loss, w[rows])

        fitted = minimize_batch(batch, np.tile(theta, (k, 1)), ftol=TIGHT_FTOL, gtol=TIGHT_GTOL)
        out[start : start + k] = fitted.x
    return out


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
        points=frame[["params", "tokens", "loss"]],
    )
