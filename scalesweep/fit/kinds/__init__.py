"""The fit kinds `scalesweep fit --kind` offers, one registry entry each.

An entry says how to fit a runs table, which numbers are its headline (logged as metrics of the
sweep's parent run), how it reads in the text summary and in the report, which plots it draws,
and, for the laws that allocate compute, what it predicts at a new budget. Adding a kind is one
`FitKind` in `KINDS`; the command and the report loop over the registry.

Summaries and report sections read the JSON-ready dict, so the text says what fit.json says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalesweep.fit import batch_kinds, views
from scalesweep.fit.format import basis, interval, num

if TYPE_CHECKING:  # the registry loads without numpy/pandas, so `scalesweep --help` stays fast
    import numpy as np
    import pandas as pd

Lines = list[str]


@dataclass(frozen=True)
class FitOptions:
    """What the command line sets for the fits (see `scalesweep fit --help`)."""

    level: float = 0.95
    """Confidence level of every interval."""
    seed: int = 0
    """Seed of the bootstrap resamples."""
    bootstrap: int = 200
    """Parametric (Approach 3) bootstrap resamples."""
    isoflop_bootstrap: int = 0
    """isoFLOP (Approach 2) bootstrap resamples of runs; 0: OLS intervals."""
    isoflop_method: str = "akima"
    """`akima` (Porian et al. 2024; measured best, docs/fits.md) or `quadratic` (parabola)."""
    window: int | None = 5
    """Sizes per isoFLOP parabola (None: all)."""
    robust: bool = False
    """Huber-weighted parabolas."""
    saturating: bool = False
    """Power laws with an irreducible term L = E + A·X^-α."""
    group_by: tuple[str, ...] | None = None
    """LR-sensitivity group columns (None: the default)."""
    lr_range: tuple[float, float] | None = None
    """LR-sensitivity range [a, b] (None: Wortsman et al.'s)."""
    init_loss: float | None = None
    """ℓ0 as a constant, when the table has no init_loss column."""
    predict_at: tuple[Mapping[str, float], ...] = ()
    """Points to predict at (`--predict-at`): {"L"}, {"N", "S"} or {"N", "D"} (batch_kinds)."""
    n_col: str | None = None
    """The column read as N (None: the one the runs' FLOP convention pairs with)."""
    all_runs: bool = False
    """Approach 3 on every completed run instead of the best run per (N, D) cell."""

    def rng(self) -> np.random.Generator:
        import numpy as np

        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class FitData:
    """What a fit reads: the runs table, and the per-step curves when the source has them."""

    runs: pd.DataFrame
    """One row per trial (see `fit.runs`)."""
    load_curves: Callable[[tuple[str, ...]], pd.DataFrame | None] = field(
        default=lambda keys: None, repr=False
    )
    """keys -> one row per (run, logged step): `run_id, trial_id, step` and a column per
    metric key (`scalesweep.metrics` names); None when the source has no curves (a CSV)."""
    shared: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    """Intermediate fits one kind builds on another's (kaplan-ns on critical-batch), made once
    per command."""

    def curves(self, *keys: str) -> pd.DataFrame | None:
        return self.load_curves(tuple(keys))


@dataclass(frozen=True)
class FitKind:
    """One fit: how to run it and how it reads."""

    name: str
    """The `--kind` value."""
    title: str
    """Section title in the report."""
    fit: Callable[[FitData, FitOptions], Any]
    """Runs (and curves) -> typed fit result (raises `UserError` when they cannot be fitted)."""
    headline: Callable[[Any], dict[str, float]]
    """Fit result -> numbers logged as metrics of the sweep's parent run."""
    summary: Callable[[Mapping[str, Any]], Lines]
    """JSON-ready result -> lines of the text summary."""
    section: Callable[[Mapping[str, Any]], Lines]
    """JSON-ready result -> Markdown lines of its report section."""
    plots: Callable[[Any, Path], list[Path]] = field(default=lambda *_: [])
    """(fit result, folder) -> the plot files written."""
    predict: Callable[[Any, float], dict[str, Any]] | None = None
    """(fit result, FLOPs) -> the compute-optimal N, D (and loss) at that budget."""
    to_dict: Callable[[Any], Any] = field(default=lambda fit: fit.to_dict())
    """Fit result -> JSON-ready dict."""


def notes_of(fit: Any) -> list[str]:
    """Notes a fit carries from the shared checks (tokens derived, runs set aside)."""
    parts = fit.values() if isinstance(fit, dict) else (fit,)
    return [note for part in parts for note in getattr(part, "notes", ())]


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


# --- parametric (Chinchilla Approach 3) --------------------------------------------------------

PARAMETRIC_KEYS = ("E", "A", "B", "alpha", "beta", "a", "b")


def _parametric_fit(data: FitData, o: FitOptions) -> Any:
    from scalesweep.fit.parametric import fit_parametric

    return fit_parametric(data.runs, n_bootstrap=o.bootstrap, rng=o.rng(), level=o.level,
                          n_col=o.n_col, all_runs=o.all_runs)  # fmt: skip


def _parametric_summary(p: Mapping[str, Any]) -> Lines:
    values = " ".join(f"{k}={num(p[k])}" for k in PARAMETRIC_KEYS)
    return [f"parametric: {values} ({p['n_points']} points)", basis(p)]


def _parametric_section(fit: Mapping[str, Any]) -> Lines:
    lines = [
        "L(N, D) = E + A/N^α + B/D^β, Huber (δ = 1e-3) on log L summed over points, "
        f"best of {fit['n_starts']} L-BFGS starts (Besiroglu et al. 2024).",
        "",
        "| parameter | estimate | CI |",
        "|---|---|---|",
    ]
    for key in PARAMETRIC_KEYS:
        lines.append(f"| {key} | {num(fit[key])} | {interval(fit['ci'].get(key))} |")
    lines += ["", f"{fit['n_points']} points, objective {num(fit['objective'])}, "
              f"{fit['n_bootstrap']} bootstrap resamples."]  # fmt: skip
    return lines


def _parametric_predict(fit: Any, flops: float) -> dict[str, Any]:
    from scalesweep.fit.parametric import compute_optimal

    return compute_optimal(fit, flops).to_dict()


# --- isoFLOP (Chinchilla Approach 2) -----------------------------------------------------------


def _isoflop_fit(data: FitData, o: FitOptions) -> Any:
    from scalesweep.fit.isoflop import fit_isoflop

    method: Any = o.isoflop_method
    return fit_isoflop(data.runs, method=method, window=o.window, robust=o.robust, level=o.level,
                       n_bootstrap=o.isoflop_bootstrap, rng=o.rng(), n_col=o.n_col)  # fmt: skip


def _isoflop_summary(f: Mapping[str, Any]) -> Lines:
    excluded = sum(b["excluded"] for b in f["budgets"])
    lines = [
        f"isoflop: a={num(f['a'])} CI {interval(f['a_ci'])} b={num(f['b'])} "
        f"CI {interval(f['b_ci'])} ({len(f['budgets'])} budgets, {excluded} excluded)",
        basis(f),
    ]
    for b in f["budgets"]:
        if b["excluded"]:
            lines.append(f"  budget {num(b['flops'], 3)} excluded: {b['reason']}")
    return lines


def _isoflop_section(fit: Mapping[str, Any]) -> Lines:
    lines = [
        f"Chinchilla Approach 2 ({fit['method']}): N_opt ∝ C^a with a = {num(fit['a'])} "
        f"{interval(fit['a_ci'])}; D_opt ∝ C^b with b = {num(fit['b'])} "
        f"{interval(fit['b_ci'])}.",
        "",
        "| FLOPs | N_opt | D_opt | loss | sizes | excluded |",
        "|---|---|---|---|---|---|",
    ]
    for b in fit["budgets"]:
        reason = b["reason"] if b["excluded"] else ""
        lines.append(
            f"| {num(b['flops'], 3)} | {num(b['n_opt'])} | {num(b['d_opt'])} | "
            f"{num(b['loss_opt'])} | {b['n_points']} | {reason} |"
        )
    return lines


# --- LR sensitivity (Wortsman et al. 2023) -----------------------------------------------------


def _lr_fit(data: FitData, o: FitOptions) -> Any:
    from scalesweep.fit.lr_sensitivity import DEFAULT_LR_RANGE, fit_lr_sensitivity

    return fit_lr_sensitivity(data.runs, group_by=o.group_by, lr_range=o.lr_range or
                              DEFAULT_LR_RANGE, init_loss=o.init_loss, level=o.level)  # fmt: skip


def _lr_headline(fit: Any) -> dict[str, float]:
    return _finite({f"fit.lr_transfer.k.{i}": t.k for i, t in enumerate(fit.transfer)})


def _lr_summary(f: Mapping[str, Any]) -> Lines:
    lines = []
    for g in f["groups"]:
        key = {k: g[k] for k in f["group_by"]}
        lines.append(
            f"lr-sensitivity {key or 'all'}: {num(g['sensitivity'])} "
            f"best_lr={num(g['best_lr'])} best_loss={num(g['best_loss'])} "
            f"({g['n_lr']} LRs, {g['n_diverged']} diverged)"
        )
    for t in f["transfer_exponent"]:
        key = {k: v for k, v in t.items() if k not in ("k", "coef", "se", "ci", "n_widths")}
        lines.append(
            f"lr transfer {key or 'all'}: k={num(t['k'])} CI {interval(t['ci'])} "
            f"({t['n_widths']} widths)"
        )
    return [*lines, f"  groups by {f['group_by']}: {f['group_by_source']}"]


def _lr_section(fit: Mapping[str, Any]) -> Lines:
    cols = list(fit["group_by"])
    lo, hi = fit["lr_range"]
    lines = [
        f"Wortsman et al. 2023 LR sensitivity over LRs in [{lo:g}, {hi:g}] (diverged = ℓ0).",
        "",
        "| "
        + " | ".join([*cols, "sensitivity", "best LR", "best loss", "LRs", "diverged runs"])
        + " |",
        "|" + "---|" * (len(cols) + 5),
    ]
    for g in fit["groups"]:
        values = [num(g[c]) for c in cols]
        values += [num(g["sensitivity"]), num(g["best_lr"]), num(g["best_loss"]),
                   str(g["n_lr"]), str(g["n_diverged"])]  # fmt: skip
        lines.append("| " + " | ".join(values) + " |")
    for t in fit["transfer_exponent"]:
        key = ", ".join(f"{k}={num(t[k])}" for k in cols if k in t) or "all runs"
        lines.append(f"\nLR_opt ∝ width^k ({key}): k = {num(t['k'])}, CI {interval(t['ci'])}, "
                     f"over {t['n_widths']} widths.")  # fmt: skip
    return lines


# --- Kaplan power laws -------------------------------------------------------------------------


def _power_fit(data: FitData, o: FitOptions) -> Any:
    from scalesweep.fit.power_law import fit_power_laws

    return fit_power_laws(data.runs, saturating=o.saturating, level=o.level, n_col=o.n_col)


def _power_summary(fits: Mapping[str, Any]) -> Lines:
    return [
        f"power-law L({x}): exponent {num(f['exponent'])} CI {interval(f['ci'])}\n{basis(f)}"
        for x, f in fits.items()
    ]


def _power_section(fits: Mapping[str, Any]) -> Lines:
    lines = ["| variable | exponent | CI | R² | E |", "|---|---|---|---|---|"]
    for x, f in fits.items():
        lines.append(f"| {x} | {num(f['exponent'])} | {interval(f['ci'])} | {num(f['r2'])} "
                     f"| {num(f['E'])} |")  # fmt: skip
    return lines


# --- Step Law hyperparameter laws --------------------------------------------------------------


def _hparams_fit(data: FitData, o: FitOptions) -> Any:
    from scalesweep.fit.hparams import fit_hparams

    return fit_hparams(data.runs, level=o.level, n_col=o.n_col)


def _hparams_headline(h: Any) -> dict[str, float]:
    return _finite(
        {
            "fit.hparams.lr_params_exp": h.lr_law.exponents["params"],
            "fit.hparams.lr_tokens_exp": h.lr_law.exponents["tokens"],
            "fit.hparams.bs_tokens_exp": h.bs_law.exponents["tokens"],
        }
    )


def _hparams_summary(h: Mapping[str, Any]) -> Lines:
    lr, bs = h["lr_law"], h["bs_law"]
    return [
        f"hparams: lr_opt = {num(lr['coef'])}·N^{num(lr['exponents']['params'], 3)}"
        f"·D^{num(lr['exponents']['tokens'], 3)}; bs_opt = {num(bs['coef'])}"
        f"·D^{num(bs['exponents']['tokens'], 3)}",
        basis(h),
    ]


def _hparams_section(fit: Mapping[str, Any]) -> Lines:
    lr, bs = fit["lr_law"], fit["bs_law"]
    return [
        f"η_opt = {num(lr['coef'])}·N^{num(lr['exponents']['params'])}"
        f"·D^{num(lr['exponents']['tokens'])} (N CI {interval(lr['ci']['params'])}, "
        f"D CI {interval(lr['ci']['tokens'])}); B_opt = {num(bs['coef'])}"
        f"·D^{num(bs['exponents']['tokens'])} (CI {interval(bs['ci']['tokens'])}), "
        f"from {fit['n_cells']} (N, D) cells (Step Law form, Li et al. 2025).",
    ]


# --- the registry ------------------------------------------------------------------------------

KINDS: dict[str, FitKind] = {
    kind.name: kind
    for kind in (
        FitKind(
            name="isoflop",
            title="isoFLOP profiles (Chinchilla Approach 2)",
            fit=_isoflop_fit,
            headline=lambda f: _finite({"fit.isoflop.a": f.a, "fit.isoflop.b": f.b}),
            summary=_isoflop_summary,
            section=_isoflop_section,
            plots=views.isoflop_plots,
            predict=lambda fit, flops: fit.predict(flops),
        ),
        FitKind(
            name="parametric",
            title="Parametric L(N, D) (Chinchilla Approach 3)",
            fit=_parametric_fit,
            headline=lambda f: _finite(
                {f"fit.parametric.{k}": getattr(f, k) for k in PARAMETRIC_KEYS}
            ),
            summary=_parametric_summary,
            section=_parametric_section,
            plots=views.parametric_plots,
            predict=_parametric_predict,
        ),
        FitKind(
            name="power-law",
            title="Power laws (Kaplan et al. 2020)",
            fit=_power_fit,
            headline=lambda fits: {},
            summary=_power_summary,
            section=_power_section,
            plots=views.power_plots,
            to_dict=lambda fits: {x: f.to_dict() for x, f in fits.items()},
        ),
        FitKind(
            name="lr-sensitivity",
            title="LR sensitivity",
            fit=_lr_fit,
            headline=_lr_headline,
            summary=_lr_summary,
            section=_lr_section,
            plots=views.lr_plots,
        ),
        FitKind(
            name="hparams",
            title="Hyperparameter laws",
            fit=_hparams_fit,
            headline=_hparams_headline,
            summary=_hparams_summary,
            section=_hparams_section,
        ),
        FitKind(
            name="diagnostics",
            title="Training diagnostics (Wortsman et al. 2023)",
            fit=views.diagnostics_fit,
            headline=lambda fit: {},
            summary=views.diagnostics_summary,
            section=views.diagnostics_section,
            plots=views.diagnostics_plots,
        ),
        *(FitKind(**entry) for entry in batch_kinds.ENTRIES),
    )
}
