"""Stop a real MLflow server mid-sweep for longer than the client's retry window, restart it.

Trials must not wait on the server: their points queue (then spool to disk) and training goes
on. What was not sent in time reaches MLflow once the server is back: no point lost, none
logged twice, every trial completed, the runs touched by the outage tagged so, exit 0.
"""

from __future__ import annotations

import time

import pytest

from scalesweep import tracking
from tests.faults.conftest import (
    assert_every_point_once,
    children,
    driver,
    last_step,
    sweep_file,
    wait_until,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

OUTAGE_S = 15.0
"""Longer than one MLflow request's retry window in a trial (5 s timeout, 1 retry, 1 s wait)."""
STEPS = 600


def test_tracking_outage_loses_and_doubles_nothing(ray_address, tmp_path, mlflow_server):
    # Rule: with the server down for 15 s while the first trial trains (its last points and
    # its summary come during the outage, the second trial's run is created after), the
    # sweep exits 0, both trials are completed and FINISHED, each logged point is in MLflow
    # exactly once, and the first trial's run says the outage happened.
    name = "outage"
    path = sweep_file(
        tmp_path,
        name,
        uri=mlflow_server.url,
        optim={"lr": {"grid": [0.01, 0.003]}},
        train={"steps": STEPS, "log_every": 10, "eval_every": 100, "checkpoint_every": 100},
    )
    with driver(path, address=ray_address) as sweep:
        first = wait_until(
            lambda: next(
                (r for r in children(mlflow_server.url, name)
                 if last_step(mlflow_server.url, r.info.run_id) >= 100),
                None,
            ),
            timeout=180,
            what="the first trial to log step 100",
            driver=sweep,
        )  # fmt: skip
        mlflow_server.stop()
        time.sleep(OUTAGE_S)
        mlflow_server.start()
        assert sweep.wait(timeout=300) == 0, sweep.output()
    runs = {r.info.run_id: r for r in children(mlflow_server.url, name)}
    assert len(runs) == 2
    for run in runs.values():
        assert run.data.tags["status"] == "completed" and run.info.status == "FINISHED"
        assert_every_point_once(mlflow_server.url, run, STEPS, log_every=10, eval_every=100)
    touched = runs[first.info.run_id].data.tags
    assert tracking.RETRIES_TAG in touched or tracking.SPOOLED_TAG in touched
    if tracking.RETRIES_TAG in touched:  # said in the closing summary, not only counted
        assert "scalesweep.tracking_outage_s" in touched
        assert "tracking: the server did not answer for up to" in sweep.output()
