"""The MLflow contract of a sweep, written and read here only.

Layout: experiment = sweep name; one parent run per sweep invocation (`scalesweep.role=sweep`)
holding the sweep file and the fit outputs; one child run per trial (`scalesweep.role=trial`,
`mlflow.parentRunId`, `scalesweep.trial_id`) with the trial's params under dotted names, the
per-step metrics of `scalesweep.metrics`, the summary metrics and a `status` tag.

Writers: the sweep driver (parent run), the trial (its child run, its status; per-step metrics
go through `scalesweep.metric_log`, which never blocks training), `scalesweep fit` (outputs
logged back to the parent). Reader: `runs_table`, the one-row-per-trial DataFrame the fitter
consumes, and `curves`, the per-step histories.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from scalesweep import metrics as m
from scalesweep.errors import UserError

ROLE_TAG = "scalesweep.role"
TRIAL_TAG = "scalesweep.trial_id"
SWEEP_TAG = "scalesweep.sweep"
PARENT_TAG = "mlflow.parentRunId"
STATUS_TAG = m.STATUS
REASON_TAG = "scalesweep.reason"
ERROR_TAG = "scalesweep.error"
RETRIES_TAG = "scalesweep.tracking_retries"
SPOOLED_TAG = "scalesweep.spooled"
SWEEP_ROLE, TRIAL_ROLE = "sweep", "trial"
MAX_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
MAX_PARAMS = 100  # ... and at most 100 params
CELL_TAG = "scalesweep.cell"
"""The trial's grid cell as JSON (exact values, for resume)."""
BRANCH_TAG = "scalesweep.branch_of"
"""On a cooldown branch's run: its trunk's trial id (a branch is not a Tune trial)."""
SAMPLED_TAG = "scalesweep.sampled"
"""The searcher's sampled values as JSON (exact values, for resume)."""
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


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


def check_local_store(uri: str) -> None:
    """A SQLite store's folder must exist (checked without opening anything)."""
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise UserError(f"tracking.uri: {uri}: the folder {folder} does not exist")


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
    check_local_store(uri)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as error:
        raise UserError(f"tracking.uri: cannot open the MLflow store at {uri} ({error})") from None


def with_retries(call: Callable[[], T], *, what: str, timeout_s: float) -> T:
    """`call()`, retried with backoff while the tracking server is unreachable, for at most
    `timeout_s`; then the last error is raised. For the few calls a sweep cannot go on
    without (creating and finding runs, marking them finished)."""
    deadline = time.monotonic() + timeout_s
    wait = 1.0
    while True:
        try:
            return call()
        except Exception as error:
            if time.monotonic() + wait > deadline:
                raise
            print(f"tracking: {what} failed ({str(error)[:200]}); retrying in {wait:.0f} s")
            time.sleep(wait)
            wait = min(wait * 2, 30.0)


def client(tracking_uri: str | None, experiment: str | None = None) -> MlflowClient:
    """A client for reading a store that must exist: opening a missing SQLite file would
    create an empty one (and then report "no such experiment")."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            what = f"no experiment {experiment!r}: there is " if experiment else ""
            raise UserError(
                f"{what}no MLflow store at {path}, nothing has been tracked there (pass "
                "--tracking-uri, or run from the folder the sweep ran in)"
            )
    return MlflowClient(uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment named `name`, created if absent (also by a concurrent trial)."""
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


# --------------------------------------------------------------------------------------------
# Writing: parent and child runs
# --------------------------------------------------------------------------------------------


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    items = [Param(k, "None" if v is None else str(v)) for k, v in params.items()]
    for start in range(0, len(items), MAX_PARAMS):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS])


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
        tags={ROLE_TAG: SWEEP_ROLE, SWEEP_TAG: experiment, **tags},
    )
    run_id = run.info.run_id
    log_params(client, run_id, params)
    for name, text in artifacts.items():
        client.log_text(run_id, text, name)
    return str(run_id)


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
    client: MlflowClient,
    experiment: str,
    parent_id: str,
    trial: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
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
            ROLE_TAG: TRIAL_ROLE,
            TRIAL_TAG: trial,
            SWEEP_TAG: experiment,
            STATUS_TAG: m.RUNNING,
            **(tags or {}),
        },
    )
    log_params(client, run.info.run_id, params)
    return str(run.info.run_id), None


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numeric per-trial summary; absent or None fields (final_val_loss of a diverged run)
    are left out."""
    return {k: float(summary[k]) for k in m.SUMMARY_METRICS if summary.get(k) is not None}


# --------------------------------------------------------------------------------------------
# Reading: the runs table and the curves
# --------------------------------------------------------------------------------------------


def open_experiment(client: MlflowClient, experiment: str) -> Any:
    """The experiment, or a `UserError` that lists the ones there. Never creates anything."""
    try:
        found = client.get_experiment_by_name(experiment)
    except Exception as error:
        raise UserError(
            f"cannot open the MLflow store at {client.tracking_uri} ({error})"
        ) from None
    if found is None:
        names = [e.name for e in client.search_experiments(max_results=50)]
        raise UserError(
            f"no MLflow experiment named {experiment!r} at {client.tracking_uri} "
            f"(SOURCE is read as an experiment unless it ends in .csv or .parquet); "
            f"experiments there: {names}"
        )
    return found


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def child_runs(client: MlflowClient, experiment: str, parent_id: str) -> list[Any]:
    """Every trial run of one sweep invocation (the children of `parent_id`)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    query = f"tags.`{ROLE_TAG}` = '{TRIAL_ROLE}' and tags.`{PARENT_TAG}` = '{parent_id}'"
    return _search_all(client, found.experiment_id, query)


def _param_column(values: pd.Series) -> pd.Series:
    """MLflow stores params as strings: "None" -> missing, "True"/"False" -> bool, numbers
    back to numbers when the whole column converts."""
    cleaned = values.where(values != "None", None)
    present = cleaned.dropna()
    if len(present) and present.isin(["True", "False"]).all():
        return cleaned.map({"True": True, "False": False, None: None})
    try:
        return pd.to_numeric(cleaned)
    except (ValueError, TypeError):
        return cleaned


def runs_table(
    experiment: str, tracking_uri: str | None, *, parent_run_id: str | None = None
) -> pd.DataFrame:
    """One row per trial child run of `experiment`: `sweep, trial_id, run_id, parent_run_id,
    status`, the summary metrics, then every param under its dotted name. By default the
    children of every parent (sweep invocation) of the experiment; `parent_run_id` restricts
    to one."""
    mlflow = client(tracking_uri, experiment)
    found = open_experiment(mlflow, experiment)
    query = f"tags.`{ROLE_TAG}` = '{TRIAL_ROLE}'"
    if parent_run_id is not None:
        query += f" and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    rows: list[dict[str, Any]] = []
    params: list[dict[str, str]] = []
    for run in _search_all(mlflow, found.experiment_id, query):
        tags = run.data.tags
        rows.append(
            {
                "sweep": experiment,
                "trial_id": tags.get(TRIAL_TAG, run.info.run_name),
                "run_id": run.info.run_id,
                "parent_run_id": tags.get(PARENT_TAG),
                m.STATUS: tags.get(STATUS_TAG, m.RUNNING),
                **{k: float(v) for k, v in run.data.metrics.items() if k in m.SUMMARY_METRICS},
            }
        )
        params.append(dict(run.data.params))
    base = pd.DataFrame(rows)
    if base.empty:
        return pd.DataFrame(columns=["sweep", "trial_id", "run_id", m.STATUS])
    raw = pd.DataFrame(params, index=base.index)
    converted = pd.DataFrame({c: _param_column(raw[c]) for c in sorted(raw.columns)})
    table = pd.concat([base, converted], axis=1)
    return table.sort_values("trial_id", kind="stable").reset_index(drop=True)


def latest_parent_run_id(experiment: str, tracking_uri: str | None) -> str:
    """The most recently started sweep (parent) run of `experiment`, where fit outputs go."""
    mlflow = client(tracking_uri, experiment)
    found = open_experiment(mlflow, experiment)
    runs = mlflow.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise UserError(f"experiment {experiment!r} has no sweep (parent) run to log the fit to")
    return str(runs[0].info.run_id)


def curves(
    experiment: str,
    tracking_uri: str | None,
    *,
    keys: Iterable[str] = (m.VAL_LOSS, m.FLOPS),
    parent_run_id: str | None = None,
    statuses: Iterable[str] = (m.COMPLETED,),
    table: pd.DataFrame | None = None,
    cache: dict[tuple[str, str], dict[int, float]] | None = None,
) -> pd.DataFrame:
    """Per-step histories of the trials whose status is in `statuses`: `run_id, trial_id,
    status, step` and one column per metric in `keys`; a step is kept when every key was logged
    at it. `table`: the `runs_table` the caller has already read; a `cache` shared between
    calls fetches each (run, key) history once."""
    keys, statuses = tuple(keys), tuple(statuses)
    mlflow = client(tracking_uri, experiment)
    if table is None:
        table = runs_table(experiment, tracking_uri, parent_run_id=parent_run_id)
    cache = {} if cache is None else cache
    parts: list[pd.DataFrame] = []
    for row in table.itertuples(index=False):
        status = getattr(row, m.STATUS, None)
        if status not in statuses:
            continue
        for key in keys:
            if (row.run_id, key) not in cache:
                found = mlflow.get_metric_history(row.run_id, key)
                cache[row.run_id, key] = {x.step: x.value for x in found}
        histories = [cache[row.run_id, key] for key in keys]
        steps = sorted(set.intersection(*(set(h) for h in histories)))
        if steps:
            frame = pd.DataFrame(
                {"run_id": row.run_id, "trial_id": row.trial_id, m.STATUS: status, "step": steps}
            )
            for key, history in zip(keys, histories, strict=True):
                frame[key] = [history[s] for s in steps]
            parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=["run_id", "trial_id", m.STATUS, "step", *keys])
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Writing: fit outputs back to the sweep's parent run
# --------------------------------------------------------------------------------------------


def log_fit_outputs(
    experiment: str,
    tracking_uri: str | None,
    *,
    parent_run_id: str | None,
    files: Iterable[Path],
    headline: Mapping[str, float],
    artifact_path: str = "fit",
) -> str:
    """Log fit files (fit.json, the report, plots) and headline numbers to the sweep's parent
    run (the latest one unless `parent_run_id`); returns that run's id."""
    mlflow = client(tracking_uri, experiment)
    parent = parent_run_id or latest_parent_run_id(experiment, tracking_uri)
    for file in files:
        mlflow.log_artifact(parent, str(file), artifact_path=artifact_path)
    now = int(time.time() * 1000)
    if headline:
        mlflow.log_batch(parent, metrics=[Metric(k, v, now, 0) for k, v in headline.items()])
    return parent
