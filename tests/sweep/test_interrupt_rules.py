"""Which trials a Ctrl-C stopped, and how a trial run again reads in MLflow (no Ray here: the
fault tests in tests/faults drive the same rules through a real sweep)."""

from __future__ import annotations

import time

from mlflow import MlflowClient

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.sweep.interrupt import Interrupt


def test_only_a_trial_tune_gave_up_on_before_the_ctrl_c_is_not_stopped_by_it():
    # Rule: no Ctrl-C stops nothing; after one, a trial counts as stopped unless Tune gave up on
    # it (no retries left) before the Ctrl-C: a failure at or after it is the stop itself.
    interrupt = Interrupt()
    assert not interrupt.stopped(None) and not interrupt.stopped(time.time())
    interrupt.at = 1000.0
    interrupt.event.set()
    assert interrupt.stopped(None)
    assert interrupt.stopped(1000.0) and interrupt.stopped(1000.5)
    assert not interrupt.stopped(999.9)


def test_an_attempts_error_leaves_the_run_running_and_a_rerun_reopens_a_failed_one(tmp_path):
    # Rule: an attempt that raises tags its error but leaves the run running (Tune may retry
    # it); a trial run again (a retry, or --resume of a failed trial) reopens its failed run,
    # so MLflow never shows `failed` for a trial that is training.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_experiment("sweep")
    open_run = lambda: tracking.get_or_create_child_run(client, "sweep", "p", "t", {})  # noqa: E731
    run_id, existing = open_run()
    assert existing is None
    tracking.note_error(client, run_id, RuntimeError("worker died"))
    run = client.get_run(run_id)
    assert run.data.tags[tracking.STATUS_TAG] == m.RUNNING and run.info.status == "RUNNING"
    assert run.data.tags[tracking.ERROR_TAG] == "worker died"
    tracking.mark_failed(client, run_id)
    assert client.get_run(run_id).info.status == "FAILED"
    again, existing = open_run()
    run = client.get_run(run_id)
    assert again == run_id and existing is not None
    assert run.data.tags[tracking.STATUS_TAG] == m.RUNNING and run.info.status == "RUNNING"
