"""`scalesweep sweep`, `scalesweep plan` and `scalesweep export`."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalesweep.commands import add_config_args


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
    sweep.set_defaults(func=run_sweep_command)

    plan = subparsers.add_parser(
        "plan",
        help="print a sweep's trials and total FLOPs without starting Ray",
        description="Expand a sweep file into its trials (grid cells × samples, isoFLOP "
        "budgets, cooldown branches) and print each with its size, tokens, FLOPs and swept "
        "values; every trial's config is checked. Nothing is started or written.",
    )
    add_config_args(plan, what="sweep YAML", example="train.steps=50")
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


def _si(count: int) -> str:
    """3 significant digits with k/M/G/T: 4852992 -> 4.85M."""
    for power, suffix in ((12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if count >= 10**power:
            return f"{count / 10**power:.3g}{suffix}"
    return str(count)


def _plan_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _plan_table(plan: Any, experiment: Any) -> Any:
    """One row per trial: its name, every key the sweep varies (sampled keys say so), size,
    tokens, FLOPs and steps. Numbers fold onto a second line in a narrow terminal rather than
    being cut ("3.908e+…")."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"{experiment.config.name}: {len(plan.trials)} cells × "
        f"{plan.samples_per_cell} sample(s) = {plan.n_trials} trials",
        box=box.SIMPLE_HEAD,  # no rules between columns: room for the numbers at 80 columns
        collapse_padding=True,
    )
    # tokens and steps have their own columns (an isoFLOP budget sets them)
    swept = [k for k in grouped_keys(plan) if k not in ("train.tokens", "train.steps")]
    swept = [*(k for k in ("model.width", "optim.lr") if k not in swept), *swept]
    swept += [k for k in plan.sampled_keys if k not in swept]
    sampled = set(plan.sampled_keys)
    rows = []
    for trial in plan.trials:
        tree = trial.config.model_dump()
        values = [
            "sampled" if key in sampled else _plan_value(tree[key.split(".")[0]][key.split(".")[1]])
            for key in swept
        ]
        sizes = [
            _si(trial.params),
            _si(trial.tokens),
            f"{trial.flops:.3g}".replace("e+", "e"),
            str(trial.steps),
        ]
        rows.append([trial.name, *values, *sizes])
    names = ["trial", *(k.split(".")[-1] for k in swept), "params", "tokens", "FLOPs", "steps"]
    for i, name in enumerate(names):
        if i == 0:  # the name may fold; the numbers are never cut
            table.add_column(name, overflow="fold", min_width=6)
        else:  # a long key breaks at its underscores: cooldown_ / fraction
            header = name.replace("_", "_\n") if len(name) > 8 else name
            width = max(*(len(part) for part in header.split("\n")), *(len(r[i]) for r in rows))
            table.add_column(header, justify="right", no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    return table


def run_plan_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from scalesweep.experiment import load_experiment
    from scalesweep.sweep.plan import plan

    experiment = load_experiment(args.config, args.overrides)
    result = plan(experiment)
    console = Console()
    console.print(_plan_table(result, experiment))
    if result.sampled_keys:
        console.print(
            f"sampled per cell by {experiment.config.search.algorithm}: "
            f"{', '.join(result.sampled_keys)}"
        )
    if any(t.branches for t in result.trials):
        console.print(_branch_table(result))
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


def _branch_table(plan: Any) -> Any:
    from rich.table import Table

    from scalesweep.branches import cooldown_flops

    table = Table(title="cooldown branches (forked from their trunk at the fork step)")
    for column in ("trunk", "branch", "tokens", "fork step", "steps", "cooldown FLOPs"):
        table.add_column(column, justify="left" if column in ("trunk", "branch") else "right")
    for trial in plan.trials:
        per_step = trial.flops / trial.steps
        for branch in trial.branches:
            cooldown = cooldown_flops(branch, per_step)
            table.add_row(
                trial.name,
                branch.name,
                f"{branch.tokens:,}",
                str(branch.fork_step),
                str(branch.steps),
                f"{cooldown:.3e}",
            )
    return table


def summary_table(name: str, rows: list[dict[str, Any]], keys: Sequence[str] = ()) -> Any:
    """Best LR per group and the count of trials by status. A group is one value of the width
    and of each of `keys` (the other swept keys but the LR and the seed): pooling what was swept
    would hide it (qk-layernorm off and on, each with its own best LR)."""
    from rich.table import Table

    from scalesweep import metrics as m

    columns = ["model.width", *(k for k in keys if k != "model.width")]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k, "-") for k in columns)].append(row)
    shown = [k.split(".")[-1] for k in columns]
    table = Table(title=f"{name}: best learning rate per {', '.join(shown)}")
    for column in (*shown, "best lr", m.FINAL_VAL_LOSS, "trials", *m.ENDED_STATUSES):
        table.add_column(column, justify="right")
    for group in sorted(groups, key=lambda g: [(isinstance(v, str), str(v)) for v in g]):
        members = groups[group]
        done = [
            r
            for r in members
            if r[m.STATUS] == m.COMPLETED
            and r[m.FINAL_VAL_LOSS] is not None
            and math.isfinite(r[m.FINAL_VAL_LOSS])
        ]
        best = min(done, key=lambda r: r[m.FINAL_VAL_LOSS]) if done else None
        table.add_row(
            *(str(v) for v in group),
            f"{best['optim.lr']:.3g}" if best and "optim.lr" in best else "-",
            f"{best[m.FINAL_VAL_LOSS]:.4f}" if best else "-",
            str(len(members)),
            *(str(sum(r[m.STATUS] == s for r in members)) for s in m.ENDED_STATUSES),
        )
    return table


def grouped_keys(plan: Any) -> list[str]:
    """The swept grid keys the closing table groups by: all but the LR and the seed."""
    keys: list[str] = []
    for trial in plan.trials:
        keys += [k for k in trial.cell if k not in keys and k not in ("optim.lr", "train.seed")]
    return keys


def run_sweep_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from scalesweep.experiment import load_experiment
    from scalesweep.sweep.plan import plan

    if args.resume and args.restart:
        from scalesweep.errors import UserError

        raise UserError("--resume and --restart contradict each other; pass one")
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
