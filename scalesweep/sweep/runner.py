"""Run a sweep: a Ray Tune `Tuner` whose trials each drive a Ray Train `TorchTrainer`.

    Tuner (search over cells × sampled keys)
      └─ run_trial (one per trial; a Tune function, a small CPU fraction)
           └─ TorchTrainer(train_fn_per_worker)  ← the same `scalesweep.train.train` as
                                                    `scalesweep train`, on every rank

Reports to Tune happen at evaluation points only (each `ray.train.report` waits for the Train
controller's poll). Per-step metrics go from rank 0 straight to MLflow in batches. A worker that
dies is restarted by Train's `FailureConfig` and resumes from its last checkpoint; a killed
driver is resumed with `scalesweep sweep FILE --resume`, which reuses the parent run and every
child run, and never trains a finished trial again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalesweep import tracking
from scalesweep.config import ResourcesConfig
from scalesweep.errors import UserError
from scalesweep.experiment import Experiment, parse_experiment
from scalesweep.sweep.plan import Plan, trial_name
from scalesweep.sweep.search import CELL_KEY

STATE_FILE = "scalesweep_state.json"
DRIVER_CPUS = 0.01  # Tune refuses 0; the trial driver only waits on its TorchTrainer


@dataclass(frozen=True)
class SweepSettings:
    """What every trial needs from the driver; plain data, shipped to Ray workers."""

    raw: dict[str, Any]
    sweep: str
    tracking_uri: str
    parent_run_id: str
    storage: str
    """Absolute `<storage_path>/<sweep name>`: Tune's experiment dir, Train runs under train/."""
    metric: str
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_failures: int
    report_interval_s: float
    log_every_s: float


def assignment_of(tune_config: dict[str, Any]) -> dict[str, Any]:
    """A trial's dotted assignment: its grid cell plus the sampled keys."""
    return {
        **tune_config.get(CELL_KEY, {}),
        **{k: v for k, v in tune_config.items() if k != CELL_KEY},
    }


def objective(summary: dict[str, Any]) -> float:
    """The finite value the searcher is told: final_val_loss, or ℓ0 for a diverged run."""
    if summary["status"] == "completed" and summary.get("final_val_loss") is not None:
        return float(summary["final_val_loss"])
    return float(summary["init_loss"])


class RayReporter:
    """train.Callback that reports evaluations (and checkpoints) to Ray Train, hence Tune."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_report(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        import ray.train

        payload = {self.metric: metrics["val/loss"], "step": step, "status": "running"}
        ray.train.report(
            payload,
            checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None,
        )


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: the plain training function, plus Ray reporting and MLflow on rank 0."""
    import ray.train
    import ray.train.torch
    from mlflow.tracking import MlflowClient

    from scalesweep.train import train

    settings = SweepSettings(**loop_config["settings"])
    config = parse_experiment(settings.raw).resolve(loop_config["assignment"])
    rank = ray.train.get_context().get_world_rank()
    callbacks: list[Any] = [RayReporter(settings.metric)]
    batcher = None
    if rank == 0:
        batcher = tracking.MetricBatcher(
            MlflowClient(settings.tracking_uri),
            loop_config["run_id"],
            every_s=settings.log_every_s,
            spool=Path(settings.storage) / "spool" / f"{loop_config['trial']}.jsonl",
        )
        callbacks.append(batcher)
    checkpoint = ray.train.get_checkpoint()
    with tempfile.TemporaryDirectory() as scratch:
        if checkpoint is not None:
            with checkpoint.as_directory() as resume_dir:
                summary = train(
                    config,
                    checkpoint_dir=Path(scratch),
                    resume_from=Path(resume_dir),
                    callbacks=callbacks,
                    device=ray.train.torch.get_device(),
                )
        else:
            summary = train(
                config,
                checkpoint_dir=Path(scratch),
                callbacks=callbacks,
                device=ray.train.torch.get_device(),
            )
    result = summary.to_dict()
    if batcher is not None:
        tags: dict[str, str] = {tracking.STATUS_TAG: summary.status}
        if summary.reason:
            tags["scalesweep.reason"] = summary.reason
        batcher.close(summary=tracking.summary_metrics(result), tags=tags)
    final = {k: v for k, v in result.items() if v is not None}
    ray.train.report({**final, settings.metric: objective(result)})


def run_trial(tune_config: dict[str, Any], settings: SweepSettings) -> None:
    """One trial (a Tune function): find or create its MLflow child run, then train it with a
    TorchTrainer unless the child run says it already finished."""
    import ray.train
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from scalesweep.config import run_params

    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(settings.report_interval_s)
    assignment = assignment_of(tune_config)
    name = trial_name(assignment)
    config = parse_experiment(settings.raw).resolve(assignment)
    client = MlflowClient(settings.tracking_uri)
    run_id, existing = tracking.get_or_create_child_run(
        client, settings.sweep, settings.parent_run_id, name, run_params(config)
    )
    if existing is not None and existing.data.tags.get(tracking.STATUS_TAG) in (
        "completed",
        "diverged",
    ):
        # Finished before the driver was killed: report what MLflow holds, do not train again.
        done = {**existing.data.metrics, "status": existing.data.tags[tracking.STATUS_TAG]}
        tune.report({**done, settings.metric: objective(done)})
        return
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config={
            "settings": settings.__dict__,
            "assignment": assignment,
            "trial": name,
            "run_id": run_id,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=settings.workers,
            use_gpu=settings.gpus_per_worker > 0,
            resources_per_worker={"CPU": settings.cpus_per_worker, "GPU": settings.gpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=name,  # the same name on resume: Train picks up the run's latest checkpoint
            storage_path=str(Path(settings.storage) / "train"),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            failure_config=ray.train.FailureConfig(max_failures=settings.max_failures),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as error:
        client.set_tag(run_id, tracking.STATUS_TAG, "failed")
        client.set_tag(run_id, "scalesweep.error", str(error)[:5000])
        client.set_terminated(run_id, "FAILED")
        raise
    status = (result.metrics or {}).get("status", "completed")
    client.set_terminated(run_id, "FINISHED" if status in ("completed", "diverged") else "FAILED")


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


def _storage_root(experiment: Experiment) -> Path:
    root = experiment.config.storage_path or "runs"
    if "://" in root:
        raise UserError(
            f"storage_path: got {root!r}; give a filesystem path (mount shared storage, e.g. "
            "NFS or a FUSE-mounted bucket, at the same path on every node)"
        )
    return Path(root).resolve()


def _read_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def _environment_tags() -> dict[str, str]:
    import importlib.metadata
    import subprocess

    tags = {}
    for package in ("scalesweep", "torch", "ray", "optuna", "mlflow"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            tags[f"version.{package}"] = importlib.metadata.version(package)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        tags["git.sha"] = sha
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


def default_concurrency(cluster: dict[str, float], resources: ResourcesConfig) -> int:
    """As many trials as the cluster's CPUs (and GPUs) hold at once. Without a cap, Tune would
    start every trial's driver at once (each needs only a CPU fraction) and pile up idle
    TorchTrainers waiting for workers."""
    per_trial_cpus = resources.workers_per_trial * resources.cpus_per_worker
    fits = int(cluster.get("CPU", 1) // per_trial_cpus)
    if resources.gpus_per_worker > 0:
        per_trial_gpus = resources.workers_per_trial * resources.gpus_per_worker
        fits = min(fits, int(cluster.get("GPU", 0) // per_trial_gpus))
    return max(1, fits)


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    tracking_uri: str
    rows: list[dict[str, Any]]
    """One per trial: name, width, LR, assignment, status, final_val_loss, init_loss."""


def run_sweep(
    experiment: Experiment,
    plan: Plan,
    *,
    resume: bool = False,
    restart: bool = False,
    address: str | None = None,
) -> SweepOutcome:
    """Run (or resume) the sweep on Ray and return one row per trial."""
    import ray
    import yaml
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from scalesweep.sweep.search import build_search

    config = experiment.config
    tracking_uri = tracking.resolve_tracking_uri(config.tracking.uri)
    tracking.check_reachable(tracking_uri)
    storage = _storage_root(experiment) / config.name
    state_path = storage / STATE_FILE
    state = _read_state(state_path)
    if resume and not state:
        raise UserError(f"--resume: no sweep named {config.name!r} to resume under {storage}")
    if state and not resume:
        if not state.get("finished") and not restart:
            raise UserError(
                f"sweep {config.name!r} at {storage} did not finish: pass --resume to finish it, "
                "or --restart to start it over (its MLflow runs are kept)"
            )
        shutil.rmtree(storage)  # a finished (or abandoned) sweep: start a fresh one
        state = {}

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    client = MlflowClient(tracking_uri)
    if state:
        parent_run_id = state["parent_run_id"]
        client.update_run(parent_run_id, status="RUNNING")
    else:
        resources = {
            k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")
        }
        parent_run_id = tracking.start_parent_run(
            client,
            config.name,
            params={
                "search.algorithm": config.search.algorithm,
                "search.num_samples": config.search.num_samples,
                "n_trials": plan.n_trials,
                "total_flops": f"{plan.total_flops:.4g}",
            },
            tags={**_environment_tags(), "ray.cluster_resources": json.dumps(resources)},
            artifacts={"sweep.yaml": yaml.safe_dump(experiment.raw, sort_keys=False)},
        )
        _write_state(
            state_path,
            {"parent_run_id": parent_run_id, "tracking_uri": tracking_uri, "finished": False},
        )

    settings = SweepSettings(
        raw=experiment.raw,
        sweep=config.name,
        tracking_uri=tracking_uri,
        parent_run_id=parent_run_id,
        storage=str(storage),
        metric=config.search.metric,
        workers=config.resources.workers_per_trial,
        cpus_per_worker=config.resources.cpus_per_worker,
        gpus_per_worker=config.resources.gpus_per_worker,
        max_failures=config.resources.max_failures,
        report_interval_s=config.resources.report_interval_s,
        log_every_s=config.tracking.log_every_s,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, settings=settings), {"CPU": DRIVER_CPUS}
    )
    max_concurrent = config.resources.max_concurrent_trials or default_concurrency(
        ray.cluster_resources(), config.resources
    )
    tune_dir = storage / "tune"
    if resume and tune.Tuner.can_restore(str(tune_dir)):
        tuner = tune.Tuner.restore(
            str(tune_dir), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        param_space, search_alg, num_samples = build_search(
            experiment, plan.cells, plan.samples_per_cell, max_concurrent=max_concurrent
        )
        scheduler = None
        if config.search.scheduler == "asha":
            scheduler = tune.schedulers.ASHAScheduler(grace_period=1, reduction_factor=3)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=config.search.metric,
                mode=config.search.mode,
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=num_samples,
                max_concurrent_trials=None
                if isinstance(search_alg, BasicVariantGenerator)
                else max_concurrent,
                trial_name_creator=lambda t: trial_name(assignment_of(t.config)),
                trial_dirname_creator=lambda t: trial_name(assignment_of(t.config)),
                # The trial driver only waits on its TorchTrainer: keeping its process for the
                # next trial saves a process start and the imports (~3 s a trial on 2 CPUs).
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=1,
            ),
        )
    grid = tuner.fit()

    for spool in sorted((storage / "spool").glob("*.jsonl")):
        tracking.replay_spool(client, spool)
    rows = []
    for result in (grid[i] for i in range(len(grid))):
        assignment = assignment_of(result.config or {})
        metrics = result.metrics or {}
        status = "failed" if result.error is not None else metrics.get("status", "failed")
        resolved = experiment.resolve(assignment)
        rows.append(
            {
                "trial": trial_name(assignment),
                # the summary's columns, also when the file pins them instead of sweeping them
                "model.width": resolved.model.width,
                "optim.lr": resolved.optim.lr,
                **assignment,
                "status": status,
                "init_loss": metrics.get("init_loss"),
                "final_val_loss": metrics.get("final_val_loss") if status == "completed" else None,
            }
        )
    unfinished = [r for r in rows if r["status"] not in ("completed", "diverged", "failed")]
    finished = not unfinished and len(rows) == plan.n_trials
    client.set_terminated(parent_run_id, "FINISHED" if finished else "KILLED")
    _write_state(
        state_path,
        {"parent_run_id": parent_run_id, "tracking_uri": tracking_uri, "finished": finished},
    )
    return SweepOutcome(parent_run_id=parent_run_id, tracking_uri=tracking_uri, rows=rows)
