"""`scalesweep sweep`, `scalesweep plan` and `scalesweep export`."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from scalesweep.commands import add_config_args
from scalesweep.sweep.tables import branch_table, grouped_keys, plan_table, summary_table


def add_parser(subparsers: Any) -> None:
    sweep = subparsers.add_parser(
        "sweep",
        help="run a sweep on Ray Tune + Ray Train, tracked in MLflow",
        description="Run every trial of a sweep file on Ray; record each in MLflow.",
    )
    add_config_args(sweep, what="sweep YAML", example="train.steps=50")
    sweep.add_argument(
        "--resume", action="store_true", help="finish an interrupted sweep of the same name"
    )
    sweep.add_argument(
        "--restart",
        action="store_true",
        help="start an unfinished sweep over (its MLflow runs are kept)",
    )
    sweep.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)",
    )
    _add_adaptive_args(sweep)
    sweep.set_defaults(func=run_sweep_command)

    plan = subparsers.add_parser(
        "plan",
        help="print a sweep's trials and total FLOPs without starting Ray",
        description="Expand a sweep file into its trials (grid cells × samples, isoFLOP "
        "budgets, cooldown branches) and print each with its size, tokens, FLOPs and swept "
        "values; every trial's config is checked. Nothing is started or written.",
    )
    add_config_args(plan, what="sweep YAML", example="train.steps=50")
    _add_design_args(plan)
    plan.set_defaults(func=run_plan_command)

    _add_export_parser(subparsers)


def _add_export_parser(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export",
        help="write a sweep's runs table (one row per trial) from MLflow",
        description="Write a sweep's runs table from MLflow: one row per trial, with its "
        "params, summary metrics and status, as `scalesweep fit` reads it.",
    )
    export.add_argument("sweep", help="sweep name (the MLflow experiment)")
    export.add_argument(
        "--tracking-uri",
        default=None,
        help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db",
    )
    export.add_argument("--out", type=Path, required=True, help="runs.parquet or runs.csv")
    export.add_argument(
        "--tracking-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for an http(s) tracking server, and for each of its answers",
    )
    export.set_defaults(func=run_export_command)


def _add_design_args(plan: Any) -> None:
    plan.add_argument(
        "--next",
        type=int,
        default=None,
        metavar="K",
        help="propose the K runs of the isoFLOP ladder that narrow the forecast at "
        "--target-flops most per FLOP, from the sweep's finished runs in MLflow (default: "
        "print the whole plan)",
    )
    plan.add_argument(
        "--target-flops",
        type=float,
        default=None,
        metavar="C",
        help="the budget of the forecast, above the ladder's (required with --next)",
    )
    plan.add_argument(
        "--objective",
        choices=("n_opt", "loss"),
        default=None,
        help="narrow the interval of N_opt(C) or of L_opt(C) (default: n_opt)",
    )


def _add_adaptive_args(sweep: Any) -> None:
    group = sweep.add_argument_group(
        "adaptive rounds", "recommend K runs, run them, refit; see docs/fits.md 'Which runs next'"
    )
    group.add_argument(
        "--adaptive", type=int, default=None, metavar="ROUNDS", help="run up to ROUNDS rounds"
    )
    group.add_argument("--next", type=int, default=None, metavar="K", help="runs per round (3)")
    group.add_argument(
        "--target-flops", type=float, default=None, metavar="C", help="the forecast's budget"
    )
    group.add_argument(
        "--objective", choices=("n_opt", "loss"), default=None, help="default: n_opt"
    )
    group.add_argument(
        "--target-width",
        type=float,
        default=None,
        metavar="W",
        help="stop once the interval's (high - low) / point is at most W, e.g. 0.2",
    )
    group.add_argument(
        "--max-flops",
        type=float,
        default=None,
        metavar="F",
        help="stop once the rounds have spent F training FLOPs",
    )


def refuse_without(args: argparse.Namespace, switch: str, options: tuple[str, ...]) -> None:
    """Refuse `options` (argparse names) given without the `switch` they steer (e.g. "next"
    for --next K), rather than ignore them."""
    from scalesweep.errors import UserError

    given = [f"--{n.replace('_', '-')}" for n in options if getattr(args, n) is not None]
    if getattr(args, switch) is None and given:
        flag = f"--{switch.replace('_', '-')}"
        raise UserError(f"{', '.join(given)}: only apply with {flag}; add {flag}, or drop them")


def run_adaptive_command(args: argparse.Namespace) -> int:
    """`scalesweep sweep FILE --adaptive ROUNDS ...`: rounds of recommend, run, refit."""
    from rich.console import Console

    from scalesweep.errors import UserError
    from scalesweep.experiment import load_experiment
    from scalesweep.sweep.driver import run_sweep
    from scalesweep.sweep.next_runs import show
    from scalesweep.sweep.rounds import Settings, mlflow_hooks, run_rounds

    if args.target_flops is None:
        raise UserError("--adaptive: pass --target-flops C, the budget whose forecast to narrow")
    experiment = load_experiment(args.config, args.overrides)
    console = Console()
    settings = Settings(
        args.adaptive,
        3 if args.next is None else args.next,
        args.target_flops,
        objective=args.objective or "n_opt",
        target_width=args.target_width,
        max_flops=args.max_flops,
    )
    address = args.address or os.environ.get("RAY_ADDRESS")
    outcome, lines = run_rounds(
        experiment,
        settings,
        mlflow_hooks(experiment, run_sweep, lambda p, n: show(console, p, f"round {n}")),
        resume=args.resume,
        restart=args.restart,
        address=address,
    )
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    if outcome is None:
        return 0
    console.print(summary_table(experiment.config.name, outcome.rows))
    from scalesweep import metrics as m

    return 1 if any(r[m.STATUS] == m.FAILED for r in outcome.rows) else 0


def run_next_command(args: argparse.Namespace) -> int:
    """`scalesweep plan FILE --next K --target-flops C`: the runs to do next."""
    from rich.console import Console

    from scalesweep.errors import UserError
    from scalesweep.experiment import load_experiment
    from scalesweep.sweep.design import propose, read_runs
    from scalesweep.sweep.next_runs import show

    if args.target_flops is None:
        raise UserError("--next: pass --target-flops C, the budget whose forecast to narrow")
    experiment = load_experiment(args.config, args.overrides)
    table = read_runs(experiment)
    proposal = propose(
        experiment,
        table,
        k=args.next,
        target_flops=args.target_flops,
        objective=args.objective or "n_opt",
    )
    show(Console(), proposal)
    return 0


def run_plan_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from scalesweep.experiment import load_experiment
    from scalesweep.sweep.plan import plan

    refuse_without(args, "next", ("target_flops", "objective"))
    if args.next is not None:
        return run_next_command(args)
    experiment = load_experiment(args.config, args.overrides)
    result = plan(experiment)
    console = Console()
    console.print(plan_table(result, experiment))
    if result.sampled_keys:
        console.print(
            f"sampled per cell by {experiment.config.search.algorithm}: "
            f"{', '.join(result.sampled_keys)}"
        )
    if any(t.branches for t in result.trials):
        console.print(branch_table(result))
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(
        f"total: {result.n_trials} trials, {result.total_flops:.4g} training FLOPs "
        f"({experiment.config.train.flop_counting} counting)"
    )
    if any(t.branches for t in result.trials):
        console.print(
            f"cooldown branches: {result.n_runs} runs from {result.n_trials} trunks; the same "
            f"runs trained from scratch: {result.from_scratch_flops:.4g} FLOPs; branched / "
            f"from scratch = {result.total_flops / result.from_scratch_flops:.3f}"
        )
    return 0


def run_sweep_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from scalesweep.experiment import load_experiment
    from scalesweep.sweep.plan import plan

    if args.resume and args.restart:
        from scalesweep.errors import UserError

        raise UserError("--resume and --restart contradict each other; pass one")
    adaptive_only = ("next", "target_flops", "objective", "target_width", "max_flops")
    refuse_without(args, "adaptive", adaptive_only)
    if args.adaptive is not None:
        return run_adaptive_command(args)
    experiment = load_experiment(args.config, args.overrides)
    result = plan(experiment)  # every trial's config is validated here, before Ray starts
    console = Console()
    console.print(
        f"[bold]{experiment.config.name}[/]: {result.n_trials} trials, "
        f"{result.total_flops:.3g} training FLOPs"
    )

    from scalesweep.sweep.driver import run_sweep
    from scalesweep.sweep.lock import sweep_lock

    address = args.address or os.environ.get("RAY_ADDRESS")
    with sweep_lock(experiment.config):  # one driver per sweep, released on any exit
        outcome = run_sweep(
            experiment, result, resume=args.resume, restart=args.restart, address=address
        )
    experiment_id = _set_up_ui(experiment, result, outcome.tracking_uri)  # it exists now
    console.print(summary_table(experiment.config.name, outcome.rows, grouped_keys(result)))
    if outcome.interrupted:
        from scalesweep import metrics as m
        from scalesweep.sweep.interrupt import resume_hint

        done = sum(r[m.STATUS] in m.ENDED_STATUSES for r in outcome.rows)
        hint = resume_hint(done, result.n_runs, str(args.config))
        console.print(hint, soft_wrap=True, highlight=False, markup=False)
        return 130
    report = _write_sweep_report(experiment, outcome, console)
    lines = closing_lines(experiment.config.name, experiment_id, outcome, report)
    for line in [*_outage(experiment.config.name, outcome), *lines]:
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    from scalesweep import metrics as m

    failed = sum(r[m.STATUS] == m.FAILED for r in outcome.rows)
    return 1 if failed else 0


def _outage(name: str, outcome: Any) -> list[str]:
    """The tracking outages the trials lived through, from their runs' tags (none: [])."""
    from scalesweep import tracking

    client = tracking.connect(outcome.tracking_uri)
    line = tracking.outage_line(client, name, outcome.parent_run_id)
    return [line] if line else []


def _swept_keys(plan: Any) -> list[str]:
    """The keys the runs table should show: width and LR always, then what the sweep varies."""
    keys = ["model.width", "optim.lr"]
    for trial in plan.trials:
        keys += [k for k in trial.cell if k not in keys]
    return keys + [k for k in plan.sampled_keys if k not in keys]


def _set_up_ui(experiment: Any, plan: Any, uri: str) -> str:
    """The sweep's experiment, marked as model training, with its trials view (see
    `scalesweep.tracking.ui`); returns its id."""
    from scalesweep import tracking

    return tracking.with_retries(
        lambda: tracking.set_up_experiment(uri, experiment.config.name, _swept_keys(plan)),
        what="setting up the sweep's experiment",
        timeout_s=experiment.config.tracking.outage_timeout_s,
    )


def _write_sweep_report(experiment: Any, outcome: Any, console: Any) -> Path | None:
    """The sweep's own report (`scalesweep.sweep.report`), in its storage folder and on its
    parent run. A finished sweep is not failed by its report: an error is printed instead."""
    from scalesweep.sweep.report import sweep_report

    name, out = experiment.config.name, outcome.storage / "report"
    try:
        return sweep_report(name, outcome.tracking_uri, outcome.parent_run_id, out)
    except Exception as error:  # the trials are done and recorded; say what went wrong
        console.print(f"sweep report not written: {type(error).__name__}: {error}", markup=False)
        return None


def runnable(command: str) -> str:
    """`command` as a shell runs it: its bare name when PATH finds this environment's, else
    the path in this environment (the README's setup does not activate .venv)."""
    here = Path(sys.executable).parent / command
    found = shutil.which(command)
    if found is not None and Path(found).resolve() == here.resolve():
        return command
    if here.exists():
        return shlex.quote(str(here))
    return f"{shlex.quote(sys.executable)} -m {command}"  # both run as modules too


def closing_lines(name: str, experiment_id: str, outcome: Any, report: Path | None) -> list[str]:
    """Where to look next: the runs in the MLflow UI, the report, the full fit."""
    from scalesweep import tracking

    uri = outcome.tracking_uri
    lines = [
        f"MLflow: experiment {name!r} (id {experiment_id}), parent run "
        f"{outcome.parent_run_id}, store {uri}"
    ]
    if not uri.startswith(("http://", "https://")):
        lines.append(f"  start the UI:   {runnable('mlflow')} ui --backend-store-uri {uri}")
    lines.append(f"  runs:           {tracking.runs_url(uri, experiment_id)}")
    if report is not None:
        lines.append(f"  report:         {report}")
        lines.append(
            f"  report (MLflow): {tracking.report_url(uri, experiment_id, outcome.parent_run_id)}"
        )
    lines.append(
        f"  full fit:       {runnable('scalesweep')} fit {name} --kind all --tracking-uri {uri} "
        f"--out fit-{name}"
    )
    return lines


def run_export_command(args: argparse.Namespace) -> int:
    from scalesweep import tracking
    from scalesweep.errors import UserError

    suffix = args.out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"--out: got {args.out}; the runs table is written as .parquet or .csv")
    tracking.wait_for_server(args.tracking_uri, args.tracking_timeout)
    table = tracking.runs_table(args.sweep, args.tracking_uri)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        table.to_parquet(args.out, index=False)
    else:
        table.to_csv(args.out, index=False)
    print(f"wrote {len(table)} trials of {args.sweep!r} to {args.out}")
    return 0
