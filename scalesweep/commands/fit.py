"""`scalesweep fit SOURCE --kind ...`: isoFLOP curves, scaling laws and LR sensitivity from a
runs table (MLflow experiment, .csv or .parquet).

The command's edge: it reads the source (`scalesweep.sources`), runs the fit pipeline
(`scalesweep.fit.pipeline`), prints the summary and writes (and, for an MLflow sweep, logs) the
outputs. The fit flags are `FitOptions`' fields (`scalesweep.fit.options`). Heavy libraries
load inside `run`, so `--help` stays fast. Bad input raises `UserError`, which the CLI prints
as `error: ...` with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalesweep.fit import KINDS
from scalesweep.fit.options import add_arguments, from_args


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="fit isoFLOP curves, scaling laws and LR sensitivity to a sweep's runs",
        description="Fit a runs table: SOURCE is a .csv, a .parquet, or an MLflow experiment "
        "(sweep) name. With --kind all, every fit whose columns are present runs.",
    )
    parser.add_argument(
        "source", help="runs.csv, runs.parquet, or a sweep (experiment) name (required)"
    )
    parser.add_argument(
        "--kind",
        choices=(*KINDS, "all"),
        default="all",
        help="the fit to run; all: every fit the runs allow, saying why the others were "
        "skipped (default: all)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object to stdout (default: the text summary)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write fit.json, PNG plots, report.html and report.md here (and, for an MLflow "
        "sweep, log them to its parent run) (default: none)",
    )
    parser.add_argument(
        "--col",
        action="append",
        default=[],
        metavar="CANONICAL=SOURCE",
        help='map a column, e.g. --col params="Model Size" (repeatable; default: the aliases '
        "of fit.runs)",
    )
    _add_source_args(parser)
    add_arguments(parser)
    parser.set_defaults(func=run)


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    """Where an MLflow source is, and the curves of a file source."""
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store of an MLflow source (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db)",
    )
    parser.add_argument(
        "--tracking-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for an http(s) tracking server, and for each of its answers "
        "(default: 30)",
    )
    parser.add_argument(
        "--parent-run-id",
        default=None,
        help="only this sweep invocation (default: every invocation of the sweep)",
    )
    parser.add_argument(
        "--curves",
        type=Path,
        default=None,
        help="per-step curves of a file source, one row per (run, step): run_id, step and the "
        "metrics the fits read (val/loss for critical-batch and kaplan-ns; val/loss and "
        "train/flops for isoflop-envelope) (default: none)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`scalesweep fit ...` on its own, e.g. `main(["fit", ...])`: the full CLI's arguments and
    exit codes (a `UserError` prints "error: ..." and returns 2), built from this command alone,
    so tests and scripts do not import the other commands."""
    from scalesweep.cli import main as cli_main

    return cli_main(argv, modules=(__name__,))


def run(args: argparse.Namespace) -> int:
    from scalesweep.errors import UserError
    from scalesweep.fit import FitData
    from scalesweep.fit.pipeline import run_fits
    from scalesweep.fit.report.text import summary
    from scalesweep.fit.runs import apply_column_map, parse_column_map
    from scalesweep.sources import CurveSource, is_file_source, read_table

    options = from_args(args)
    if not is_file_source(args.source):
        from scalesweep import tracking

        tracking.wait_for_server(args.tracking_uri, args.tracking_timeout)
    table = read_table(
        args.source, tracking_uri=args.tracking_uri, parent_run_id=args.parent_run_id
    )
    runs = apply_column_map(table, parse_column_map(args.col))
    if runs.empty:
        raise UserError(f"{args.source}: the runs table is empty")
    names = tuple(KINDS) if args.kind == "all" else (args.kind,)
    curves = CurveSource.of(args, table)  # one source for every kind that reads curves
    data = FitData(runs, load_curves=curves.curves)
    outcome = run_fits(data, names, options, source=str(args.source), kind=args.kind)
    if not outcome.fits:
        reasons = "; ".join(f"{k}: {v}" for k, v in outcome.result["skipped"].items())
        raise UserError(f"no fit could run on {args.source}: {reasons}")
    if args.out is not None:
        _write_outputs(args, outcome, runs)
    if args.json:
        print(outcome.json())
    else:
        print(summary(outcome.result))
        for note in outcome.result["notes"]:
            print(f"note: {note}")
    return 0


def _write_outputs(args: argparse.Namespace, outcome: Any, runs: Any) -> None:
    from scalesweep.fit.pipeline import headline_metrics, write_report
    from scalesweep.sources import is_file_source

    files = write_report(args.out, outcome, runs)
    if is_file_source(args.source):
        return
    from scalesweep import tracking

    parent = tracking.log_fit_outputs(
        args.source,
        args.tracking_uri,
        parent_run_id=args.parent_run_id,
        files=files,
        headline=headline_metrics(outcome.fits),
    )
    # stderr: with --json, stdout holds exactly one JSON object
    print(f"logged fit outputs to parent run {parent} of {args.source!r}", file=sys.stderr)
