"""`scalesweep fit SOURCE --kind ...`: isoFLOP curves, scaling laws and LR sensitivity from a
runs table (MLflow experiment, .csv or .parquet).

This module is the fitter's edge: it reads the source (a file here, an MLflow experiment through
`scalesweep.tracking`), loops over the fit-kind registry (`scalesweep.fit.kinds`) and writes the
outputs. Heavy libraries load inside `run`, so `--help` stays fast. Bad input raises
`UserError`, which the CLI prints as `error: ...` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalesweep.commands.fit_sources import CurveSource, is_file_source, read_table
from scalesweep.fit.kinds import KINDS


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
        "--out",
        type=Path,
        default=None,
        help="write fit.json, PNG plots, report.html and report.md here (and, for an MLflow "
        "sweep, log them to its parent run)",
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
    _add_fit_options(parser)
    parser.set_defaults(func=run)


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    """The options that reach the fits (`FitOptions`)."""
    parser.add_argument("--group-by", nargs="+", default=None, metavar="COL")
    parser.add_argument("--lr-range", nargs=2, type=float, default=None, metavar=("LO", "HI"))
    parser.add_argument("--init-loss", type=float, default=None, help="ℓ0, e.g. ln(vocab)")
    parser.add_argument(
        "--predict-flops",
        type=float,
        default=None,
        metavar="C",
        help="recommended N, D and predicted loss at this budget, counted as the runs count "
        "FLOPs (train.flop_counting), with confidence and prediction intervals",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=200, help="parametric bootstrap resamples (default 200)"
    )
    parser.add_argument(
        "--isoflop-bootstrap", type=int, default=0, help="isoFLOP bootstrap resamples (runs)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level")
    parser.add_argument(
        "--isoflop-method",
        choices=("akima", "quadratic"),
        default="akima",
        help="per-budget minimum: Akima interpolation (Porian et al. 2024; the default, "
        "measured best in docs/fits.md) or a local parabola",
    )
    parser.add_argument(
        "--window", type=int, default=5, help="sizes per parabola, quadratic method (0: all)"
    )
    parser.add_argument(
        "--n-col",
        default=None,
        metavar="COL",
        help="the column read as N (default: the one the runs' train.flop_counting pairs with: "
        "params for 6N, params_nonembed for kaplan, all but the input embedding for "
        "chinchilla and palm)",
    )
    parser.add_argument(
        "--all-runs",
        action="store_true",
        help="parametric: fit every completed run, not the best run per (N, D) cell",
    )
    parser.add_argument("--robust", action="store_true", help="Huber-weighted parabolas")
    parser.add_argument("--saturating", action="store_true", help="power law L = E + A·X^-α")
    parser.add_argument(
        "--curves",
        type=Path,
        default=None,
        help="per-step curves CSV: run_id, params, flops, loss for isoFLOP Approach 1; "
        "run_id, step, val/loss for critical-batch and kaplan-ns",
    )
    _add_predict_at(parser)


def _add_predict_at(parser: Any) -> None:
    parser.add_argument(
        "--predict-at",
        action="append",
        default=[],
        metavar="K=V,...",
        help="predict at L=3.2 (B_crit), N=1e9,S=1e5 (kaplan-ns) or N=1e9,D=2e10 (kaplan-nd)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`scalesweep fit ...` on its own, e.g. `main(["fit", ...])`: the full CLI's arguments and
    exit codes (a `UserError` prints "error: ..." and returns 2), built from this command alone,
    so tests and scripts do not import the other commands."""
    from scalesweep.cli import main as cli_main

    return cli_main(argv, modules=(__name__,))


def options_from(args: argparse.Namespace) -> Any:
    from scalesweep.errors import UserError
    from scalesweep.fit.batch_kinds import parse_point
    from scalesweep.fit.kinds import FitOptions

    if args.bootstrap < 0 or args.isoflop_bootstrap < 0:
        raise UserError("--bootstrap and --isoflop-bootstrap must be >= 0")
    return FitOptions(
        level=args.level,
        seed=args.seed,
        bootstrap=args.bootstrap,
        isoflop_bootstrap=args.isoflop_bootstrap,
        isoflop_method=args.isoflop_method,
        window=args.window or None,
        robust=args.robust,
        saturating=args.saturating,
        group_by=None if args.group_by is None else tuple(args.group_by),
        lr_range=None if args.lr_range is None else (args.lr_range[0], args.lr_range[1]),
        init_loss=args.init_loss,
        predict_at=tuple(parse_point(text) for text in args.predict_at),
        n_col=args.n_col,
        all_runs=args.all_runs,
    )


def _prediction(fits: dict[str, Any], flops: float) -> dict[str, Any]:
    """Each allocating fit's answer at C, every one spending C as the runs count FLOPs (the
    convention is stated once at the top and in each answer)."""
    from scalesweep.errors import UserError

    if not (flops > 0 and math.isfinite(flops)):
        raise UserError(f"--predict-flops: `C > 0` must hold, but got ({flops})")
    out: dict[str, Any] = {"flops": flops}
    for name, fit in fits.items():
        predict = KINDS[name].predict
        if predict is not None:
            out[name] = predict(fit, flops)
    if len(out) == 1:
        raise UserError("--predict-flops needs a parametric or isoflop fit (--kind)")
    conventions = {v.get("flop_counting") for k, v in out.items() if k != "flops"}
    out["flop_counting"] = (
        conventions.pop() if len(conventions) == 1 else sorted(map(str, conventions))
    )
    return out


def _summary(result: dict[str, Any]) -> str:

    lines = [f"{result['source']}: {result['n_runs']} runs {result['status']}"]
    for name, fit in result["fits"].items():
        if name in KINDS:
            lines += KINDS[name].summary(fit)
    if result.get("prediction"):
        lines += _prediction_lines(result["prediction"])
    for kind, why in result.get("skipped", {}).items():
        lines.append(f"skipped {kind}: {why}")
    return "\n".join(lines)


def _prediction_lines(prediction: dict[str, Any]) -> list[str]:
    """One line per fit: each answer with its CI (the law) and, where it has one, its PI (a new
    budget's or run's value)."""
    from scalesweep.fit.format import interval, num

    convention = prediction["flop_counting"] or "FLOP convention unknown"
    lines = [f"prediction at C = {num(prediction['flops'])} ({convention}):"]
    for name, answer in prediction.items():
        if not isinstance(answer, dict):
            continue
        parts = []
        for key, label in (("n_opt", "N_opt"), ("d_opt", "D_opt"), ("loss_opt", "loss")):
            part = f"{label}={num(answer.get(key))} CI {interval(answer['ci'].get(key))}"
            if answer.get("pi", {}).get(key):
                part += f" PI {interval(answer['pi'][key])}"
            parts.append(part)
        lines.append(f"  {name}: " + "; ".join(parts))
    return lines


def fit_all(data: Any, names: Sequence[str], options: Any, *, strict: bool) -> Any:
    """(fits, skipped, notes): every kind in `names` fitted; with `strict`, a kind that cannot
    be fitted raises, else it is skipped with the reason."""
    from scalesweep.errors import UserError
    from scalesweep.fit.kinds import notes_of

    fits: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    notes: list[str] = []
    for name in names:
        try:
            fits[name] = KINDS[name].fit(data, options)
        except UserError as error:
            if strict:
                raise
            skipped[name] = str(error)
            continue
        notes += [n for n in notes_of(fits[name]) if n not in notes]
    return fits, skipped, notes


def fit_result(
    source: str,
    kind: str,
    runs: Any,
    fits: dict[str, Any],
    skipped: dict[str, str],
    notes: list[str],
) -> dict[str, Any]:
    """The fit.json object (before the envelope and the prediction are added)."""
    from scalesweep import metrics as m

    status = (
        runs[m.STATUS].astype(str).value_counts().to_dict()
        if m.STATUS in runs.columns
        else {"unknown": len(runs)}
    )
    return {
        "source": source,
        "kind": kind,
        "n_runs": len(runs),
        "status": status,
        "fits": {k: KINDS[k].to_dict(v) for k, v in fits.items()},
        "skipped": skipped,
        "notes": notes,
    }


def run(args: argparse.Namespace) -> int:
    from scalesweep.errors import UserError
    from scalesweep.fit.kinds import FitData
    from scalesweep.fit.runs import apply_column_map, parse_column_map

    options = options_from(args)
    table = read_table(args.source, tracking_uri=args.tracking_uri,
                       parent_run_id=args.parent_run_id)  # fmt: skip
    runs = apply_column_map(table, parse_column_map(args.col))
    if runs.empty:
        raise UserError(f"{args.source}: the runs table is empty")
    names = tuple(KINDS) if args.kind == "all" else (args.kind,)
    curves = CurveSource.of(args, table)  # one source for every kind that reads curves
    data = FitData(runs, load_curves=curves.curves)
    fits, skipped, notes = fit_all(data, names, options, strict=args.kind != "all")
    if not fits:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise UserError(f"no fit could run on {args.source}: {reasons}")
    envelope = _envelope(args, skipped, curves)
    result = fit_result(str(args.source), args.kind, runs, fits, skipped, notes)
    if envelope is not None:
        result["fits"]["isoflop_envelope"] = envelope.to_dict()
    if args.predict_flops is not None:
        result["prediction"] = _prediction(fits, args.predict_flops)
    # One JSON object: a single kind's keys at the top level (E, A, ... or a, b, budgets ...).
    payload = result if args.kind == "all" else {**result["fits"][args.kind], **result}
    text = json.dumps(payload, indent=2, allow_nan=False, default=json_default)
    if args.out is not None:
        _write_outputs(args, fits, runs, result, text)
    if args.json:
        print(text)
    else:
        print(_summary(result))
        for note in notes:
            print(f"note: {note}")
    return 0


def json_default(value: Any) -> Any:
    from scalesweep.fit.runs import finite_or_none

    converted = finite_or_none(value)
    if converted is value:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return converted


def _envelope(args: argparse.Namespace, skipped: dict[str, str], source: CurveSource) -> Any:
    """Approach 1 when per-step curves are available (--curves, or MLflow histories)."""
    if args.kind not in ("isoflop", "all"):
        return None
    from scalesweep.errors import UserError
    from scalesweep.fit.envelope import fit_envelope

    try:
        curves = source.envelope()
        return None if curves is None else fit_envelope(curves, level=args.level)
    except UserError as error:
        if args.curves is not None and args.kind != "all":
            raise
        skipped["isoflop_envelope"] = str(error)
        return None


def write_report(
    out: Path, fits: dict[str, Any], runs: Any, result: dict[str, Any], text: str
) -> list[Path]:
    """fit.json (`text`), the plots, report.md and report.html in `out`; the files written."""
    from scalesweep.fit import plots as fit_plots
    from scalesweep.fit.report import render, render_html

    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(text + "\n")
    plots = {name: KINDS[name].plots(fit, out) for name, fit in fits.items()}
    if result.get("prediction"):
        plots["prediction"] = [fit_plots.prediction(fits, result["prediction"], out)]
    names = {kind: [p.name for p in paths] for kind, paths in plots.items()}
    (out / "report.md").write_text(render(result, names))
    (out / "report.html").write_text(render_html(result, plots, runs))
    reports = [out / "fit.json", out / "report.html", out / "report.md"]
    return reports + [p for paths in plots.values() for p in paths]


def headline_metrics(fits: dict[str, Any]) -> dict[str, float]:
    return {k: v for name, fit in fits.items() for k, v in KINDS[name].headline(fit).items()}


def _write_outputs(
    args: argparse.Namespace, fits: dict[str, Any], runs: Any, result: dict[str, Any], text: str
) -> None:
    files = write_report(args.out, fits, runs, result, text)
    if is_file_source(args.source):
        return
    from scalesweep import tracking

    parent = tracking.log_fit_outputs(
        args.source,
        args.tracking_uri,
        parent_run_id=args.parent_run_id,
        files=files,
        headline=headline_metrics(fits),
    )
    # stderr: with --json, stdout holds exactly one JSON object
    print(f"logged fit outputs to parent run {parent} of {args.source!r}", file=sys.stderr)
