"""The sweep driver: a Ray Tune `Tuner` over the plan's trials, the MLflow parent run, resume.

    run_sweep
      ├─ storage/<sweep>/scalesweep_state.json   parent run, tracking URI, plan digest, attempts
      ├─ MLflow parent run (created, or reopened by --resume)
      ├─ Tuner(run_trial) over the trials not finished yet (grid cells, or a sampler per cell)
      └─ one row per trial, read back from the child runs

Resume never uses Tune's experiment restore: its searcher and trial states are saved apart,
and a restore from between the two can wait forever on a trial it believes is live. Instead
MLflow says what is done: finished trials are not scheduled again, trials that were running
start again (from their own checkpoint) with their exact sampled values, and the rest is new.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.config import ExperimentConfig, ResourcesConfig
from scalesweep.errors import UserError
from scalesweep.experiment import Experiment
from scalesweep.sweep.interrupt import INTERRUPTED_HOW, Interrupt, catch_interrupt
from scalesweep.sweep.plan import Plan, PlannedTrial, trial_name
from scalesweep.sweep.preflight import trial_bundles
from scalesweep.sweep.resume import check_unchanged, plan_digests
from scalesweep.sweep.search import Done
from scalesweep.sweep.trial import TrialSettings, assignment_of, objective, run_trial

STATE_FILE = "scalesweep_state.json"


def _storage_root(config: ExperimentConfig) -> Path:
    root = config.storage_path or "runs"
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
    start every distributed trial's driver at once (each needs only a CPU fraction) and pile up
    idle TorchTrainers waiting for workers."""
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
    storage: Path
    """The sweep's storage folder (`storage_path`/name)."""
    finished: bool = True
    """Every planned trial ran to an end (completed, diverged or failed)."""
    interrupted: bool = False  # by Ctrl-C (`sweep.interrupt`): --resume goes on


@dataclass
class _Session:
    """The sweep's storage and MLflow parent run, new or reopened."""

    storage: Path
    tracking_uri: str
    parent_run_id: str
    state: dict[str, Any] = field(default_factory=dict)

    def save(self, **updates: Any) -> None:
        self.state.update(updates)
        _write_state(self.storage / STATE_FILE, self.state)

    @cached_property
    def client(self) -> tracking.Client:
        return tracking.connect(self.tracking_uri)

    def replay_spools(self, timeout_s: float) -> None:
        """Write to MLflow what trials spooled while it was down, their statuses included."""
        for spool in sorted((self.storage / "spool").glob("*.jsonl")):
            tracking.with_retries(
                lambda spool=spool: tracking.replay_spool(self.client, spool),  # type: ignore[misc]
                what=f"writing the metrics spooled in {spool.name}",
                timeout_s=timeout_s,
            )


def _check_storage(
    experiment: Experiment, plan: Plan, *, resume: bool, restart: bool, extend: bool = False
) -> tuple[Path, dict[str, Any]]:
    """The sweep's storage folder and its state file, checked against --resume/--restart and
    the plan; nothing is started or written yet. An empty state means a fresh sweep."""
    config = experiment.config
    storage = _storage_root(config) / config.name
    state = _read_state(storage / STATE_FILE)
    if resume and not state:
        raise UserError(f"--resume: no sweep named {config.name!r} to resume under {storage}")
    if resume:
        before, now = state.get("plan", {}), plan_digests(experiment, plan)
        kept = {k: v for k, v in now.items() if k in before} if extend else now
        check_unchanged(before, kept, config.name)
        state["plan"] = now  # with `extend`, an adaptive round's trials join the sweep
        return storage, state
    if state and not state.get("finished") and not restart:
        raise UserError(
            f"sweep {config.name!r} at {storage} did not finish: pass --resume to finish it, "
            "or --restart to start it over (its MLflow runs are kept)"
        )
    return storage, {}


def _open_session(
    experiment: Experiment, plan: Plan, storage: Path, state: dict[str, Any], tracking_uri: str
) -> _Session:
    """Reopen the parent run of a resumed sweep, or start a fresh sweep's (replacing the
    storage of an earlier one of the same name)."""
    import ray
    import yaml

    config = experiment.config
    if state:
        session = _Session(storage, tracking_uri, state["parent_run_id"], state)
        tracking.reopen_parent(session.client, session.parent_run_id)
        session.save(attempts=state.get("attempts", 1) + 1)
        return session
    shutil.rmtree(storage, ignore_errors=True)  # a finished (or abandoned) sweep's folder
    resources = {
        k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")
    }
    parent_run_id = tracking.start_parent_run(
        tracking.connect(tracking_uri),
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
    session = _Session(storage, tracking_uri, parent_run_id)
    session.save(
        parent_run_id=parent_run_id,
        tracking_uri=tracking_uri,
        finished=False,
        plan=plan_digests(experiment, plan),
        attempts=1,
    )
    return session


def _history(experiment: Experiment, session: _Session) -> list[Done]:
    """What earlier runs of this sweep left in MLflow: finished trials with their objective,
    unfinished ones (running or failed) to run again with their exact values."""
    session.replay_spools(experiment.config.tracking.outage_timeout_s)
    runs = tracking.trial_records(session.client, experiment.config.name, session.parent_run_id)
    return [
        Done(run.cell, run.sampled, objective(run.summary()) if run.finished else None)
        for run in runs
        # a Tune trial: a cooldown branch is its trunk's business
        if run.cell is not None and run.branch_of is None
    ]


def _trial_settings(plan: Plan, session: _Session) -> TrialSettings:
    """What every trial needs besides its config: shipped once, through Ray's object store."""
    return TrialSettings(
        tracking_uri=session.tracking_uri,
        parent_run_id=session.parent_run_id,
        storage=str(session.storage),
        cells={t.name: t.config.model_dump(mode="json") for t in plan.trials},
        budgets={t.name: t.budget for t in plan.trials if t.budget is not None},
        branches={t.name: t.budgets for t in plan.trials if t.branches},
    )


def _tuner(
    experiment: Experiment, plan: Plan, session: _Session, history: list[Done], progress: Any
) -> Any:
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from scalesweep.sweep.search import build_search

    config = experiment.config
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, settings=_trial_settings(plan, session)),
        trial_bundles(config.resources)[0],
    )
    max_concurrent = config.resources.max_concurrent_trials or default_concurrency(
        ray.cluster_resources(), config.resources
    )
    param_space, search_alg, num_samples = build_search(
        experiment,
        plan.cells,
        plan.samples_per_cell,
        max_concurrent=max_concurrent,
        history=history,
    )
    scheduler = None
    if config.search.scheduler == "asha":
        scheduler = tune.schedulers.ASHAScheduler(grace_period=1, reduction_factor=3)
    return tune.Tuner(
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
            # Keep each trial's process for the next trial: no process start, torch and the
            # data already loaded (the in-place path's ~1 s start, docs/performance.md).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{session.state['attempts']}",
            storage_path=str(session.storage),
            # Tune restarts a trial whose process died (with its node, or killed); a distributed
            # trial's workers are restarted by Ray Train, whose giving up ends the trial.
            failure_config=tune.FailureConfig(max_failures=config.resources.max_failures),
            callbacks=[progress],
            verbose=0,
        ),
    )


def _row(run: tracking.TrialRecord, planned: PlannedTrial | None) -> dict[str, Any]:
    """A trial's row of the sweep's closing table, from its child run."""
    cell = run.cell or {}
    completed = run.status == m.COMPLETED
    return {
        "trial": run.name,
        # the summary's columns, also when the file pins them instead of sweeping them
        "model.width": planned.config.model.width if planned else None,
        "optim.lr": run.sampled.get("optim.lr", planned.config.optim.lr if planned else None),
        **cell,
        **run.sampled,
        m.STATUS: run.status,
        m.INIT_LOSS: run.metrics.get(m.INIT_LOSS),
        m.FINAL_VAL_LOSS: run.metrics.get(m.FINAL_VAL_LOSS) if completed else None,
    }


def _rows(
    experiment: Experiment,
    plan: Plan,
    session: _Session,
    errored: dict[str, float],
    interrupt: Interrupt,
) -> list[dict[str, Any]]:
    """One row per trial of this sweep, from its child run; trials that Tune gave up on
    (`errored`: name -> when) count as failed, and those a Ctrl-C stopped (also those whose
    failure came after it: being stopped), interrupted."""
    runs = tracking.with_retries(
        lambda: tracking.trial_records(
            session.client, experiment.config.name, session.parent_run_id
        ),
        what="reading the trials' runs",
        timeout_s=experiment.config.tracking.outage_timeout_s,
    )
    cells = {t.name: t for t in plan.trials}
    rows = []
    for run in runs:
        failed_at = errored.get(run.name)
        if interrupt.stopped(failed_at) and tracking.mark_interrupted(
            session.client, run, INTERRUPTED_HOW
        ):
            run = replace(run, status=m.INTERRUPTED, run_status="KILLED")
        elif run.status == m.RUNNING and failed_at is not None:  # Tune gave up on it
            tracking.mark_failed(session.client, run.run_id)
            run = replace(run, status=m.FAILED, run_status="FAILED")
        else:  # ended, but its process died before marking the run
            tracking.close_orphaned_run(session.client, run)
        rows.append(_row(run, cells.get(trial_name(run.cell or {}))))
    return sorted(rows, key=lambda row: row["trial"])


def run_sweep(
    experiment: Experiment,
    plan: Plan,
    *,
    resume: bool = False,
    restart: bool = False,
    address: str | None = None,
    extend: bool = False,
) -> SweepOutcome:
    """Run (or resume) the sweep on Ray and return one row per trial; with `extend`, a resumed
    sweep takes the plan's added trials (an adaptive round, `sweep/rounds.py`)."""
    from scalesweep.sweep.capacity import restart_tagger
    from scalesweep.sweep.preflight import preflight
    from scalesweep.sweep.progress import SweepProgress

    # Checks first, cheapest first; no MLflow run exists until they pass.
    tracking_uri = tracking.resolve_tracking_uri(experiment.config.tracking.uri)
    tracking.check_local_store(tracking_uri)
    storage, state = _check_storage(experiment, plan, resume=resume, restart=restart, extend=extend)
    tracking.check_reachable(tracking_uri)  # before Ray: a down server costs no cluster start
    # Starts or joins Ray; checks the cluster can reach the store and storage, and the resources.
    preflight(experiment, tracking_uri, storage.parent, address=address)
    session = _open_session(experiment, plan, storage, state, tracking_uri)
    # Tune's own output: its new engine prints a configuration box even when silenced.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    history = _history(experiment, session) if resume else []
    already_done = sum(d.value is not None for d in history)
    config = experiment.config
    outage_s = config.tracking.outage_timeout_s
    on_restart = restart_tagger(
        session.tracking_uri, config.name, session.parent_run_id, config.resources, outage_s
    )
    progress = SweepProgress(
        plan, already_done=already_done, metric=config.search.metric, on_restart=on_restart
    )
    interrupt = Interrupt()
    if already_done < plan.n_trials:
        try:
            with catch_interrupt() as interrupt:
                _tuner(experiment, plan, session, history, progress).fit()
        finally:
            progress.close()
    session.replay_spools(experiment.config.tracking.outage_timeout_s)
    rows = _rows(experiment, plan, session, progress.errored, interrupt)
    finished = len(rows) == plan.n_runs and all(r[m.STATUS] in m.ENDED_STATUSES for r in rows)
    tracking.with_retries(
        lambda: tracking.finish_parent(session.client, session.parent_run_id, finished=finished),
        what="marking the sweep's parent run",
        timeout_s=experiment.config.tracking.outage_timeout_s,
    )
    session.save(finished=finished)
    return SweepOutcome(
        session.parent_run_id, session.tracking_uri, rows, storage, finished, interrupt.happened
    )
