"""L-BFGS over a batch of independent small problems at once, in numpy.

Why: the Chinchilla Approach 3 fit runs L-BFGS from 4500 starts (Besiroglu et al. 2024), and a
bootstrap refits hundreds of resamples. One scipy call per start spends its time in Python
overhead on a 5-parameter problem. Here every start keeps its own history, step and
convergence test (as if run alone), and only the objective evaluations are batched, so the cost
is a few large numpy operations per iteration. Starts that have converged drop out.

The stopping rules are scipy L-BFGS-B's (unbounded, m = 10): relative reduction
`(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol` or `max |g| <= gtol`; the line search is
backtracking Armijo, and a start whose line search fails stops there, as scipy's does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# f(x[rows], rows) -> (values (k,), gradients (k, p)) for the starts `rows` (indices into the
# batch): the objective may depend on the start (e.g. bootstrap weights per resample).
BatchObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class BatchResult(NamedTuple):
    """The end point of every start."""

    x: np.ndarray
    """(K, p) parameters."""
    fun: np.ndarray
    """(K,) objective values."""
    n_iter: np.ndarray
    """(K,) iterations each start ran."""
    converged: np.ndarray
    """(K,) True where a stopping rule (not the iteration cap) ended the start."""


def minimize_batch(
    fun: BatchObjective,
    x0: np.ndarray,
    *,
    memory: int = 10,
    max_iter: int = 15000,
    ftol: float = 2.220446049250313e-09,
    gtol: float = 1e-5,
    max_line_search: int = 30,
) -> BatchResult:
    """Minimise K independent problems, one per row of `x0`, with per-row L-BFGS."""
    x = np.array(x0, dtype=float, copy=True)
    k, p = x.shape
    rows = np.arange(k)
    f, g = fun(x, rows)
    s_hist = np.zeros((k, memory, p))
    y_hist = np.zeros((k, memory, p))
    rho = np.zeros((k, memory))  # 0 marks an empty slot: it then contributes nothing
    n_iter = np.zeros(k, dtype=int)
    converged = np.zeros(k, dtype=bool)
    active = np.isfinite(f) & (np.abs(g).max(axis=1) > gtol)
    converged[~active] = True
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        gi = g[idx]
        hs, hy, hr = s_hist[idx], y_hist[idx], rho[idx]
        # Two-loop recursion, newest pair last in the buffer.
        q = gi.copy()
        alphas = np.zeros((idx.size, memory))
        for j in range(memory - 1, -1, -1):
            a = hr[:, j] * (hs[:, j] * q).sum(axis=1)
            q -= a[:, None] * hy[:, j]
            alphas[:, j] = a
        sy = 1.0 / np.where(hr[:, -1] > 0, hr[:, -1], 1.0)
        yy = (hy[:, -1] * hy[:, -1]).sum(axis=1)
        gamma = np.where(hr[:, -1] > 0, sy / np.where(yy > 0, yy, 1.0), 1.0)
        r = gamma[:, None] * q
        for j in range(memory):
            b = hr[:, j] * (hy[:, j] * r).sum(axis=1)
            r += hs[:, j] * (alphas[:, j] - b)[:, None]
        d = -r
        slope = (d * gi).sum(axis=1)
        fresh = hr[:, -1] == 0
        reset = ~(slope < 0) | ~np.isfinite(slope)
        if reset.any():  # not a descent direction: forget the history, go down the gradient
            d[reset] = -gi[reset]
            slope[reset] = -(gi[reset] ** 2).sum(axis=1)
            rho[idx[reset]] = 0.0
            fresh |= reset
        # scipy's first step has length 1 / |g|; later steps try the full quasi-Newton step.
        step = np.where(fresh, np.minimum(1.0, 1.0 / np.linalg.norm(d, axis=1)), 1.0)
        x_new = np.empty_like(d)
        f_new = np.full(idx.size, np.nan)
        g_new = np.empty_like(d)
        pending = np.arange(idx.size)
        for _ls in range(max_line_search):
            if pending.size == 0:
                break
            trial = x[idx[pending]] + step[pending, None] * d[pending]
            ft, gt = fun(trial, idx[pending])
            ok = np.isfinite(ft) & (ft <= f[idx[pending]] + 1e-4 * step[pending] * slope[pending])
            done = pending[ok]
            x_new[done], f_new[done], g_new[done] = trial[ok], ft[ok], gt[ok]
            pending = pending[~ok]
            step[pending] *= 0.5
        failed = np.zeros(idx.size, dtype=bool)
        failed[pending] = True  # line search failed: stop this start where it is
        moved = ~failed
        mi = idx[moved]
        s = x_new[moved] - x[mi]
        y = g_new[moved] - g[mi]
        f_old = f[mi]
        x[mi], f[mi], g[mi] = x_new[moved], f_new[moved], g_new[moved]
        n_iter[idx] += 1
        curv = (s * y).sum(axis=1)
        keep = curv > 1e-10 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)
        upd = mi[keep]
        s_hist[upd, :-1] = s_hist[upd, 1:]
        y_hist[upd, :-1] = y_hist[upd, 1:]
        rho[upd, :-1] = rho[upd, 1:]
        s_hist[upd, -1], y_hist[upd, -1], rho[upd, -1] = s[keep], y[keep], 1.0 / curv[keep]
        small = (f_old - f[mi]) <= ftol * np.maximum(np.maximum(np.abs(f_old), np.abs(f[mi])), 1)
        flat = np.abs(g[mi]).max(axis=1) <= gtol
        stop = small | flat
        converged[mi[stop]] = True
        active[mi[stop]] = False
        active[idx[failed]] = False
    return BatchResult(x, f, n_iter, converged)
