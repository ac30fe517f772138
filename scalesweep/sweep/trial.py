"""One trial of a sweep: its MLflow child run, then `scalesweep.train` on one of two paths.

    run_trial (a Tune function trainable; Tune reuses its process between trials)
      ├─ Trial.of: the trial resolved, once; its MLflow child run opened, once (ChildRun.open)
      ├─ workers_per_trial == 1: Trainer in this process; tune.report at evaluations, with a
      │                          tune.Checkpoint when one is due (Tune's FailureConfig restarts)
      └─ workers_per_trial > 1:  TorchTrainer(train_fn_per_worker, DistributedTrial): the same
                                 Trainer on every rank (DDP), rank 0 attached to the child run
                                 (ChildRun.attach); ray.train.report (Train's FailureConfig
                                 restarts)

Only a callback differs between the paths; the training function does not know which one runs
it. Why two: a Ray Train worker group (controller, worker and helper actors, each a fresh
process importing torch) costs seconds to start, which dominates the small proxies sweeps are
made of, and a single-process trial gains nothing from it (docs/performance.md).

The config crosses into Ray once: the driver's plan resolves every cell, and a trial only sets
its sampled keys on its cell's config (`plan.trial_config`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.branches import Branch, OpenBranch, plan_branch, train_with_branches
from scalesweep.callbacks import Callback
from scalesweep.config import ExperimentConfig, run_params
from scalesweep.errors import UserError
from scalesweep.sweep.plan import planned_params, trial_config, trial_name
from scalesweep.sweep.search import CELL_KEY

if TYPE_CHECKING:
    from scalesweep.summary import TrainSummary
    from scalesweep.train import Trainer

CHECKPOINT_STEP = "step"
"""Reported with every evaluation; Tune orders results by it."""
UNREACHABLE_S = "tracking_unreachable_s"
"""Reported with every evaluation: how long the trial's tracking server has not answered (the
sweep's progress line says so while it lasts)."""


@dataclass(frozen=True)
class TrialSettings:
    """What every trial needs from the driver besides its config; shipped once per sweep."""

    tracking_uri: str
    parent_run_id: str
    storage: str
    """Absolute `<storage_path>/<sweep name>`: Tune's experiment dir; Train runs under train/."""
    cells: dict[str, dict[str, Any]]
    """Cell name -> the cell's resolved config as `model_dump()`."""
    budgets: dict[str, float] = field(default_factory=dict)
    """Cell name -> its isoFLOP budget C, for the cells of a `budget` section."""
    branches: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)
    """Cell name -> (tokens, isoFLOP budget) of each cooldown branch of its trials."""

    def checkpoints(self, trial: str) -> Path:
        """Where an in-place trial keeps its `latest` checkpoint: a path derived from its name,
        so a restarted trial (same driver or a resumed one) finds it."""
        return Path(self.storage) / "checkpoints" / trial


def assignment_of(tune_config: dict[str, Any]) -> dict[str, Any]:
    """A trial's dotted assignment: its grid cell plus the sampled keys."""
    return {
        **tune_config.get(CELL_KEY, {}),
        **{k: v for k, v in tune_config.items() if k != CELL_KEY},
    }


def objective(summary: dict[str, Any]) -> float:
    """The finite value the searcher is told: final_val_loss, or ℓ0 for a diverged run."""
    final = summary.get(m.FINAL_VAL_LOSS)
    if summary.get(m.STATUS) == m.COMPLETED and final is not None:
        return float(final)
    return float(summary[m.INIT_LOSS])


def final_report(summary: dict[str, Any], metric: str) -> dict[str, Any]:
    """What the trial's last report to Tune carries: the summary, its status and the objective."""
    return {**{k: v for k, v in summary.items() if v is not None}, metric: objective(summary)}


@dataclass(frozen=True)
class Trial:
    """A Tune trial as scalesweep sees it: its name, cell, sampled values and config."""

    name: str
    cell: dict[str, Any]
    sampled: dict[str, Any]
    config: ExperimentConfig

    budget: float | None = None
    """The isoFLOP budget C of its cell, if any."""
    branches: tuple[Branch, ...] = ()
    """Its cooldown branches, forked from it (see scalesweep/branches.py)."""

    @classmethod
    def of(cls, tune_config: dict[str, Any], settings: TrialSettings) -> Trial:
        cell = tune_config.get(CELL_KEY, {})
        sampled = {k: v for k, v in tune_config.items() if k != CELL_KEY}
        name = trial_name(cell)
        config = trial_config(ExperimentConfig.model_validate(settings.cells[name]), sampled)
        branches = tuple(
            plan_branch(config, tokens, trial_name({**cell, **sampled, m.BRANCH_TOKENS: tokens}), c)
            for tokens, c in settings.branches.get(name, [])
        )
        full_name = trial_name({**cell, **sampled})
        return cls(full_name, cell, sampled, config, settings.budgets.get(name), branches)

    def child_run(self, settings: TrialSettings, branch: Branch | None = None) -> tracking.ChildRun:
        """The MLflow child run of this trial, or of one of its branches (the trunk's params,
        the branch's length, and `branch.*` params that name the trunk), opened: found again
        or created."""
        config, name, budget, extra = self.config, self.name, self.budget, {}
        if branch is not None:
            config, name, budget = branch.config, branch.name, branch.budget
            extra = {
                m.BRANCH_OF: self.name,
                m.BRANCH_TOKENS: branch.tokens,
                m.BRANCH_FORK_STEP: branch.fork_step,
            }
        return tracking.ChildRun.open(
            uri=settings.tracking_uri,
            experiment=config.name,
            parent_run_id=settings.parent_run_id,
            storage=settings.storage,
            name=name,
            params={**run_params(config), **planned_params(config, budget), **extra},
            tags=tracking.trial_tags(
                self.cell, self.sampled, branch_of=self.name if branch is not None else None
            ),
            tracking=config.tracking,
        )

    def attach_child_run(self, settings: TrialSettings, run_id: str) -> tracking.ChildRun:
        """This trial's child run, which `child_run` opened in another process (`run_trial`,
        for a distributed trial's rank 0)."""
        return tracking.ChildRun.attach(
            uri=settings.tracking_uri,
            run_id=run_id,
            name=self.name,
            storage=settings.storage,
            tracking=self.config.tracking,
        )

    def open_branches(self, settings: TrialSettings) -> OpenBranch:
        """For `train_with_branches`: each branch's MLflow child run (on rank 0)."""

        def open_branch(branch: Branch) -> tuple[list[Callback], Callable[[TrainSummary], None]]:
            run = self.child_run(settings, branch)
            log = run.metric_log()

            def finish(summary: TrainSummary) -> None:
                run.finish(log, summary.to_dict())

            return [log], finish

        return open_branch


def progress_report(
    metric: str, step: int, metrics: dict[str, float], log: tracking.MetricLog | None
) -> dict[str, Any]:
    """What a trial tells Tune at an evaluation (both paths); `log` is rank 0's metric log."""
    report = {metric: metrics[m.VAL_LOSS], CHECKPOINT_STEP: step, m.STATUS: m.RUNNING}
    return {**report, UNREACHABLE_S: log.unreachable_s() if log is not None else 0.0}


# --- the in-process path -------------------------------------------------------------------------


class TuneReporter(Callback):
    """train.Callback: evaluations to Tune, from the trial's own process. Checkpoints stay in
    the trial's own folder (`TrialSettings.checkpoints`), where a restart finds them."""

    def __init__(self, metric: str, log: tracking.MetricLog | None = None) -> None:
        self.metric, self.log = metric, log

    def on_report(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        from ray import tune

        tune.report(progress_report(self.metric, step, metrics, self.log))


def _train(trainer: Trainer, trial: Trial, settings: TrialSettings, rank0: bool) -> dict[str, Any]:
    """The trial's run, with its cooldown branches when it has any (MLflow on rank 0)."""
    if not trial.branches:
        return trainer.run().to_dict()

    def no_run(branch: Branch) -> tuple[list[Callback], Callable[[TrainSummary], None]]:
        return [], lambda summary: None

    open_branch = trial.open_branches(settings) if rank0 else no_run
    return train_with_branches(trainer, trial.branches, open_branch).to_dict()


def _train_here(trial: Trial, run: tracking.ChildRun, settings: TrialSettings) -> dict[str, Any]:
    import torch

    from scalesweep.checkpoint import PREVIOUS
    from scalesweep.train import Trainer

    config = trial.config
    torch.set_num_threads(max(1, int(config.resources.cpus_per_worker)))
    log = run.metric_log()
    checkpoints = settings.checkpoints(trial.name)
    trainer = Trainer(
        config,
        callbacks=[TuneReporter(config.search.metric, log), log],
        checkpoint_dir=checkpoints,
    )
    # restarted (by Tune or by --resume): from the newest checkpoint that loads
    run.note_set_aside(trainer.resume_newest([checkpoints / "latest", checkpoints / PREVIOUS]))
    summary = _train(trainer, trial, settings, rank0=True)
    run.finish(log, summary)
    return summary


# --- the distributed path -------------------------------------------------------------------------


class TrainReporter(Callback):
    """train.Callback: evaluations (and checkpoints) to Ray Train, which passes them to Tune."""

    def __init__(self, metric: str, log: tracking.MetricLog | None = None) -> None:
        self.metric, self.log = metric, log

    def on_report(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        import ray.train

        saved = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        report = progress_report(self.metric, step, metrics, self.log)
        ray.train.report(report, checkpoint=saved)


@dataclass(frozen=True)
class DistributedTrial:
    """What every rank of a distributed trial gets (its `train_loop_config`), resolved once by
    `run_trial`: picklable, so no rank resolves the Tune config again."""

    trial: Trial
    settings: TrialSettings
    run_id: str
    """The trial's child run, opened by `run_trial`; rank 0 attaches to it."""


LOOP_CONFIG_KEY = "trial"
"""The key of the `DistributedTrial` in Ray Train's `train_loop_config` (a dict)."""


def train_checkpoints(latest: Path) -> list[Path]:
    """Ray Train's latest checkpoint of a trial, then its older ones (`checkpoint_<time>`
    folders beside it), newest first."""
    from scalesweep.checkpoint import SET_ASIDE

    siblings = latest.parent.glob("checkpoint_*")
    older = [p for p in siblings if p.name < latest.name and not p.name.endswith(SET_ASIDE)]
    return [latest, *sorted(older, reverse=True)]


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: the same Trainer as the in-process path, on every rank; rank 0 logs to
    MLflow (the child run `run_trial` opened, and the branches' runs) and marks the child runs
    finished."""
    import ray.train
    import ray.train.torch

    from scalesweep.train import Trainer

    work: DistributedTrial = loop_config[LOOP_CONFIG_KEY]
    trial, settings = work.trial, work.settings
    tracking.bound_mlflow_retries()
    rank0 = ray.train.get_context().get_world_rank() == 0
    run = trial.attach_child_run(settings, work.run_id) if rank0 else None
    log = run.metric_log() if run is not None else None
    callbacks: list[Callback] = [TrainReporter(trial.config.search.metric, log)]
    callbacks += [log] if log is not None else []
    with tempfile.TemporaryDirectory() as scratch:
        try:
            trainer = Trainer(
                trial.config,
                callbacks=callbacks,
                device=ray.train.torch.get_device(),
                checkpoint_dir=Path(scratch),
            )
        except UserError as error:
            # Bad input that only a worker could find (every rank finds it): retrying cannot
            # fix it, so the ranks return instead of raising into Train's FailureConfig.
            if run is not None:
                run.fail(error)
            return
        resume = ray.train.get_checkpoint()
        if resume is not None:  # Train's latest, else an older one that loads (shared storage)
            notes = trainer.resume_newest(train_checkpoints(Path(resume.path)))
            if run is not None:
                run.note_set_aside(notes)
        summary = _train(trainer, trial, settings, rank0)
    if run is not None and log is not None:
        run.finish(log, summary)
    ray.train.report(final_report(summary, trial.config.search.metric))


def _train_distributed(trial: Trial, run: tracking.ChildRun, settings: TrialSettings) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from scalesweep.sweep.capacity import CapacityWatch, remove_leftover_placement_group

    resources = trial.config.resources
    record = Path(settings.storage) / "placement_groups" / trial.name
    if note := remove_leftover_placement_group(record):  # Tune restarted this trial
        print(f"{trial.name}: {note}", flush=True)
    watch = CapacityWatch(
        uri=settings.tracking_uri,
        run_id=run.run_id,
        resources=resources,
        outage_s=trial.config.tracking.outage_timeout_s,
        record=record,
    )
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(resources.report_interval_s)
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config={LOOP_CONFIG_KEY: DistributedTrial(trial, settings, run.run_id)},
        scaling_config=ray.train.ScalingConfig(
            num_workers=resources.workers_per_trial,
            use_gpu=resources.gpus_per_worker > 0,
            resources_per_worker={
                "CPU": resources.cpus_per_worker,
                "GPU": resources.gpus_per_worker,
            },
        ),
        run_config=ray.train.RunConfig(
            name=trial.name,  # the same name on resume: Train picks up its latest checkpoint
            storage_path=str(Path(settings.storage) / "train"),
            callbacks=[TuneReportCallback(), watch],  # type: ignore[list-item]
            failure_config=ray.train.FailureConfig(max_failures=resources.max_failures),
        ),
    )
    trainer.fit()


# --- the Tune function ----------------------------------------------------------------------------


def run_trial(tune_config: dict[str, Any], settings: TrialSettings) -> None:
    """One trial: resolve it, find or create its MLflow child run, then train it on the path its
    `resources.workers_per_trial` asks for, unless the child run says it already finished."""
    from ray import tune

    tracking.bound_mlflow_retries()
    trial = Trial.of(tune_config, settings)
    config, metric = trial.config, trial.config.search.metric
    run = trial.child_run(settings)
    if run.done is not None:
        # Finished before the driver was killed: report what MLflow holds, do not train again.
        tune.report(final_report(run.done, metric))
        return
    try:
        if config.resources.workers_per_trial == 1:
            tune.report(final_report(_train_here(trial, run, settings), metric))
        else:
            _train_distributed(trial, run, settings)
    except UserError as error:
        # Bad input that only training could find: retrying cannot fix it, so the trial ends
        # here, recorded as failed (the driver reads the status from its child run).
        run.fail(error)
    except Exception as error:
        # Tune retries the trial (`resources.max_failures`) or gives up; the driver marks the
        # run failed once it has (a run marked failed here would read failed while retried).
        run.note_error(error)
        raise
