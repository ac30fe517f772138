"""`scalesweep fit SOURCE --kind ...`: isoFLOP curves, scaling laws and LR sensitivity from a
runs table (MLflow experiment, .csv or .parquet).

Heavy libraries (pandas, statsmodels, matplotlib, mlflow) load inside `run`, so `--help` stays
fast. Bad input raises `UserError`, which the CLI prints as `error: ...` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KINDS = ("isoflop", "parametric", "power-law", "lr-sensitivity", "hparams")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="fit isoFLOP curves, scaling laws and LR sensitivity to a sweep's runs",
        description="Fit a runs table: SOURCE is a .csv, a .parquet, or an MLflow experiment "
        "(sweep) name. With --kind all, every fit whose columns are present runs.",
    )
    parser.add_argument("source", help="runs.csv, runs.parquet, or a sweep (experiment) name")
    parser.add_argument("--kind", choices=(*KINDS, "all"), default="all")
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument(
        "--out", type=Path, default=None, help="write fit.json, PNG plots and report.md here"
    )
    parser.add_argument(
        "--col",
        action="append",
        default=[],
        metavar="CANONICAL=SOURCE",
        help='map a column, e.g. --col params="Model Size" (repeatable)',
    )
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (MLflow sources)")
    parser.add_argument(
        "--parent-run-id", default=None, help="only this sweep invocation (default: all)"
    )
    parser.add_argument("--group-by", nargs="+", default=None, metavar="COL")
    parser.add_argument("--lr-range", nargs=2, type=float, default=None, metavar=("LO", "HI"))
    parser.add_argument("--init-loss", type=float, default=None, help="ℓ0, e.g. ln(vocab)")
    parser.add_argument(
        "--predict-flops",
        type=float,
        default=None,
        metavar="C",
        help="recommended N, D and predicted loss (with CI) for this budget",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=200, help="parametric bootstrap resamples (default 200)"
    )
    parser.add_argument(
        "--isoflop-bootstrap", type=int, default=0, help="isoFLOP bootstrap resamples (runs)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level")
    parser.add_argument("--isoflop-method", choices=("quadratic", "akima"), default="quadratic")
    parser.add_argument(
        "--window", type=int, default=5, help="sizes per isoFLOP parabola (0: all sizes)"
    )
    parser.add_argument("--robust", action="store_true", help="Huber-weighted parabolas")
    parser.add_argument("--saturating", action="store_true", help="power law L = E + A·X^-α")
    parser.add_argument(
        "--curves",
        type=Path,
        default=None,
        help="per-step curves CSV (run_id, params, flops, loss) for isoFLOP Approach 1",
    )
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """`scalesweep fit ...` on its own, e.g. `main(["fit", ...])`: the full CLI's arguments and
    exit codes (a `UserError` prints "error: ..." and returns 2), built from this command alone,
    so tests and scripts do not import the other commands."""
    from scalesweep.cli import main as cli_main

    return cli_main(argv, modules=(__name__,))


def _is_file_source(source: str) -> bool:
    return Path(source).suffix.lower() in (".csv", ".parquet")


def _fit_one(kind: str, runs: Any, args: argparse.Namespace, rng: Any) -> Any:
    if kind == "parametric":
        from scalesweep.fit.parametric import fit_parametric

        return fit_parametric(runs, n_bootstrap=args.bootstrap, rng=rng, level=args.level)
    if kind == "isoflop":
        from scalesweep.fit.isoflop import fit_isoflop

        return fit_isoflop(
            runs,
            method=args.isoflop_method,
            window=args.window or None,
            robust=args.robust,
            level=args.level,
            n_bootstrap=args.isoflop_bootstrap,
            rng=rng,
        )
    if kind == "power-law":
        from scalesweep.fit.power_law import fit_power_laws

        return fit_power_laws(runs, saturating=args.saturating, level=args.level)
    if kind == "lr-sensitivity":
        from scalesweep.fit.lr_sensitivity import DEFAULT_LR_RANGE, fit_lr_sensitivity

        return fit_lr_sensitivity(
            runs,
            group_by=args.group_by,
            lr_range=tuple(args.lr_range) if args.lr_range else DEFAULT_LR_RANGE,
            init_loss=args.init_loss,
            level=args.level,
        )
    from scalesweep.fit.hparams import fit_hparams

    return fit_hparams(runs, level=args.level)


def _to_dict(fit: Any) -> Any:
    if isinstance(fit, dict):
        return {k: v.to_dict() for k, v in fit.items()}
    return fit.to_dict()


def _notes(fit: Any) -> list[str]:
    """Notes each fit carries from the shared checks (tokens derived, runs set aside)."""
    parts = fit.values() if isinstance(fit, dict) else (fit,)
    return [note for part in parts for note in getattr(part, "notes", ())]


def _prediction(fits: dict[str, Any], flops: float) -> dict[str, Any]:
    from scalesweep.errors import UserError
    from scalesweep.fit.parametric import compute_optimal

    if not (flops > 0 and math.isfinite(flops)):
        raise UserError(f"--predict-flops: `C > 0` must hold, but got ({flops})")
    out: dict[str, Any] = {"flops": flops}
    if "parametric" in fits:
        out["parametric"] = compute_optimal(fits["parametric"], flops).to_dict()
    if "isoflop" in fits:
        out["isoflop"] = fits["isoflop"].predict(flops)
    if len(out) == 1:
        raise UserError("--predict-flops needs a parametric or isoflop fit (--kind)")
    return out


def _headline(fits: dict[str, Any]) -> dict[str, float]:
    """Numbers logged as metrics of the sweep's parent run."""
    metrics: dict[str, float] = {}
    if "parametric" in fits:
        f = fits["parametric"]
        for key in ("E", "A", "B", "alpha", "beta", "a", "b"):
            metrics[f"fit.parametric.{key}"] = getattr(f, key)
    if "isoflop" in fits:
        metrics["fit.isoflop.a"] = fits["isoflop"].a
        metrics["fit.isoflop.b"] = fits["isoflop"].b
    if "lr-sensitivity" in fits:
        for i, t in enumerate(fits["lr-sensitivity"].transfer):
            metrics[f"fit.lr_transfer.k.{i}"] = t.k
    if "hparams" in fits:
        h = fits["hparams"]
        metrics["fit.hparams.lr_params_exp"] = h.lr_law.exponents["params"]
        metrics["fit.hparams.lr_tokens_exp"] = h.lr_law.exponents["tokens"]
        metrics["fit.hparams.bs_tokens_exp"] = h.bs_law.exponents["tokens"]
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def _plots(fits: dict[str, Any], runs: Any, out: Path) -> list[str]:
    from scalesweep.fit import plots

    written = []
    if "isoflop" in fits:
        written += [plots.isoflop_curves(fits["isoflop"], out)]
        written += [plots.isoflop_optimal(fits["isoflop"], out)]
    if "parametric" in fits:
        from scalesweep.fit.runs import prepare

        data = prepare(runs, kind="parametric", numeric=("params", "tokens", "loss")).frame
        written.append(plots.parametric_contours(fits["parametric"], out, data))
    if "lr-sensitivity" in fits:
        written.append(plots.lr_sensitivity_curves(fits["lr-sensitivity"], out))
        if fits["lr-sensitivity"].transfer:
            written.append(plots.lr_transfer(fits["lr-sensitivity"], out))
    if "power-law" in fits:
        written.append(plots.power_laws(fits["power-law"], out))
    return [p.name for p in written]


def _num(value: Any) -> str:
    """A number in 4 significant digits; None (a fit that had no value) as n/a."""
    return "n/a" if value is None else f"{value:.4g}"


def _ci(interval: Any) -> str:
    return "n/a" if interval is None else "[" + ", ".join(_num(v) for v in interval) + "]"


def _summary(result: dict[str, Any]) -> str:
    lines = [f"{result['source']}: {result['n_runs']} runs {result['status']}"]
    fits = result["fits"]
    if "parametric" in fits:
        p = fits["parametric"]
        lines.append(
            f"parametric: E={p['E']:.4g} A={p['A']:.4g} B={p['B']:.4g} alpha={p['alpha']:.4g} "
            f"beta={p['beta']:.4g} a={p['a']:.4g} b={p['b']:.4g} ({p['n_points']} points)"
        )
    if "isoflop" in fits:
        f = fits["isoflop"]
        excluded = sum(b["excluded"] for b in f["budgets"])
        lines.append(
            f"isoflop: a={f['a']:.4g} CI {_ci(f['a_ci'])} b={f['b']:.4g} CI {_ci(f['b_ci'])} "
            f"({len(f['budgets'])} budgets, {excluded} excluded)"
        )
        for b in f["budgets"]:
            if b["excluded"]:
                lines.append(f"  budget {b['flops']:.3g} excluded: {b['reason']}")
    if "lr-sensitivity" in fits:
        f = fits["lr-sensitivity"]
        for g in f["groups"]:
            key = {k: g[k] for k in f["group_by"]}
            lines.append(
                f"lr-sensitivity {key or 'all'}: {_num(g['sensitivity'])} "
                f"best_lr={_num(g['best_lr'])} best_loss={_num(g['best_loss'])} "
                f"({g['n_lr']} LRs, {g['n_diverged']} diverged)"
            )
        for t in f["transfer_exponent"]:
            lines.append(
                f"lr transfer: k={_num(t['k'])} CI {_ci(t['ci'])} ({t['n_widths']} widths)"
            )
    if "power-law" in fits:
        for x, f in fits["power-law"].items():
            lines.append(f"power-law L({x}): exponent {f['exponent']:.4g} CI {_ci(f['ci'])}")
    if "hparams" in fits:
        h = fits["hparams"]
        lr, bs = h["lr_law"], h["bs_law"]
        lines.append(
            f"hparams: lr_opt = {lr['coef']:.4g}·N^{lr['exponents']['params']:.3f}"
            f"·D^{lr['exponents']['tokens']:.3f}; bs_opt = {bs['coef']:.4g}"
            f"·D^{bs['exponents']['tokens']:.3f}"
        )
    if result.get("prediction"):
        lines.append(f"prediction: {json.dumps(result['prediction'])}")
    for kind, why in result.get("skipped", {}).items():
        lines.append(f"skipped {kind}: {why}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from scalesweep.errors import UserError
    from scalesweep.fit.runs import parse_column_map, read_runs

    if args.bootstrap < 0 or args.isoflop_bootstrap < 0:
        raise UserError("--bootstrap and --isoflop-bootstrap must be >= 0")
    runs = read_runs(
        args.source,
        tracking_uri=args.tracking_uri,
        columns=parse_column_map(args.col),
        parent_run_id=args.parent_run_id,
    )
    if runs.empty:
        raise UserError(f"{args.source}: the runs table is empty")
    kinds = KINDS if args.kind == "all" else (args.kind,)
    rng = np.random.default_rng(args.seed)
    fits: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    notes: list[str] = []
    for kind in kinds:
        try:
            fits[kind] = _fit_one(kind, runs, args, rng)
        except UserError as error:
            if args.kind != "all":
                raise
            skipped[kind] = str(error)
            continue
        notes += [n for n in _notes(fits[kind]) if n not in notes]
    if not fits:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise UserError(f"no fit could run on {args.source}: {reasons}")
    envelope = _envelope(args, fits, skipped)
    status = (
        runs["status"].astype(str).value_counts().to_dict()
        if "status" in runs.columns
        else {"unknown": len(runs)}
    )
    result: dict[str, Any] = {
        "source": str(args.source),
        "kind": args.kind,
        "n_runs": len(runs),
        "status": status,
        "fits": {k: _to_dict(v) for k, v in fits.items()},
        "skipped": skipped,
        "notes": notes,
    }
    if envelope is not None:
        result["fits"]["isoflop_envelope"] = envelope.to_dict()
    if args.predict_flops is not None:
        result["prediction"] = _prediction(fits, args.predict_flops)
    # One JSON object: a single kind's keys at the top level (E, A, ... or a, b, budgets ...).
    payload = result if args.kind == "all" else {**result["fits"][args.kind], **result}
    text = json.dumps(payload, indent=2, allow_nan=False, default=_json_default)
    if args.out is not None:
        _write_outputs(args, fits, runs, result, text)
    if args.json:
        print(text)
    else:
        print(_summary(result))
        for note in notes:
            print(f"note: {note}")
    return 0


def _json_default(value: Any) -> Any:
    from scalesweep.fit.runs import finite_or_none

    converted = finite_or_none(value)
    if converted is value:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return converted


def _envelope(args: argparse.Namespace, fits: dict[str, Any], skipped: dict[str, str]) -> Any:
    """Approach 1 when per-step curves are available (--curves, or MLflow histories)."""
    if args.kind not in ("isoflop", "all"):
        return None
    import pandas as pd

    from scalesweep.errors import UserError
    from scalesweep.fit.isoflop import fit_envelope

    try:
        if args.curves is not None:
            if not args.curves.is_file():
                raise UserError(f"--curves: the file {args.curves} does not exist")
            curves = pd.read_csv(args.curves)
        elif not _is_file_source(args.source):
            from scalesweep.fit.runs import curves_from_mlflow

            curves = curves_from_mlflow(
                args.source, args.tracking_uri, parent_run_id=args.parent_run_id
            )
            if curves.empty:
                return None
        else:
            return None
        return fit_envelope(curves, level=args.level)
    except UserError as error:
        if args.curves is not None and args.kind != "all":
            raise
        skipped["isoflop_envelope"] = str(error)
        return None


def _write_outputs(
    args: argparse.Namespace, fits: dict[str, Any], runs: Any, result: dict[str, Any], text: str
) -> None:
    from scalesweep.fit.report import render

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(text + "\n")
    plots = _plots(fits, runs, out)
    (out / "report.md").write_text(render(result, plots))
    if not _is_file_source(args.source):
        from mlflow.tracking import MlflowClient

        from scalesweep.fit.runs import latest_parent_run_id
        from scalesweep.sweep.tracking import resolve_tracking_uri

        uri = resolve_tracking_uri(args.tracking_uri)
        parent = args.parent_run_id or latest_parent_run_id(args.source, uri)
        client = MlflowClient(uri)
        for name in ("fit.json", "report.md", *plots):
            client.log_artifact(parent, str(out / name), artifact_path="fit")
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in _headline(fits).items()]
        if metrics:
            client.log_batch(parent, metrics=metrics)
        # stderr: with --json, stdout holds exactly one JSON object
        print(f"logged fit outputs to parent run {parent} of {args.source!r}", file=sys.stderr)
