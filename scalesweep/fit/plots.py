"""PNG plots of the fits (matplotlib, Agg canvas: no display, no global pyplot state).

Each function takes a fit result and a folder, writes one file and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scalesweep.fit.isoflop import IsoflopFit
from scalesweep.fit.lr_sensitivity import LrSensitivityFit
from scalesweep.fit.parametric import ParametricFit, compute_optimal_arrays
from scalesweep.fit.power_law import PowerLawFit
from scalesweep.fit.regression import LogLogFit


def _figure(ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0 * ncols, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols)
    return figure, axes


def _save(figure: Any, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    figure.savefig(path, dpi=120)
    return path


def isoflop_curves(fit: IsoflopFit, out: Path) -> Path:
    """Loss against N per budget, the fitted parabolas and their minima."""
    from matplotlib import colormaps

    figure, ax = _figure()
    colors = colormaps["viridis"](np.linspace(0, 0.9, max(len(fit.budgets), 1)))
    for budget, color in zip(fit.budgets, colors, strict=True):
        marker = "o" if not budget.excluded else "x"
        ax.plot(budget.sizes, budget.losses, marker, color=color, ms=4, label=f"{budget.flops:.2g}")
        if budget.coef is not None and budget.fit_range is not None:
            # Only over the sizes it was fitted to: a local parabola says nothing beyond them.
            grid = np.geomspace(*budget.fit_range, 100)
            ax.plot(grid, np.polyval(budget.coef, np.log(grid)), "-", color=color, lw=1)
        if not budget.excluded and budget.n_opt is not None:
            ax.plot([budget.n_opt], [budget.loss_opt], "*", color="red", ms=9)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    ax.set_title(f"isoFLOP profiles ({fit.method}); x: excluded budget, *: minimum")
    ax.legend(title="FLOPs", fontsize=7, ncols=2)
    return _save(figure, out, "isoflop_curves.png")


def _law_panel(ax: Any, law: LogLogFit, xs: np.ndarray, ys: np.ndarray, label: str) -> None:
    grid = np.geomspace(xs.min() / 2, xs.max() * 2, 100)
    ax.plot(xs, ys, "o", label=f"{label} per budget")
    ax.plot(grid, law.predict(grid), "-", label=f"∝ C^{law.exponent:.3f}")
    band = law.band(grid)
    if band is not None:
        ax.fill_between(grid, *band, alpha=0.25, label=f"{law.level:.0%} CI")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs C")
    ax.set_ylabel(label)
    ax.legend(fontsize=8)


def isoflop_optimal(fit: IsoflopFit, out: Path) -> Path:
    """N_opt and D_opt against C with the fitted power laws and confidence bands."""
    figure, (left, right) = _figure(2)
    kept = [b for b in fit.budgets if not b.excluded]
    flops = np.array([b.flops for b in kept])
    _law_panel(left, fit.n_law, flops, np.array([b.n_opt for b in kept], float), "N_opt")
    _law_panel(right, fit.d_law, flops, np.array([b.d_opt for b in kept], float), "D_opt")
    return _save(figure, out, "isoflop_optimal.png")


def parametric_contours(fit: ParametricFit, out: Path, data: Any = None) -> Path:
    """Contours of L(N, D), the efficient frontier (N_opt(C), D_opt(C)) and the data."""
    figure, ax = _figure()
    if data is not None and len(data):
        n_lo, n_hi = float(data["params"].min()) / 3, float(data["params"].max()) * 30
        d_lo, d_hi = float(data["tokens"].min()) / 3, float(data["tokens"].max()) * 30
    else:
        n_lo, n_hi, d_lo, d_hi = 1e7, 1e12, 1e9, 1e14
    n, d = np.meshgrid(np.geomspace(n_lo, n_hi, 200), np.geomspace(d_lo, d_hi, 200))
    loss = fit.loss(n, d)
    levels = np.quantile(loss, np.linspace(0.02, 0.98, 15))
    contour = ax.contour(n, d, loss, levels=np.unique(levels), cmap="viridis", linewidths=0.8)
    ax.clabel(contour, fontsize=6, fmt="%.2f")
    theta = np.array([np.log(fit.E), np.log(fit.A), np.log(fit.B), fit.alpha, fit.beta])
    budgets = np.geomspace(6 * n_lo * d_lo, 6 * n_hi * d_hi, 60)
    frontier = [compute_optimal_arrays(theta, c) for c in budgets]
    ax.plot([f["n_opt"][0] for f in frontier], [f["d_opt"][0] for f in frontier], "r-",
            label=f"efficient frontier (a={fit.a:.3f})")  # fmt: skip
    if data is not None and len(data):
        ax.plot(data["params"], data["tokens"], "k.", ms=3, label="runs")
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(d_lo, d_hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title(f"L = {fit.E:.3f} + {fit.A:.4g}/N^{fit.alpha:.3f} + {fit.B:.4g}/D^{fit.beta:.3f}")
    ax.legend(fontsize=8)
    return _save(figure, out, "parametric_contours.png")


def _label(key: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in key.items()) or "all runs"


def lr_sensitivity_curves(fit: LrSensitivityFit, out: Path) -> Path:
    """Loss (capped at ℓ0, diverged = ℓ0) against LR per group, with the [a, b] range."""
    figure, ax = _figure()
    for group in fit.groups:
        if not group.curve:
            continue
        lrs, losses = zip(*group.curve, strict=True)
        score = "n/a" if group.sensitivity is None else f"{group.sensitivity:.3f}"
        ax.plot(lrs, losses, "o-", ms=3, label=f"{_label(group.key)} (sens. {score})")
    ax.axvspan(*fit.lr_range, color="grey", alpha=0.1, label="LR range")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss, min(ℓ, ℓ0)")
    ax.set_title("LR sensitivity (Wortsman et al. 2023)")
    ax.legend(fontsize=7)
    return _save(figure, out, "lr_sensitivity.png")


def lr_transfer(fit: LrSensitivityFit, out: Path) -> Path:
    """Best LR against width with LR_opt ∝ width^k per combination of other group columns."""
    figure, ax = _figure()
    width = fit.width_column
    for transfer in fit.transfer:
        members = [
            g
            for g in fit.groups
            if g.best_lr is not None
            and all(g.key.get(k) == v for k, v in transfer.key.items())
            and width is not None
        ]
        ws = np.array([float(g.key[str(width)]) for g in members])
        ax.plot(ws, [g.best_lr for g in members], "o")
        grid = np.geomspace(ws.min(), ws.max(), 50)
        ax.plot(grid, transfer.coef * grid**transfer.k, "-",
                label=f"{_label(transfer.key)}: k = {transfer.k:.2f}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel("best LR")
    ax.set_title("LR_opt ∝ width^k (k ≈ 0: the LR transfers)")
    ax.legend(fontsize=8)
    return _save(figure, out, "lr_transfer.png")


def power_laws(fits: dict[str, PowerLawFit], out: Path) -> Path:
    """Frontier loss against each variable with its fitted law."""
    figure, axes = _figure(len(fits))
    for ax, (x, fit) in zip(np.atleast_1d(axes), fits.items(), strict=True):
        xs = fit.points[x].to_numpy(float)
        grid = np.geomspace(xs.min(), xs.max(), 100)
        ax.plot(xs, fit.points["loss"], "o", ms=4)
        ax.plot(grid, fit.predict(grid), "-", label=f"exponent {fit.exponent:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel("loss (frontier)")
        ax.legend(fontsize=8)
    return _save(figure, out, "power_laws.png")
