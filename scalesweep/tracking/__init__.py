"""The MLflow contract of a sweep: every MLflow call of the package is made in this folder.

Layout: experiment = sweep name; one parent run per sweep invocation (`scalesweep.role=sweep`)
holding the sweep file and the fit outputs; one child run per trial (`scalesweep.role=trial`,
`mlflow.parentRunId`, `scalesweep.trial_id`) with the trial's params under dotted names, the
per-step metrics of `scalesweep.metrics`, the summary metrics and a `status` tag.

Writers: the sweep driver (the parent run: `start_parent_run`, `reopen_parent`,
`finish_parent`; trials whose process died: `mark_failed`, `close_orphaned_run`), the trial
(`ChildRun`: its child run, its per-step metrics through a `MetricLog` that never blocks
training, its status), `scalesweep fit` (`log_fit_outputs` to the parent). Readers:
`runs_table`, the one-row-per-trial DataFrame the fitter consumes, `curves`, the per-step
histories, and `trial_records`, the driver's typed view of a sweep's child runs.

Modules, each importing only those above it:
    store       the store's URI, its checks and clients; the tag names
    retry       waiting out an outage
    read        the runs table, the curves, the latest parent run
    records     a child run decoded once (`TrialRecord`)
    runs        writes: parent and child runs, statuses, fit outputs
    metric_log  per-step metrics from a background thread, the spool
    child_run   a trial's child run from the trial's side
    ui          the experiment's UI set-up and URLs
"""

from scalesweep.tracking.child_run import ChildRun
from scalesweep.tracking.metric_log import MetricLog, logged_through, replay_spool
from scalesweep.tracking.read import curves, latest_parent_run_id, runs_table
from scalesweep.tracking.records import (
    TrialRecord,
    child_runs,
    outage_line,
    trial_records,
    trial_tags,
)
from scalesweep.tracking.retry import bound_mlflow_retries, with_retries
from scalesweep.tracking.runs import (
    close_orphaned_run,
    end_waiting,
    finish_parent,
    get_or_create_child_run,
    log_fit_outputs,
    mark_failed,
    mark_interrupted,
    mark_restarting,
    note_error,
    reopen_parent,
    start_parent_run,
    start_waiting,
    summary_metrics,
    tag_round,
)
from scalesweep.tracking.store import (
    ERROR_TAG,
    RETRIES_TAG,
    ROUND_TAG,
    SPOOLED_TAG,
    STATUS_TAG,
    WAITING_TAG,
    WAITS_TAG,
    Client,
    check_local_store,
    check_reachable,
    connect,
    is_local_uri,
    resolve_tracking_uri,
    wait_for_server,
)
from scalesweep.tracking.ui import report_url, runs_url, set_up_experiment

__all__ = [
    "ERROR_TAG",
    "RETRIES_TAG",
    "ROUND_TAG",
    "SPOOLED_TAG",
    "STATUS_TAG",
    "WAITING_TAG",
    "WAITS_TAG",
    "ChildRun",
    "Client",
    "MetricLog",
    "TrialRecord",
    "bound_mlflow_retries",
    "check_local_store",
    "check_reachable",
    "child_runs",
    "close_orphaned_run",
    "connect",
    "curves",
    "end_waiting",
    "finish_parent",
    "get_or_create_child_run",
    "is_local_uri",
    "latest_parent_run_id",
    "log_fit_outputs",
    "logged_through",
    "mark_failed",
    "mark_interrupted",
    "mark_restarting",
    "note_error",
    "outage_line",
    "reopen_parent",
    "replay_spool",
    "report_url",
    "resolve_tracking_uri",
    "runs_table",
    "runs_url",
    "set_up_experiment",
    "start_parent_run",
    "start_waiting",
    "summary_metrics",
    "tag_round",
    "trial_records",
    "trial_tags",
    "wait_for_server",
    "with_retries",
]
