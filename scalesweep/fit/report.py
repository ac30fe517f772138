"""`report.md`: the headline numbers of each fit, with the plots embedded. A pure function of
the JSON-ready results, so the report says exactly what fit.json says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(pair: Sequence[Any] | None) -> str:
    if not pair or pair[0] is None:
        return "n/a"
    return f"[{_num(pair[0])}, {_num(pair[1])}]"


def _parametric(fit: Mapping[str, Any]) -> list[str]:
    lines = [
        "L(N, D) = E + A/N^α + B/D^β, Huber (δ = 1e-3) on log L summed over points, "
        f"best of {fit['n_starts']} L-BFGS starts (Besiroglu et al. 2024).",
        "",
        "| parameter | estimate | CI |",
        "|---|---|---|",
    ]
    for key in ("E", "A", "B", "alpha", "beta", "a", "b"):
        lines.append(f"| {key} | {_num(fit[key])} | {_interval(fit['ci'].get(key))} |")
    lines += ["", f"{fit['n_points']} points, objective {_num(fit['objective'])}, "
              f"{fit['n_bootstrap']} bootstrap resamples."]  # fmt: skip
    return lines


def _isoflop(fit: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Chinchilla Approach 2 ({fit['method']}): N_opt ∝ C^a with a = {_num(fit['a'])} "
        f"{_interval(fit['a_ci'])}; D_opt ∝ C^b with b = {_num(fit['b'])} "
        f"{_interval(fit['b_ci'])}.",
        "",
        "| FLOPs | N_opt | D_opt | loss | sizes | excluded |",
        "|---|---|---|---|---|---|",
    ]
    for b in fit["budgets"]:
        reason = b["reason"] if b["excluded"] else ""
        lines.append(
            f"| {_num(b['flops'], 3)} | {_num(b['n_opt'])} | {_num(b['d_opt'])} | "
            f"{_num(b['loss_opt'])} | {b['n_points']} | {reason} |"
        )
    return lines


def _lr(fit: Mapping[str, Any]) -> list[str]:
    cols = list(fit["group_by"])
    lo, hi = fit["lr_range"]
    lines = [
        f"Wortsman et al. 2023 LR sensitivity over LRs in [{lo:g}, {hi:g}] (diverged = ℓ0).",
        "",
        "| " + " | ".join([*cols, "sensitivity", "best LR", "best loss", "LRs", "diverged"]) + " |",
        "|" + "---|" * (len(cols) + 5),
    ]
    for g in fit["groups"]:
        values = [_num(g[c]) for c in cols]
        values += [_num(g["sensitivity"]), _num(g["best_lr"]), _num(g["best_loss"]),
                   str(g["n_lr"]), str(g["n_diverged"])]  # fmt: skip
        lines.append("| " + " | ".join(values) + " |")
    for t in fit["transfer_exponent"]:
        key = {k: v for k, v in t.items() if k not in ("k", "coef", "se", "ci", "n_widths")}
        lines.append(f"\nLR_opt ∝ width^k for {key or 'all runs'}: k = {_num(t['k'])} "
                     f"{_interval(t['ci'])} over {t['n_widths']} widths.")  # fmt: skip
    return lines


def _power(fits: Mapping[str, Any]) -> list[str]:
    lines = ["| variable | exponent | CI | R² | E |", "|---|---|---|---|---|"]
    for x, f in fits.items():
        lines.append(f"| {x} | {_num(f['exponent'])} | {_interval(f['ci'])} | {_num(f['r2'])} "
                     f"| {_num(f['E'])} |")  # fmt: skip
    return lines


def _hparams(fit: Mapping[str, Any]) -> list[str]:
    lr, bs = fit["lr_law"], fit["bs_law"]
    return [
        f"η_opt = {_num(lr['coef'])}·N^{_num(lr['exponents']['params'])}"
        f"·D^{_num(lr['exponents']['tokens'])} (N CI {_interval(lr['ci']['params'])}, "
        f"D CI {_interval(lr['ci']['tokens'])}); B_opt = {_num(bs['coef'])}"
        f"·D^{_num(bs['exponents']['tokens'])} (CI {_interval(bs['ci']['tokens'])}), "
        f"from {fit['n_cells']} (N, D) cells (Step Law form, Li et al. 2025).",
    ]


SECTIONS = {
    "parametric": ("Parametric L(N, D) (Chinchilla Approach 3)", _parametric),
    "isoflop": ("isoFLOP profiles (Chinchilla Approach 2)", _isoflop),
    "lr-sensitivity": ("LR sensitivity", _lr),
    "power-law": ("Power laws (Kaplan et al. 2020)", _power),
    "hparams": ("Hyperparameter laws", _hparams),
}
PLOTS = {
    "parametric": ("parametric_contours.png",),
    "isoflop": ("isoflop_curves.png", "isoflop_optimal.png"),
    "lr-sensitivity": ("lr_sensitivity.png", "lr_transfer.png"),
    "power-law": ("power_laws.png",),
    "hparams": (),
}


def render(result: Mapping[str, Any], plots: Sequence[str]) -> str:
    """Markdown for `result` (the fit.json object) embedding the files named in `plots`."""
    lines = [f"# Fit of {result['source']}", "", f"{result['n_runs']} runs: {result['status']}."]
    for note in result.get("notes", []):
        lines.append(f"- note: {note}")
    for kind, (title, section) in SECTIONS.items():
        if kind not in result["fits"]:
            continue
        lines += ["", f"## {title}", "", *section(result["fits"][kind])]
        for name in PLOTS[kind]:
            if name in plots:
                lines += ["", f"![{name}]({name})"]
    if result.get("prediction"):
        p = result["prediction"]
        lines += ["", f"## Prediction for C = {_num(p['flops'])} FLOPs", ""]
        for source in ("parametric", "isoflop"):
            if source in p:
                q = p[source]
                ci = q.get("ci", {})
                lines.append(
                    f"- {source}: N = {_num(q['n_opt'])} {_interval(ci.get('n_opt'))}, "
                    f"D = {_num(q['d_opt'])} {_interval(ci.get('d_opt'))}"
                    + (
                        f", loss = {_num(q['loss_opt'])} {_interval(ci.get('loss_opt'))}"
                        if "loss_opt" in q
                        else ""
                    )
                )
    if result.get("skipped"):
        lines += ["", "## Skipped", ""]
        lines += [f"- {kind}: {why}" for kind, why in result["skipped"].items()]
    return "\n".join(lines) + "\n"
