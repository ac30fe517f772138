"""Writing a sweep's runs, one named operation each: the parent run (started, reopened by
--resume, finished), a trial's child run (created once, ended, failed, closed when its process
died before closing it), and fit outputs logged back to the parent run. Per-step metrics go
through `metric_log.MetricLog` instead, which never blocks training."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param

from scalesweep import metrics as m
from scalesweep.tracking.read import latest_parent_run_id
from scalesweep.tracking.records import TrialRecord, find_child_run
from scalesweep.tracking.store import (
    ERROR_TAG,
    MAX_PARAMS,
    PARENT_TAG,
    REASON_TAG,
    ROLE_TAG,
    ROUND_TAG,
    SET_ASIDE_TAG,
    STATUS_TAG,
    SWEEP_ROLE,
    SWEEP_TAG,
    TRIAL_ROLE,
    TRIAL_TAG,
    WAITING_SINCE_TAG,
    WAITING_TAG,
    WAITS_TAG,
    Client,
    connect_existing,
    experiment_id,
)

# --- the sweep's parent run ------------------------------------------------------------------


def log_params(client: Client, run_id: str, params: Mapping[str, Any]) -> None:
    """`params` as strings (None as "None"), in batches MLflow accepts."""
    items = [Param(k, "None" if v is None else str(v)) for k, v in params.items()]
    for start in range(0, len(items), MAX_PARAMS):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS])


def start_parent_run(
    client: Client,
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


def reopen_parent(client: Client, parent_run_id: str) -> None:
    """A resumed sweep's parent run, marked running again."""
    client.update_run(parent_run_id, status="RUNNING")


def tag_round(
    client: Client, experiment: str, parent_run_id: str, trials: list[str], round_: int
) -> int:
    """Tag the child runs of `trials` with the adaptive round that proposed them; returns how
    many were found."""
    found = 0
    for trial in trials:
        run = find_child_run(client, experiment, parent_run_id, trial)
        if run is not None:
            client.set_tag(run.info.run_id, ROUND_TAG, str(round_))
            found += 1
    return found


def finish_parent(client: Client, parent_run_id: str, *, finished: bool) -> None:
    """Mark the sweep's parent run FINISHED when every planned trial ended, else KILLED (what
    --resume reopens)."""
    client.set_terminated(parent_run_id, "FINISHED" if finished else "KILLED")


# --- a trial's child run ---------------------------------------------------------------------


def get_or_create_child_run(
    client: Client,
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
        # --resume after Ctrl-C, or a failed trial run again: it is running again (its
        # `scalesweep.error` tag stays, the last error it had)
        if existing.data.tags.get(STATUS_TAG) in (m.INTERRUPTED, m.FAILED):
            client.set_tag(existing.info.run_id, STATUS_TAG, m.RUNNING)
            client.update_run(existing.info.run_id, status="RUNNING")
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


def end_trial_run(client: Client, run_id: str, status: str) -> None:
    """Mark a trial's run ended in MLflow's own status, once its `status` tag (completed,
    diverged or failed) is written: FAILED for a failed trial, else FINISHED."""
    client.set_terminated(run_id, "FAILED" if status == m.FAILED else "FINISHED")


def mark_failed(client: Client, run_id: str, error: BaseException | None = None) -> None:
    """Tag a trial's run failed (with the error that ended it, when known) and mark it FAILED."""
    client.set_tag(run_id, STATUS_TAG, m.FAILED)
    if error is not None:
        note_error(client, run_id, error)
    client.set_terminated(run_id, "FAILED")


def note_error(client: Client, run_id: str, error: BaseException) -> None:
    """Tag a trial's run with the error an attempt raised; its status stays: Tune may retry the
    trial, and the driver marks it failed once Tune gives up (`sweep/driver.py`)."""
    client.set_tag(run_id, ERROR_TAG, str(error)[:5000])


def mark_interrupted(client: Client, record: TrialRecord, how: str) -> bool:
    """Tag a trial's run that a stopped sweep left running `interrupted` (with `how` to go on)
    and mark it KILLED; True if it was such a run. (A trial that dies of being stopped leaves
    its run running: an attempt's error only tags it, `note_error`.) --resume reopens it
    (`get_or_create...`)."""
    if record.status != m.RUNNING or record.run_status != "RUNNING":
        return False
    client.set_tag(record.run_id, STATUS_TAG, m.INTERRUPTED)
    client.set_tag(record.run_id, REASON_TAG, how)
    client.set_terminated(record.run_id, "KILLED")
    return True


def note_checkpoints_set_aside(client: Client, run_id: str, notes: list[str]) -> None:
    """Add `notes` (checkpoints a restart set aside) to the run's tag that lists them."""
    before = client.get_run(run_id).data.tags.get(SET_ASIDE_TAG)
    client.set_tag(
        run_id, SET_ASIDE_TAG, "\n".join([*([before] if before else []), *notes])[-5000:]
    )


def _utc(unix: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(unix))


def start_waiting(client: Client, run_id: str, why: str, since: float) -> None:
    """The trial waits to be restarted since `since` (Unix time), for `why`."""
    client.set_tag(run_id, WAITING_TAG, f"since {_utc(since)}: {why}")
    client.set_tag(run_id, WAITING_SINCE_TAG, f"{since:.3f}")


def mark_restarting(client: Client, experiment: str, parent_id: str, trial: str, why: str) -> None:
    """The driver's side: Tune restarts trial `trial`, whose process was lost."""
    run = find_child_run(client, experiment, parent_id, trial)
    if run is not None:
        start_waiting(client, run.info.run_id, why, time.time())


def end_waiting(client: Client, run_id: str, tags: Mapping[str, str] | None = None) -> None:
    """The trial runs again: its wait (if `tags`, the run's, read when not given, show one)
    goes to WAITS_TAG."""
    tags = client.get_run(run_id).data.tags if tags is None else tags
    if WAITING_TAG not in tags:
        return
    since = float(tags.get(WAITING_SINCE_TAG) or time.time())
    why = tags[WAITING_TAG].split(": ", 1)[-1]
    line = f"{_utc(since)}: waited {time.time() - since:.0f} s to restart ({why})"
    before = tags.get(WAITS_TAG)
    client.set_tag(run_id, WAITS_TAG, "\n".join([*([before] if before else []), line])[-5000:])
    client.delete_tag(run_id, WAITING_TAG)
    client.delete_tag(run_id, WAITING_SINCE_TAG)


def close_orphaned_run(client: Client, record: TrialRecord) -> None:
    """Mark ended a run whose trial ended (its status tag says so) but whose process died
    before marking the run; any other run is left as it is."""
    if record.status in m.ENDED_STATUSES and record.run_status == "RUNNING":
        end_trial_run(client, record.run_id, record.status)


# --- fit outputs, back to the parent run -------------------------------------------------------


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
    client = connect_existing(tracking_uri, experiment)
    parent = parent_run_id or latest_parent_run_id(experiment, tracking_uri)
    for file in files:
        client.log_artifact(parent, str(file), artifact_path=artifact_path)
    now = int(time.time() * 1000)
    if headline:
        client.log_batch(parent, metrics=[Metric(k, v, now, 0) for k, v in headline.items()])
    return parent
