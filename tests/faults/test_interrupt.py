"""Ctrl-C (SIGINT to the driver's process group) mid-sweep, on both trial paths.

The sweep must say it was interrupted and how to go on, exit 130 (not 0, as if it had
finished), and mark the trial it stopped `interrupted` (MLflow status KILLED), not leave it
RUNNING. `--resume` then finishes it with every point once.
"""

from __future__ import annotations

import os
import signal

import pytest

from scalesweep.cli import main
from tests.faults.conftest import (
    DISTRIBUTED,
    assert_every_point_once,
    children,
    driver,
    kill_titled,
    last_step,
    sweep_file,
    tracking_uri,
    wait_for_step,
    wait_until,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

PATHS = {"in_place": ({}, 400), "distributed": (DISTRIBUTED, 200)}
TRAIN = {"micro_batch_size": 2, "log_every": 10, "eval_every": 50, "checkpoint_every": 50}


@pytest.mark.parametrize("trial_path", list(PATHS))
def test_ctrl_c_exits_130_says_how_to_resume_and_marks_the_trial(ray_address, tmp_path, trial_path):
    # Rule: SIGINT mid-trial -> exit 130, "interrupted: 0 of 1 trials finished; continue with
    # `scalesweep sweep FILE --resume`", the child run tagged interrupted and KILLED; in place,
    # --resume then completes it with every point once (the distributed resume is
    # test_kill_driver's).
    resources, steps = PATHS[trial_path]
    name = f"ctrl-c-{trial_path}"
    path = sweep_file(tmp_path, name, train={**TRAIN, "steps": steps}, resources=resources)
    uri = tracking_uri(path)
    with driver(path, address=ray_address) as sweep:
        wait_until(
            lambda: any(0 < last_step(uri, r.info.run_id) < steps for r in children(uri, name)),
            timeout=240,
            what="the trial half way",
            driver=sweep,
        )
        os.killpg(sweep.proc.pid, signal.SIGINT)
        assert sweep.wait(timeout=90) == 130, sweep.output()
        output = sweep.output()
    hint = f"interrupted: 0 of 1 trials finished; continue with `scalesweep sweep {path} --resume`"
    assert hint in output, output
    (run,) = children(uri, name)
    assert run.data.tags["status"] == "interrupted" and run.info.status == "KILLED"
    if trial_path == "in_place":
        assert main(["sweep", str(path), "--resume", "--address", ray_address]) == 0
        (run,) = children(uri, name)
        assert run.data.tags["status"] == "completed" and run.info.status == "FINISHED"
        assert_every_point_once(uri, run, steps, log_every=10, eval_every=50)


def test_ctrl_c_while_tune_restarts_a_trial_counts_it_interrupted(ray_address, tmp_path):
    # Rule: a trial whose process died and that Tune is restarting when the Ctrl-C comes was
    # stopped by it, not failed: "0 of 1 trials finished", run `interrupted` and KILLED. (Tune
    # gives such a trial its earlier error; read as "Tune gave up", it was marked failed.)
    name = "ctrl-c-restarting"
    path = sweep_file(tmp_path, name, train={**TRAIN, "steps": 400})
    uri = tracking_uri(path)
    with driver(path, address=ray_address) as sweep:
        wait_for_step(uri, name, 60, sweep)
        assert kill_titled("ray::ImplicitFunc") >= 1
        wait_until(lambda: "restart" in sweep.output(), timeout=60, what="Tune to restart it")
        os.killpg(sweep.proc.pid, signal.SIGINT)
        assert sweep.wait(timeout=90) == 130, sweep.output()
        output = sweep.output()
    assert "interrupted: 0 of 1 trials finished" in output, output
    (run,) = children(uri, name)
    assert run.data.tags["status"] == "interrupted" and run.info.status == "KILLED", output
