"""Approach 3 by variable projection: for fixed exponents the law is linear in (E, A, B).

L = E + A·N^−α + B·D^−β is linear in (E, A, B) once (α, β) are fixed (Czech et al. 2026,
"Problems with Chinchilla Approach 2", and their VPNLS). So the five-parameter search becomes a
dense two-dimensional one:

1. on a grid of (α, β) (0.01 apart by default), the non-negative least-squares (E, A, B) of the
   relative residual (x·θ − L)/L, which is ln L̂ − ln L to first order; every grid point at once,
   from sums over the points that factor into one matrix product per term (`_gram`), and the
   3-variable NNLS solved exactly by trying each support (`_nnls3`);
2. the lowest points of that surface polished on the exact objective, the summed Huber loss on
   ln L (δ = 1e-3, Besiroglu et al. 2024), by the batched L-BFGS of `numerics.lbfgs`;
3. once more with the squared residuals reweighted by the Huber loss's IRLS weights at the best
   fit so far (`huber_weights`): with δ = 1e-3 most points sit in the loss's linear part, so the
   plain least-squares surface can put its valley elsewhere.

The grid is global and cheap (tens of milliseconds for 250 × 250 exponents), where 4500
L-BFGS starts take about a second; benchmarks/fit_speed.py compares both.
"""

from __future__ import annotations

import numpy as np

EXPONENTS = np.round(np.arange(0.01, 2.5 + 1e-9, 0.01), 2)
"""The (α, β) grid: 0.01 to 2.5 (Besiroglu et al.'s starts span 0 to 2)."""
CANDIDATES = 16
"""Grid points polished on the Huber objective: the lowest of the projected surface."""


def _gram(
    log_n: np.ndarray,
    log_d: np.ndarray,
    loss: np.ndarray,
    weights: np.ndarray,
    alphas: np.ndarray,
    betas: np.ndarray,
) -> tuple[list[list[np.ndarray]], list[np.ndarray], float, tuple[float, float]]:
    """The normal equations of the weighted fit at every (α, β): G (3 × 3 entries, each an
    (na, nb) array), r (3 entries) and Σ w·L², with weights w = `weights`/L² (relative
    residuals). N and D are scaled by their geometric means so the columns are O(1)."""
    n_ref, d_ref = float(np.mean(log_n)), float(np.mean(log_d))
    p = np.exp(-np.outer(alphas, log_n - n_ref))  # (na, n): (N/N_ref)^−α
    q = np.exp(-np.outer(betas, log_d - d_ref))  # (nb, n)
    w = weights / loss**2
    wl = w * loss
    ones = np.ones((len(alphas), len(betas)))
    s_p, s_q = (p @ w)[:, None] * ones, (q @ w)[None, :] * ones
    s_pq = (p * w) @ q.T
    gram = [
        [w.sum() * ones, s_p, s_q],
        [s_p, ((p * p) @ w)[:, None] * ones, s_pq],
        [s_q, s_pq, ((q * q) @ w)[None, :] * ones],
    ]
    rhs = [wl.sum() * ones, (p @ wl)[:, None] * ones, (q @ wl)[None, :] * ones]
    return gram, rhs, float((wl * loss).sum()), (n_ref, d_ref)


def _solve(gram: list[list[np.ndarray]], rhs: list[np.ndarray], support: tuple[int, ...]) -> list:
    """The restricted normal equations G_SS θ_S = r_S at every grid point, by Cramer's rule."""
    g = [[gram[i][j] for j in support] for i in support]
    r = [rhs[i] for i in support]
    with np.errstate(divide="ignore", invalid="ignore"):
        if len(support) == 1:
            return [r[0] / g[0][0]]
        if len(support) == 2:
            det = g[0][0] * g[1][1] - g[0][1] * g[1][0]
            return [
                (r[0] * g[1][1] - g[0][1] * r[1]) / det,
                (g[0][0] * r[1] - r[0] * g[1][0]) / det,
            ]
        cof = [
            [
                g[(i + 1) % 3][(j + 1) % 3] * g[(i + 2) % 3][(j + 2) % 3]
                - g[(i + 1) % 3][(j + 2) % 3] * g[(i + 2) % 3][(j + 1) % 3]
                for j in range(3)
            ]
            for i in range(3)
        ]
        det = g[0][0] * cof[0][0] + g[0][1] * cof[0][1] + g[0][2] * cof[0][2]
        return [sum(cof[j][i] * r[j] for j in range(3)) / det for i in range(3)]


SUPPORTS = ((0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,))


def _nnls3(
    gram: list[list[np.ndarray]], rhs: list[np.ndarray], yy: float
) -> tuple[np.ndarray, np.ndarray]:
    """(objective, θ = (E, A, B) stacked last) of the non-negative least squares at every grid
    point: the best support whose restricted solution is non-negative (the optimum is one of
    them), its objective Σ w·L² − r_S·θ_S."""
    shape = gram[0][0].shape
    best = np.full(shape, np.inf)
    theta = np.zeros((*shape, 3))
    for support in SUPPORTS:
        solution = _solve(gram, rhs, support)
        feasible = np.all([s >= 0 for s in solution], axis=0) & np.all(
            [np.isfinite(s) for s in solution], axis=0
        )
        value = yy - sum(rhs[i] * s for i, s in zip(support, solution, strict=True))
        better = feasible & (value < best)
        best = np.where(better, value, best)
        for i, s in zip(support, solution, strict=True):
            theta[..., i] = np.where(better, s, theta[..., i])
        for i in set(range(3)) - set(support):
            theta[..., i] = np.where(better, 0.0, theta[..., i])
    return best, theta


def _lowest(surface: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The `k` lowest grid points: along a flat valley (an exponent traded against E, say)
    they spread along it, so polishing each finds the valley's lowest point."""
    flat = np.argsort(surface, axis=None)[:k]
    rows, cols = np.unravel_index(flat, surface.shape)
    return list(zip(rows.tolist(), cols.tolist(), strict=True))


def projected_starts(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    alphas: np.ndarray = EXPONENTS,
    betas: np.ndarray = EXPONENTS,
    k: int = CANDIDATES,
) -> np.ndarray:
    """Rows θ = (e, a, b, α, β) at the `k` lowest points of the projected surface over the
    (α, β) grid, to polish on the Huber objective. `weights` (per point) reweight the squared
    relative residuals: the Huber objective's linearisation around a fit (`huber_weights`). A
    zero coefficient starts at 1e-12 of the loss (its logarithm must be finite).

    Example:
        >>> n = np.geomspace(1e7, 1e10, 8).repeat(8); d = np.tile(np.geomspace(1e9, 1e12, 8), 8)
        >>> start = projected_starts(n, d, 1.8 + 400 / n**0.34 + 2000 / d**0.37, k=1)[0]
        >>> np.round(np.exp(start[:3]), 1).tolist(), start[3:].tolist()
        ([1.8, 400.0, 2000.0], [0.34, 0.37])
    """
    log_n, log_d = np.log(n), np.log(d)
    w = np.ones_like(loss) if weights is None else weights
    gram, rhs, yy, (n_ref, d_ref) = _gram(log_n, log_d, loss, w, alphas, betas)
    surface, coefficients = _nnls3(gram, rhs, yy)
    rows = []
    floor = 1e-12 * float(np.min(loss))
    for i, j in _lowest(surface, k):
        big_e, a_scaled, b_scaled = np.maximum(coefficients[i, j], floor)
        alpha, beta = float(alphas[i]), float(betas[j])
        # back from the scaled columns: A·N^−α = A'·(N/N_ref)^−α, so A = A'·N_ref^α
        log_a, log_b = np.log(a_scaled) + alpha * n_ref, np.log(b_scaled) + beta * d_ref
        rows.append([np.log(big_e), log_a, log_b, alpha, beta])
    return np.array(rows, dtype=float).reshape(-1, 5)


def huber_weights(residuals: np.ndarray, delta: float) -> np.ndarray:
    """IRLS weights of the Huber loss, ψ(r)/r = min(1, δ/|r|): the squared residuals weighted
    by these have the Huber objective's gradient at `residuals`."""
    size = np.maximum(np.abs(residuals), 1e-300)
    return np.minimum(1.0, delta / size)
