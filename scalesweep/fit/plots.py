"""PNG plots of the scaling-law fits (matplotlib, Agg canvas: no display, no global pyplot
state); the LR-sensitivity and training-diagnostics plots are in `plots_lr`.

Each function takes a fit result and a folder, writes one file and returns its path. Every plot
reads on its own: a title that says what it shows, axis labels with units, log axes where the
science uses them, and legends that name the sweep keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scalesweep.fit.allocation import optimal_arrays
from scalesweep.fit.isoflop import IsoflopFit
from scalesweep.fit.parametric import ParametricFit
from scalesweep.fit.power_law import PowerLawFit
from scalesweep.fit.profiles import akima_profile
from scalesweep.fit.regression import LogLogFit


def figure(
    ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] | None = None, **subplots: Any
) -> tuple[Any, Any]:
    """A figure on its own Agg canvas: one panel of 7.5 × 4.8 inches, or panels of 5 × 4.2,
    or `size` in all. At the saved 100 dpi two panels are 1000 px wide, the report's column."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    single = ncols * nrows == 1
    fig = Figure(
        figsize=size or ((7.5, 4.8) if single else (5.0 * ncols, 4.2 * nrows)),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save(fig: Any, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=100)
    return path


def plain_ticks(axis: Any) -> None:
    """Plain numbers (3.5, not 3.5×10⁰) on a log axis that spans less than a decade."""
    from matplotlib.ticker import LogFormatter

    axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def isoflop_curves(fit: IsoflopFit, out: Path) -> Path:
    """Loss against N per budget (colour: budget), the fitted curves over the sizes each was
    fitted to, and their minima. The loss axis stops a little above the fitted windows: the
    far ends of a wide isoFLOP grid would squash the minima into a line."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    fig, ax = figure()
    flops = [b.flops for b in fit.budgets]
    norm = LogNorm(min(flops), max(flops) * 1.0001) if flops else None
    cmap = colormaps["viridis"]
    in_window: list[float] = []
    for budget in fit.budgets:
        color = cmap(norm(budget.flops)) if norm else "C0"
        marker = "x" if budget.excluded else "o"
        ax.plot(budget.sizes, budget.losses, marker, color=color, ms=4)
        if budget.coef is not None and budget.fit_range is not None:
            # Only over the sizes it was fitted to: a local parabola says nothing beyond them.
            grid = np.geomspace(*budget.fit_range, 100)
            ax.plot(grid, np.polyval(budget.coef, np.log(grid)), "-", color=color, lw=1)
            lo, hi = budget.fit_range
            in_window += [x for n, x in zip(budget.sizes, budget.losses, strict=True)
                          if lo <= n <= hi]  # fmt: skip
        elif fit.method == "akima" and len(budget.sizes) >= 3:
            sampled = np.array(budget.losses)
            log_n, log_loss = akima_profile(np.log(budget.sizes), sampled)
            # An overshooting interpolant (sizes almost equal) would run off the axes.
            spread = np.log(sampled.max() / sampled.min())
            log_loss = np.clip(log_loss, np.log(sampled.min()) - spread, np.log(sampled.max()))
            ax.plot(np.exp(log_n), np.exp(log_loss), "-", color=color, lw=1)
            in_window += list(budget.losses)
        if not budget.excluded and budget.n_opt is not None:
            ax.plot([budget.n_opt], [budget.loss_opt], "*", color="red", ms=10, mec="black")
    losses = [x for b in fit.budgets for x in b.losses]
    if in_window and losses:
        span = max(in_window) - min(losses)
        ax.set_ylim(min(losses) - 0.05 * span, max(in_window) + 0.15 * span)
    if norm is not None:
        fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="budget C (training FLOPs)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final loss")
    ax.set_title(f"isoFLOP profiles ({fit.method} fit): ★ minimum, x excluded budget")
    return save(fig, out, "isoflop_curves.png")


def _law_panel(ax: Any, law: LogLogFit, xs: np.ndarray, ys: np.ndarray, label: str) -> None:
    grid = np.geomspace(xs.min() / 2, xs.max() * 2, 100)
    ax.plot(xs, ys, "o", label=f"{label} per budget (isoFLOP minima)")
    ax.plot(grid, law.predict(grid), "-", label=f"fit ∝ C^{law.exponent:.3f}")
    band = law.band(grid)
    if band is not None:
        ax.fill_between(grid, *band, alpha=0.25, label=f"{law.level:.0%} confidence band")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel(label)
    ax.set_title(f"{label}(C) ∝ C^{law.exponent:.3f}")
    ax.legend(fontsize=8)


def isoflop_optimal(fit: IsoflopFit, out: Path) -> Path:
    """N_opt and D_opt against C with the fitted power laws and confidence bands."""
    fig, (left, right) = figure(2)
    kept = [b for b in fit.budgets if not b.excluded]
    flops = np.array([b.flops for b in kept])
    _law_panel(left, fit.n_law, flops, np.array([b.n_opt for b in kept], float), "N_opt")
    _law_panel(right, fit.d_law, flops, np.array([b.d_opt for b in kept], float), "D_opt")
    return save(fig, out, "isoflop_optimal.png")


def parametric_contours(fit: ParametricFit, out: Path) -> Path:
    """Contours of L(N, D), the efficient frontier (N_opt(C), D_opt(C)) and the points fitted."""
    fig, ax = figure()
    data = fit.points
    if len(data):
        n_lo, n_hi = float(data["params"].min()) / 3, float(data["params"].max()) * 30
        d_lo, d_hi = float(data["tokens"].min()) / 3, float(data["tokens"].max()) * 30
    else:
        n_lo, n_hi, d_lo, d_hi = 1e7, 1e12, 1e9, 1e14
    n, d = np.meshgrid(np.geomspace(n_lo, n_hi, 200), np.geomspace(d_lo, d_hi, 200))
    loss = fit.loss(n, d)
    levels = np.quantile(loss, np.linspace(0.02, 0.98, 15))
    contour = ax.contour(n, d, loss, levels=np.unique(levels), cmap="viridis", linewidths=0.8)
    ax.clabel(contour, fontsize=6, fmt="%.2f")
    # Budgets spent as the runs count FLOPs, like the predictions (`fit.flop_rule`).
    rule = fit.flop_rule
    budgets = np.geomspace(rule.k * n_lo**rule.p * d_lo, rule.k * n_hi**rule.p * d_hi, 60)
    frontier = optimal_arrays(fit.theta, budgets, rule)
    ax.plot(frontier["n_opt"], frontier["d_opt"], "r-", label=f"efficient frontier (a={fit.a:.3f})")
    if len(data):
        ax.plot(data["params"], data["tokens"], "k.", ms=3, label="runs")
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(d_lo, d_hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title(f"L = {fit.E:.3f} + {fit.A:.4g}/N^{fit.alpha:.3f} + {fit.B:.4g}/D^{fit.beta:.3f}")
    ax.legend(fontsize=8)
    return save(fig, out, "parametric_contours.png")


def power_laws(fits: dict[str, PowerLawFit], out: Path) -> Path:
    """Frontier loss against each variable with its fitted law, two panels a row."""
    ncols = min(len(fits), 2)
    fig, axes = figure(ncols, -(-len(fits) // ncols), squeeze=False)
    for ax in axes.flat[len(fits) :]:
        ax.set_visible(False)
    for ax, (x, fit) in zip(axes.flat, fits.items(), strict=False):
        xs = fit.points[x].to_numpy(float)
        grid = np.geomspace(xs.min(), xs.max(), 100)
        ax.plot(xs, fit.points["loss"], "o", ms=4, label="frontier runs")
        ax.plot(grid, fit.predict(grid), "-", label=f"fit, exponent {fit.exponent:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_ticks(ax.yaxis)
        ax.set_xlabel(x)
        ax.set_ylabel("loss (frontier)")
        ax.set_title(f"L({x}) ∝ {x}^{fit.exponent:.3f} (Kaplan et al. 2020)")
        ax.legend(fontsize=8)
    return save(fig, out, "power_laws.png")


def _predicted_points(ax: Any, predicted: dict[str, Any], key: str) -> None:
    """Each fit's prediction at the asked budget, with its interval as an error bar."""
    budget = float(predicted["flops"])
    for index, source in enumerate(("isoflop", "parametric")):
        point = predicted.get(source)
        if not isinstance(point, dict):
            continue
        low, high = point.get("ci", {}).get(key) or (None, None)
        err = None if low is None else [[point[key] - low], [high - point[key]]]
        ax.errorbar([budget], [point[key]], yerr=err, fmt="*", ms=12, capsize=4,
                    color=f"C{index}", label=f"prediction ({source})")  # fmt: skip
    ax.axvline(budget, color="grey", lw=0.8, ls=":")


def prediction(fits: dict[str, Any], predicted: dict[str, Any], out: Path) -> Path:
    """N_opt(C) and D_opt(C) of each compute-allocating fit, extrapolated to the budget of
    `--predict-flops`, with the isoFLOP laws' confidence bands and the predicted point's
    interval."""
    budget = float(predicted["flops"])
    isoflop: IsoflopFit | None = fits.get("isoflop")
    parametric: ParametricFit | None = fits.get("parametric")
    kept = [b for b in isoflop.budgets if not b.excluded] if isoflop else []
    flops = [b.flops for b in kept] + [budget]
    grid = np.geomspace(min(flops) / 2, max(flops) * 2, 100)
    fig, axes = figure(2)
    for ax, key, label in zip(axes, ("n_opt", "d_opt"), ("parameters N_opt", "tokens D_opt"),
                              strict=True):  # fmt: skip
        if isoflop is not None:
            law = isoflop.n_law if key == "n_opt" else isoflop.d_law
            ax.plot([b.flops for b in kept], [getattr(b, key) for b in kept], "o", color="C0",
                    label="isoFLOP minima (Approach 2)")  # fmt: skip
            ax.plot(grid, law.predict(grid), "-", color="C0", label=f"∝ C^{law.exponent:.3f}")
            band = law.band(grid)
            if band is not None:
                ax.fill_between(grid, *band, color="C0", alpha=0.2, label=f"{law.level:.0%} CI")
        if parametric is not None:
            path = optimal_arrays(parametric.theta, grid, parametric.flop_rule)[key]
            ax.plot(grid, path, "--", color="C1", label="parametric L(N, D) (Approach 3)")
        _predicted_points(ax, predicted, key)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split()[-1]} at C = {budget:.3g} FLOPs")
        ax.legend(fontsize=7)
    return save(fig, out, "prediction.png")
