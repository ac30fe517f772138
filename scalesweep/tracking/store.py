"""The tracking store: its URI, the checks made before any compute, its clients, and the names
the contract writes (roles and tags).

Nothing else in this package opens a store: writers connect with `connect` (a SQLite file is
created on first write), readers with `connect_existing` (a missing SQLite file is refused
instead of created empty).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from scalesweep import metrics as m
from scalesweep.errors import UserError

Client = MlflowClient
"""A client of one store, as the named operations of this package take it."""

ROLE_TAG = "scalesweep.role"
TRIAL_TAG = "scalesweep.trial_id"
SWEEP_TAG = "scalesweep.sweep"
PARENT_TAG = "mlflow.parentRunId"
STATUS_TAG = m.STATUS
REASON_TAG = "scalesweep.reason"
ERROR_TAG = "scalesweep.error"
RETRIES_TAG = "scalesweep.tracking_retries"
SPOOLED_TAG = "scalesweep.spooled"
OUTAGE_TAG = "scalesweep.tracking_outage_s"
"""Seconds a trial's tracking server did not answer (with RETRIES_TAG, its failed sends)."""
SET_ASIDE_TAG = "scalesweep.checkpoint_set_aside"
WAITING_TAG = "scalesweep.waiting_for_capacity"
"""Present while a trial waits to be restarted (its process or a worker was lost): why."""
WAITING_SINCE_TAG = "scalesweep.waiting_since"
"""Unix time the wait of WAITING_TAG began."""
WAITS_TAG = "scalesweep.capacity_waits"
"""Each ended wait of a trial to be restarted, a line each."""
"""Checkpoints a restarted trial found unreadable and set aside, one line each."""
SWEEP_ROLE, TRIAL_ROLE = "sweep", "trial"
MAX_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
MAX_PARAMS = 100  # ... and at most 100 params
CELL_TAG = "scalesweep.cell"
"""The trial's grid cell as JSON (exact values, for resume)."""
BRANCH_TAG = "scalesweep.branch_of"
"""On a cooldown branch's run: its trunk's trial id (a branch is not a Tune trial)."""
SAMPLED_TAG = "scalesweep.sampled"
ROUND_TAG = "scalesweep.round"
"""The adaptive round (`scalesweep sweep --adaptive`) that proposed a trial."""
"""The searcher's sampled values as JSON (exact values, for resume)."""


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


def wait_for_server(tracking_uri: str | None, timeout_s: float) -> None:
    """For a reader (`fit`, `export`) of an http(s) store: wait at most `timeout_s` for the
    server to answer its health check, saying so while it waits; then a `UserError` naming
    the URI. Each MLflow request after it gives up after `timeout_s` too (MLflow's own
    default would retry a stopped server for minutes and wait on a silent one forever)."""
    import requests

    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith(("http://", "https://")):
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout_s))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    deadline, wait = time.monotonic() + timeout_s, 1.0
    while True:
        left = deadline - time.monotonic()
        try:
            per_try = max(0.5, min(10, timeout_s / 3, left))
            answer = requests.get(f"{uri.rstrip('/')}/health", timeout=per_try)
            answer.raise_for_status()
            return
        except requests.RequestException as error:
            reason = type(error).__name__
            if time.monotonic() + wait >= deadline:
                raise UserError(
                    f"--tracking-uri: no MLflow server answered at {uri} within {timeout_s:g} s "
                    f"({reason}); start it, or check the address (--tracking-timeout waits "
                    "longer)"
                ) from None
            waiting = f"waiting for the MLflow server at {uri} ({reason})"
            print(f"tracking: {waiting}; retrying in {wait:.0f} s", file=sys.stderr)
            time.sleep(wait)
            wait = min(wait * 2, 10.0)


def connect(uri: str) -> Client:
    """A client of the store at `uri` (resolved) for writing: a SQLite file is created on its
    first write."""
    return MlflowClient(uri)


def connect_existing(tracking_uri: str | None, experiment: str | None = None) -> Client:
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


def experiment_id(client: Client, name: str) -> str:
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


def open_experiment(client: Client, experiment: str) -> Any:
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


def search_all(client: Client, experiment_id: str, filter_string: str) -> list[Any]:
    """Every run of an experiment that `filter_string` selects, page after page."""
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
