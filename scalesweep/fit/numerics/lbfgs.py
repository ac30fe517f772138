"""L-BFGS over a batch of independent small problems at once, in numpy.

Why: the Chinchilla Approach 3 fit runs L-BFGS from 4500 starts (Besiroglu et al. 2024), and a
bootstrap refits hundreds of resamples. One scipy call per start spends its time in Python
overhead on a 5-parameter problem. Here every start keeps its own history, step and
convergence test (as if run alone), and only the objective evaluations are batched, so the cost
is a few large numpy operations per iteration. Starts that have converged drop out.

The stopping rules are scipy L-BFGS-B's (unbounded, m = 10): relative reduction
`(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol` or `max |g| <= gtol`; the line search is
backtracking Armijo, and a start whose line search fails stops there, as scipy's does.

A multi-start search only wants the best end point, and its cost is in the stragglers: on the
Chinchilla grid 99 % of the 4500 starts stop within ~220 iterations (the winner within ~170),
and the last ones run ~2000 more, in flat regions far above the best objective. `Prune` stops
those: once few starts are still running, a start whose objective is above the best one found
so far by more than a relative tolerance is stopped (L-BFGS only goes down, and these are in
regions that end at worse optima); starts within the tolerance run on to convergence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# f(x[rows], rows) -> (values (k,), gradients (k, p)) for the starts `rows` (indices into the
# batch): the objective may depend on the start (e.g. bootstrap weights per resample).
BatchObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class Prune(NamedTuple):
    """When stragglers of a multi-start search are stopped (see the module docstring)."""

    active_fraction: float = 0.01
    """Prune once at most this fraction of the starts is still running."""
    rtol: float = 1e-3
    """Stop a running start whose objective exceeds the best by more than this (relative)."""


class BatchResult(NamedTuple):
    """The end point of every start."""

    x: np.ndarray
    """(K, p) parameters."""
    fun: np.ndarray
    """(K,) objective values."""
    n_iter: np.ndarray
    """(K,) iterations each start ran."""
    converged: np.ndarray
    """(K,) True where a stopping rule (not the iteration cap or pruning) ended the start."""
    pruned: np.ndarray
    """(K,) True where `Prune` stopped the start."""


def _direction(
    g: np.ndarray, s_hist: np.ndarray, y_hist: np.ndarray, rho: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The L-BFGS direction -H·g of each row by the two-loop recursion (newest pair last in
    the buffer), and its slope d·g."""
    memory = rho.shape[1]
    q = g.copy()
    alphas = np.zeros((g.shape[0], memory))
    for j in range(memory - 1, -1, -1):
        a = rho[:, j] * (s_hist[:, j] * q).sum(axis=1)
        q -= a[:, None] * y_hist[:, j]
        alphas[:, j] = a
    sy = 1.0 / np.where(rho[:, -1] > 0, rho[:, -1], 1.0)
    yy = (y_hist[:, -1] * y_hist[:, -1]).sum(axis=1)
    gamma = np.where(rho[:, -1] > 0, sy / np.where(yy > 0, yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for j in range(memory):
        b = rho[:, j] * (y_hist[:, j] * r).sum(axis=1)
        r += s_hist[:, j] * (alphas[:, j] - b)[:, None]
    return -r, (-r * g).sum(axis=1)


def _line_search(
    fun: BatchObjective,
    x: np.ndarray,
    f: np.ndarray,
    d: np.ndarray,
    slope: np.ndarray,
    step: np.ndarray,
    rows: np.ndarray,
    max_steps: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backtracking Armijo search along `d` for each row: (x, f, g) where it was accepted and a
    mask of the rows whose search failed (their x, f, g are unset)."""
    x_new, g_new = np.empty_like(d), np.empty_like(d)
    f_new = np.full(len(rows), np.nan)
    pending = np.arange(len(rows))
    for _ in range(max_steps):
        if pending.size == 0:
            break
        trial = x[pending] + step[pending, None] * d[pending]
        ft, gt = fun(trial, rows[pending])
        ok = np.isfinite(ft) & (ft <= f[pending] + 1e-4 * step[pending] * slope[pending])
        done = pending[ok]
        x_new[done], f_new[done], g_new[done] = trial[ok], ft[ok], gt[ok]
        pending = pending[~ok]
        step[pending] *= 0.5
    failed = np.zeros(len(rows), dtype=bool)
    failed[pending] = True
    return x_new, f_new, g_new, failed


def _remember(
    s_hist: np.ndarray,
    y_hist: np.ndarray,
    rho: np.ndarray,
    rows: np.ndarray,
    s: np.ndarray,
    y: np.ndarray,
) -> None:
    """Push the pairs (s, y) with positive curvature into the rows' histories."""
    curv = (s * y).sum(axis=1)
    keep = curv > 1e-10 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)
    upd = rows[keep]
    s_hist[upd, :-1] = s_hist[upd, 1:]
    y_hist[upd, :-1] = y_hist[upd, 1:]
    rho[upd, :-1] = rho[upd, 1:]
    s_hist[upd, -1], y_hist[upd, -1], rho[upd, -1] = s[keep], y[keep], 1.0 / curv[keep]


def minimize_batch(
    fun: BatchObjective,
    x0: np.ndarray,
    *,
    memory: int = 10,
    max_iter: int = 15000,
    ftol: float = 2.220446049250313e-09,
    gtol: float = 1e-5,
    max_line_search: int = 30,
    prune: Prune | None = None,
) -> BatchResult:
    """Minimise K independent problems, one per row of `x0`, with per-row L-BFGS; with
    `prune`, stragglers far above the best objective are stopped (multi-start searches).
    Starts that run off to overflow get non-finite values and stop; numpy's overflow
    warnings about them are silenced."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _minimize(fun, x0, memory, max_iter, ftol, gtol, max_line_search, prune)


def _minimize(
    fun: BatchObjective,
    x0: np.ndarray,
    memory: int,
    max_iter: int,
    ftol: float,
    gtol: float,
    max_line_search: int,
    prune: Prune | None,
) -> BatchResult:
    """The loop of `minimize_batch`."""
    x = np.array(x0, dtype=float, copy=True)
    k, p = x.shape
    f, g = fun(x, np.arange(k))
    s_hist, y_hist = np.zeros((k, memory, p)), np.zeros((k, memory, p))
    rho = np.zeros((k, memory))  # 0 marks an empty slot: it then contributes nothing
    n_iter = np.zeros(k, dtype=int)
    converged = np.zeros(k, dtype=bool)
    pruned = np.zeros(k, dtype=bool)
    active = np.isfinite(f) & (np.abs(g).max(axis=1) > gtol)
    converged[~active] = True
    for _ in range(max_iter):
        if prune is not None and active.sum() <= prune.active_fraction * k:
            _prune(f, active, pruned, prune.rtol)
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        d, slope = _direction(g[idx], s_hist[idx], y_hist[idx], rho[idx])
        fresh = rho[idx, -1] == 0
        reset = ~(slope < 0) | ~np.isfinite(slope)
        if reset.any():  # not a descent direction: forget the history, go down the gradient
            d[reset] = -g[idx[reset]]
            slope[reset] = -(g[idx[reset]] ** 2).sum(axis=1)
            rho[idx[reset]] = 0.0
            fresh |= reset
        # scipy's first step has length 1 / |g|; later steps try the full quasi-Newton step.
        step = np.where(fresh, np.minimum(1.0, 1.0 / np.linalg.norm(d, axis=1)), 1.0)
        x_new, f_new, g_new, failed = _line_search(
            fun, x[idx], f[idx], d, slope, step, idx, max_line_search
        )
        mi, moved = idx[~failed], ~failed  # a failed line search stops that start where it is
        s, y, f_old = x_new[moved] - x[mi], g_new[moved] - g[mi], f[mi]
        x[mi], f[mi], g[mi] = x_new[moved], f_new[moved], g_new[moved]
        n_iter[idx] += 1
        _remember(s_hist, y_hist, rho, mi, s, y)
        small = (f_old - f[mi]) <= ftol * np.maximum(np.maximum(np.abs(f_old), np.abs(f[mi])), 1)
        stop = small | (np.abs(g[mi]).max(axis=1) <= gtol)
        converged[mi[stop]] = True
        active[mi[stop]] = False
        active[idx[failed]] = False
    return BatchResult(x, f, n_iter, converged, pruned)


def _prune(f: np.ndarray, active: np.ndarray, pruned: np.ndarray, rtol: float) -> None:
    """Stop the running starts whose objective is above the best by more than `rtol`."""
    finite = f[np.isfinite(f)]
    if finite.size == 0:
        return
    best = float(finite.min())
    far = active & ~(f <= best + rtol * max(abs(best), np.finfo(float).tiny))
    pruned |= far
    active &= ~far
