"""One trial of a sweep: its MLflow child run, then `scalesweep.train` on one of two paths.

    run_trial (a Tune function trainable; Tune reuses its process between trials)
      ├─ workers_per_trial == 1: Trainer in this process; tune.report at evaluations, with a
      │                          tune.Checkpoint when one is due (Tune's FailureConfig restarts)
      └─ workers_per_trial > 1:  TorchTrainer(train_fn_per_worker): the same Trainer on every
                                 rank (DDP); ray.train.report (Train's FailureConfig restarts)

Only a callback differs between the paths; the training function does not know which one runs
it. Why two: a Ray Train worker group (controller, worker and helper actors, each a fresh
process importing torch) costs seconds to start, which dominates the small proxies sweeps are
made of, and a single-process trial gains nothing from it (docs/performance.md).

The config crosses into Ray once: the driver's plan resolves every cell, and a trial only sets
its sampled keys on its cell's config (`plan.trial_config`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.callbacks import Callback
from scalesweep.config import ExperimentConfig, run_params
from scalesweep.errors import UserError
from scalesweep.metric_log import MetricLog, logged_through, replay_spool
from scalesweep.sweep.plan import planned_params, trial_config, trial_name
from scalesweep.sweep.search import CELL_KEY

CHECKPOINT_STEP = "step"
"""Reported with every evaluation; Tune orders results by it."""


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

    def checkpoints(self, trial: str) -> Path:
        """Where an in-place trial keeps its `latest` checkpoint: a path derived from its name,
        so a restarted trial (same driver or a resumed one) finds it."""
        return Path(self.storage) / "checkpoints" / trial


def bound_mlflow_retries() -> None:
    """Make one MLflow request give up within seconds, not minutes: outages are waited out by
    our own retries (`tracking.with_retries`, `MetricLog`), which know what they may block."""
    for key, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
    ):
        os.environ.setdefault(key, value)


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

    @classmethod
    def of(cls, tune_config: dict[str, Any], settings: TrialSettings) -> Trial:
        cell = tune_config.get(CELL_KEY, {})
        sampled = {k: v for k, v in tune_config.items() if k != CELL_KEY}
        config = ExperimentConfig.model_validate(settings.cells[trial_name(cell)])
        budget = settings.budgets.get(trial_name(cell))
        return cls(
            trial_name({**cell, **sampled}), cell, sampled, trial_config(config, sampled), budget
        )


class TrialRun:
    """The trial's MLflow child run: found or created, fed per-step metrics, marked at the end."""

    def __init__(self, settings: TrialSettings, trial: Trial) -> None:
        self.settings = settings
        self.name = trial.name
        self.config = config = trial.config
        self.client = tracking.MlflowClient(settings.tracking_uri)
        tags = {
            tracking.CELL_TAG: json.dumps(trial.cell),
            tracking.SAMPLED_TAG: json.dumps(trial.sampled),
        }
        self.spool = Path(settings.storage) / "spool" / f"{trial.name}.jsonl"
        self.run_id, existing = self._retry(
            lambda: tracking.get_or_create_child_run(
                self.client,
                config.name,
                settings.parent_run_id,
                trial.name,
                {**run_params(config), **planned_params(config, trial.budget)},
                tags,
            ),
            "opening the child run",
        )
        self.skip_through: dict[str, int] = {}
        self.done: dict[str, Any] | None = None
        if existing is not None:  # a restarted trial: what did its earlier attempts leave?
            self._retry(lambda: replay_spool(self.client, self.spool), "writing its spool")
            run = self._retry(lambda: self.client.get_run(self.run_id), "reading its run")
            if run.data.tags.get(tracking.STATUS_TAG) in m.FINISHED_STATUSES:
                self.done = {**run.data.metrics, m.STATUS: run.data.tags[tracking.STATUS_TAG]}
            self.skip_through = self._retry(
                lambda: logged_through(self.client, self.run_id), "reading its metrics"
            )

    def _retry(self, call: Any, what: str) -> Any:
        return tracking.with_retries(
            call, what=f"{self.name}: {what}", timeout_s=self.config.tracking.outage_timeout_s
        )

    def metric_log(self) -> MetricLog:
        return MetricLog(
            self.client,
            self.run_id,
            every_s=self.config.tracking.log_every_s,
            spool=self.spool,
            skip_through=self.skip_through,
        )

    def finish(self, log: MetricLog, summary: dict[str, Any]) -> None:
        """Log the summary, then the status, and mark the child run finished (rank 0, both
        paths). A server that stays down gets them later, from the spool."""
        tags = {tracking.STATUS_TAG: summary[m.STATUS]}
        if summary.get("reason"):
            tags[tracking.REASON_TAG] = summary["reason"]
        timeout = self.config.tracking.outage_timeout_s
        if log.close(summary=tracking.summary_metrics(summary), tags=tags, timeout_s=timeout):
            self._retry(lambda: self.client.set_terminated(self.run_id, "FINISHED"), "marking it")

    def fail(self, error: BaseException) -> None:
        def mark() -> None:
            self.client.set_tag(self.run_id, tracking.STATUS_TAG, m.FAILED)
            self.client.set_tag(self.run_id, tracking.ERROR_TAG, str(error)[:5000])
            self.client.set_terminated(self.run_id, "FAILED")

        self._retry(mark, "marking it failed")


# --- the in-process path -------------------------------------------------------------------------


class TuneReporter(Callback):
    """train.Callback: evaluations to Tune, from the trial's own process. Checkpoints stay in
    the trial's own folder (`TrialSettings.checkpoints`), where a restart finds them."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def on_report(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        from ray import tune

        payload = {self.metric: metrics[m.VAL_LOSS], CHECKPOINT_STEP: step, m.STATUS: m.RUNNING}
        tune.report(payload)


def _train_here(config: ExperimentConfig, run: TrialRun) -> dict[str, Any]:
    import torch

    from scalesweep.checkpoint import STATE_FILE
    from scalesweep.train import Trainer

    torch.set_num_threads(max(1, int(config.resources.cpus_per_worker)))
    log = run.metric_log()
    checkpoints = run.settings.checkpoints(run.name)
    trainer = Trainer(
        config,
        callbacks=[TuneReporter(config.search.metric), log],
        checkpoint_dir=checkpoints,
    )
    if (checkpoints / "latest" / STATE_FILE).is_file():  # restarted, by Tune or by --resume
        trainer.resume(checkpoints / "latest")
    summary = trainer.run().to_dict()
    run.finish(log, summary)
    return summary


# --- the distributed path -------------------------------------------------------------------------


class TrainReporter(Callback):
    """train.Callback: evaluations (and checkpoints) to Ray Train, which passes them to Tune."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def on_report(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        import ray.train

        saved = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        payload = {self.metric: metrics[m.VAL_LOSS], CHECKPOINT_STEP: step, m.STATUS: m.RUNNING}
        ray.train.report(payload, checkpoint=saved)


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: the same Trainer as the in-process path, on every rank; rank 0 logs to
    MLflow and marks the child run finished."""
    import ray.train
    import ray.train.torch

    from scalesweep.train import Trainer

    trial = Trial(
        **{**loop_config["trial"], "config": ExperimentConfig.model_validate(loop_config["config"])}
    )
    config = trial.config
    settings = TrialSettings(**loop_config["settings"])
    bound_mlflow_retries()
    callbacks: list[Any] = [TrainReporter(config.search.metric)]
    run, log = None, None
    if ray.train.get_context().get_world_rank() == 0:
        run = TrialRun(settings, trial)
        log = run.metric_log()
        callbacks.append(log)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            trainer = Trainer(
                config,
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
        if resume is not None:
            with resume.as_directory() as directory:
                trainer.resume(Path(directory))
        summary = trainer.run().to_dict()
    if run is not None and log is not None:
        run.finish(log, summary)
    ray.train.report(final_report(summary, config.search.metric))


def _train_distributed(trial: Trial, run: TrialRun) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    resources = trial.config.resources
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(resources.report_interval_s)
    settings = run.settings
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config={
            "config": trial.config.model_dump(mode="json"),
            "settings": {**settings.__dict__, "cells": {}},
            "trial": {
                "name": trial.name,
                "cell": trial.cell,
                "sampled": trial.sampled,
                "budget": trial.budget,
            },
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=resources.workers_per_trial,
            use_gpu=resources.gpus_per_worker > 0,
            resources_per_worker={
                "CPU": resources.cpus_per_worker,
                "GPU": resources.gpus_per_worker,
            },
        ),
        run_config=ray.train.RunConfig(
            name=run.name,  # the same name on resume: Train picks up the run's latest checkpoint
            storage_path=str(Path(settings.storage) / "train"),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            failure_config=ray.train.FailureConfig(max_failures=resources.max_failures),
        ),
    )
    trainer.fit()


# --- the Tune function ----------------------------------------------------------------------------


def run_trial(tune_config: dict[str, Any], settings: TrialSettings) -> None:
    """One trial: find or create its MLflow child run, then train it on the path its
    `resources.workers_per_trial` asks for, unless the child run says it already finished."""
    from ray import tune

    bound_mlflow_retries()
    trial = Trial.of(tune_config, settings)
    config, metric = trial.config, trial.config.search.metric
    run = TrialRun(settings, trial)
    if run.done is not None:
        # Finished before the driver was killed: report what MLflow holds, do not train again.
        tune.report(final_report(run.done, metric))
        return
    try:
        if config.resources.workers_per_trial == 1:
            tune.report(final_report(_train_here(config, run), metric))
        else:
            _train_distributed(trial, run)
    except UserError as error:
        # Bad input that only training could find: retrying cannot fix it, so the trial ends
        # here, recorded as failed (the driver reads the status from its child run).
        run.fail(error)
    except Exception as error:
        run.fail(error)
        raise
