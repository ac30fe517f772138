"""MLflow layout of a sweep: experiment = sweep name, one parent run per sweep, one child run
per trial, and per-step metrics sent in batches from rank 0.

The layout (tags, param and metric names) is what `scalesweep.fit.runs` reads back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from scalesweep.errors import UserError

ROLE_TAG = "scalesweep.role"
TRIAL_TAG = "scalesweep.trial_id"
SWEEP_TAG = "scalesweep.sweep"
STATUS_TAG = "status"
PARENT_TAG = "mlflow.parentRunId"
SUMMARY_METRICS = ("init_loss", "final_val_loss", "params", "params_nonembed", "tokens", "flops")
MAX_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call


def resolve_tracking_uri(configured: str | None) -> str:
    """`tracking.uri`, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db, made absolute
    here on the driver: Ray runs trials in other working directories."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    if "://" not in uri:  # a plain directory: MLflow's file store
        return Path(uri).resolve().as_uri()
    return uri


def is_local_uri(uri: str) -> bool:
    """A store that only the local machine can reach (SQLite file or plain directory)."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # created meanwhile by a concurrent trial
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def check_reachable(uri: str) -> None:
    """Fail before any compute if the tracking store cannot be opened. An HTTP server gets one
    short health check (MLflow's client would retry with backoff for minutes)."""
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=10).raise_for_status()
        except requests.RequestException as error:
            raise UserError(f"tracking.uri: no MLflow server answers at {uri} ({error})") from None
        return
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise UserError(f"tracking.uri: {uri}: the folder {folder} does not exist")
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as error:
        raise UserError(f"tracking.uri: cannot open the MLflow store at {uri} ({error})") from None


def start_parent_run(
    client: MlflowClient,
    experiment: str,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    artifacts: Mapping[str, str],
) -> str:
    """The sweep's parent run: sweep params, environment tags, the resolved YAML as an artifact."""
    run = client.create_run(
        experiment_id(client, experiment),
        run_name=experiment,
        tags={ROLE_TAG: "sweep", SWEEP_TAG: experiment, **tags},
    )
    run_id = run.info.run_id
    log_params(client, run_id, params)
    for name, text in artifacts.items():
        client.log_text(run_id, text, name)
    return str(run_id)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    items = [Param(k, "None" if v is None else str(v)) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def find_child_run(client: MlflowClient, experiment: str, parent_id: str, trial: str) -> Any:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TRIAL_TAG}` = '{trial}'",
        max_results=2,
    )
    return runs[0] if runs else None


def get_or_create_child_run(
    client: MlflowClient, experiment: str, parent_id: str, trial: str, params: Mapping[str, Any]
) -> tuple[str, Any]:
    """The trial's child run, reused when it exists (a resumed or retried trial), so a trial
    never has two runs. Returns (run_id, existing run or None)."""
    existing = find_child_run(client, experiment, parent_id, trial)
    if existing is not None:
        return str(existing.info.run_id), existing
    run = client.create_run(
        experiment_id(client, experiment),
        run_name=trial,
        tags={
            PARENT_TAG: parent_id,
            ROLE_TAG: "trial",
            TRIAL_TAG: trial,
            SWEEP_TAG: experiment,
            STATUS_TAG: "running",
        },
    )
    log_params(client, run.info.run_id, params)
    return str(run.info.run_id), None


class MetricBatcher:
    """Per-step metrics from rank 0 to MLflow, one `log_batch` at most every `every_s` seconds.

    A tracking server that is down must not kill the trial: failed batches stay queued and are
    retried at the next flush; what is still unsent at the end goes to a JSONL spool file that
    `replay_spool` writes later. The run's tags say so (`scalesweep.tracking_retries`,
    `scalesweep.spooled`).
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        every_s: float,
        spool: Path,
        close_retries: int = 4,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.every_s = every_s
        self.spool = spool
        self.close_retries = close_retries
        self.pending: list[Metric] = []
        self.last_flush = time.monotonic()
        self.failures = 0

    # train.Callback
    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if time.monotonic() - self.last_flush >= self.every_s:
            self.flush()

    def on_report(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        pass

    def flush(self) -> bool:
        self.last_flush = time.monotonic()
        while self.pending:
            batch = self.pending[:MAX_BATCH]
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception:
                self.failures += 1
                return False
            del self.pending[: len(batch)]
        return True

    def close(self, *, summary: Mapping[str, float], tags: Mapping[str, str]) -> None:
        """Log the summary metrics and tags, retrying a few times, else spool everything."""
        now = int(time.time() * 1000)
        self.pending.extend(Metric(k, float(v), now, 0) for k, v in summary.items())
        final_tags = dict(tags)
        if self.failures:
            final_tags["scalesweep.tracking_retries"] = str(self.failures)
        for attempt in range(self.close_retries):
            if self.flush():
                try:
                    self.client.log_batch(
                        self.run_id, tags=[RunTag(k, v) for k, v in final_tags.items()]
                    )
                    return
                except Exception:
                    self.failures += 1
            if attempt + 1 < self.close_retries:
                time.sleep(2**attempt)
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a") as stream:
            for m in self.pending:
                stream.write(json.dumps({"metric": [m.key, m.value, m.timestamp, m.step]}) + "\n")
            stream.write(json.dumps({"run_id": self.run_id, "tags": final_tags}) + "\n")


def replay_spool(client: MlflowClient, spool: Path) -> int:
    """Write a spool file left by `MetricBatcher.close` into MLflow, then delete it."""
    metrics: list[Metric] = []
    tags: dict[str, str] = {}
    run_id = None
    for line in spool.read_text().splitlines():
        record = json.loads(line)
        if "metric" in record:
            metrics.append(Metric(*record["metric"]))
        else:
            run_id, tags = record["run_id"], record["tags"]
    if run_id is None:
        return 0
    for start in range(0, len(metrics), MAX_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH])
    client.log_batch(
        run_id, tags=[RunTag(k, v) for k, v in {**tags, "scalesweep.spooled": "true"}.items()]
    )
    spool.unlink()
    return len(metrics)


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numeric per-trial summary; final_val_loss is left out when the run diverged."""
    keys = (*SUMMARY_METRICS, "last_finite_loss", "steps", "tokens_per_s", "wall_s")
    return {k: float(summary[k]) for k in keys if summary.get(k) is not None}
