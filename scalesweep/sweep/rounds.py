"""`scalesweep sweep FILE --adaptive ROUNDS --next K --target-flops C`: rounds of "propose K
runs (`sweep.design`), run them on Ray (the sweep driver), refit".

Every round is part of one sweep: the first starts it, each later one resumes it with its new
trials added (`run_sweep(extend=True)`), and its runs are tagged `scalesweep.round`. The rounds
are kept in `<storage>/<name>.adaptive.json` (beside the driver's folder, which a fresh sweep
clears): the trials each round proposed and whether they ran to the end. `--resume` first
finishes a round that was cut off, with exactly its trials, then goes on. The rounds stop early
when the interval's relative width reaches `--target-width`, when the training FLOPs spent
reach `--max-flops`, or when the ladder has no candidate left.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalesweep.errors import UserError
from scalesweep.experiment import Experiment
from scalesweep.fit.design.information import Objective
from scalesweep.sweep.design import Proposal, design_space, finished_points, propose
from scalesweep.sweep.plan import Plan, PlannedTrial, planned_trial


@dataclass(frozen=True)
class Settings:
    rounds: int
    k: int
    target_flops: float
    objective: Objective = "n_opt"
    target_width: float | None = None
    max_flops: float | None = None

    def check(self) -> None:
        for flag, value in (("--adaptive", self.rounds), ("--next", self.k)):
            if value < 1:
                raise UserError(f"{flag}: `{flag} >= 1` must hold, but got {value}")
        for flag, limit in (("--target-width", self.target_width), ("--max-flops", self.max_flops)):
            if limit is not None and not limit > 0:
                raise UserError(f"{flag}: must be > 0, but got {limit}")


@dataclass(frozen=True)
class Hooks:
    """The I/O a round does, apart so a test can replace it."""

    run: Callable[..., Any]
    """`run_sweep(experiment, plan, *, resume, restart, address, extend)`."""
    read: Callable[[Experiment], Any]
    """The sweep's runs table so far (empty before any)."""
    tag: Callable[[Experiment, Any, list[str], int], None]
    """Tag the named trials' runs with their round, given the round's sweep outcome."""
    echo: Callable[[Proposal, int], None]
    """Show a round's proposal."""


def mlflow_hooks(
    experiment: Experiment, run: Callable[..., Any], echo: Callable[[Proposal, int], None]
) -> Hooks:
    """The rounds' I/O on the real sweep: `run` (the driver), the runs read from MLflow, the
    round tags written there."""
    from scalesweep import tracking
    from scalesweep.sweep.design import read_runs

    def tag(experiment: Experiment, outcome: Any, trials: list[str], number: int) -> None:
        client = tracking.connect(outcome.tracking_uri)
        tracking.tag_round(client, experiment.config.name, outcome.parent_run_id, trials, number)

    return Hooks(run, read_runs, tag, echo)


def state_path(experiment: Experiment) -> Path:
    config = experiment.config
    return Path(config.storage_path or "runs").resolve() / f"{config.name}.adaptive.json"


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    os.replace(tmp, path)


def _trials(experiment: Experiment, state: dict[str, Any]) -> list[PlannedTrial]:
    """Every round's trials, rebuilt from their cells (the same names and digests)."""
    space = design_space(experiment, state["target_flops"])
    notes: list[str] = []
    return [
        planned_trial(experiment, t["cell"], t["budget"], space.vocab, notes)
        for r in state["rounds"]
        for t in r["trials"]
    ]


def _plan(experiment: Experiment, trials: list[PlannedTrial]) -> Plan:
    sampled = list(experiment.sampled_spaces())
    samples = experiment.config.search.num_samples if sampled else 1
    return Plan(trials=trials, sampled_keys=sampled, samples_per_cell=samples)


def _run_round(
    experiment: Experiment,
    state: dict[str, Any],
    path: Path,
    hooks: Hooks,
    *,
    resume: bool,
    restart: bool,
    address: str | None,
) -> Any:
    """Run the sweep with every round's trials; tag the last round's; mark it ran."""
    trials = _trials(experiment, state)
    last = state["rounds"][-1]
    plan = _plan(experiment, trials)
    outcome = hooks.run(
        experiment, plan, resume=resume, restart=restart, address=address, extend=True
    )
    names = [t.name for t in trials[len(trials) - len(last["trials"]) :]]
    hooks.tag(experiment, outcome, names, last["round"])
    last["ran"] = True
    _save(path, state)
    return outcome


def _stop(proposal: Proposal, settings: Settings, spent: float) -> str | None:
    now, target = proposal.recommendation.now, settings.target_width
    if now is not None and target is not None and now.width <= target:
        return f"the interval's width {now.width:.1%} reached --target-width {target:.1%}"
    if settings.max_flops is not None and spent >= settings.max_flops:
        return f"{spent:.4g} training FLOPs spent, --max-flops is {settings.max_flops:.4g}"
    return None


def _next(experiment: Experiment, settings: Settings, table: Any, first: bool) -> Proposal | None:
    """The round's proposal: K runs, fewer when the ladder has fewer left (None: no run left).
    A first round asking for more than the whole ladder is refused."""
    space = design_space(experiment, settings.target_flops)
    left = len(space.pool(finished_points(space, table)[1]))
    if left == 0 or (first and settings.k > left):
        if first:
            raise UserError(f"--next: got K={settings.k}, but the ladder has {left} candidate runs")
        return None
    return propose(
        experiment,
        table,
        k=min(settings.k, left),
        target_flops=settings.target_flops,
        objective=settings.objective,
    )


def run_rounds(
    experiment: Experiment,
    settings: Settings,
    hooks: Hooks,
    *,
    resume: bool = False,
    restart: bool = False,
    address: str | None = None,
) -> tuple[Any, list[str]]:
    """Run the adaptive rounds; returns the last sweep outcome (None if none ran) and what
    was said along the way (why the rounds stopped among it)."""
    settings.check()
    design_space(experiment, settings.target_flops)  # the file's refusals, before any compute
    path = state_path(experiment)
    lines: list[str] = []
    outcome = None
    state: dict[str, Any] = {"target_flops": settings.target_flops, "rounds": []}
    if resume:
        if not path.is_file():
            raise UserError(f"--resume: no adaptive rounds of {experiment.config.name!r} at {path}")
        state = json.loads(path.read_text())
        if state["rounds"] and not state["rounds"][-1].get("ran"):
            lines.append(f"finished round {state['rounds'][-1]['round']}, cut off before")
            outcome = _run_round(
                experiment, state, path, hooks, resume=True, restart=False, address=address
            )
    while len(state["rounds"]) < settings.rounds:
        spent = sum(t["flops"] for r in state["rounds"] for t in r["trials"])
        proposal = _next(experiment, settings, hooks.read(experiment), not state["rounds"])
        if proposal is None:
            lines.append("stopped: every (shape, budget) pair of the ladder has run")
            break
        reason = _stop(proposal, settings, spent)
        if reason is not None:
            lines.append(f"stopped before round {len(state['rounds']) + 1}: {reason}")
            break
        number = len(state["rounds"]) + 1
        hooks.echo(proposal, number)
        trials = _within(proposal.trials, settings.max_flops, spent)
        state["rounds"].append({"round": number, "trials": [_entry(t) for t in trials]})
        _save(path, state)
        outcome = _run_round(
            experiment,
            state,
            path,
            hooks,
            resume=number > 1 or resume,
            restart=restart and number == 1,
            address=address,
        )
    return outcome, lines


def _entry(trial: PlannedTrial) -> dict[str, Any]:
    return {"name": trial.name, "cell": trial.cell, "budget": trial.budget, "flops": trial.flops}


def _within(
    trials: list[PlannedTrial], max_flops: float | None, spent: float
) -> list[PlannedTrial]:
    """The proposals, best first, while they fit under --max-flops (at least the first)."""
    if max_flops is None:
        return trials
    kept = trials[:1]
    total = spent + trials[0].flops
    for trial in trials[1:]:
        if total + trial.flops > max_flops:
            break
        kept.append(trial)
        total += trial.flops
    return kept
