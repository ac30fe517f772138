"""kill -9 a trial's training process mid-run, on both trial paths.

In place, the trial's own process (Ray titles it `ray::ImplicitFunc...`) dies and Tune's
FailureConfig starts the trial again, which resumes from its checkpoint folder. Distributed, a
Ray Train worker (`ray::RayTrainWorker...`) dies and Train restarts the worker group from the
last reported checkpoint. Either way the trial must end as if nothing happened: the final loss
of an uninterrupted run, and every logged point exactly once (none lost, none doubled).
"""

from __future__ import annotations

import pytest
import torch

from scalesweep.experiment import load_experiment
from scalesweep.train import train
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

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

PATHS = {
    # path: (resources, process title to kill, steps, step to kill after)
    "in_place": ({}, "ray::ImplicitFunc", 600, 250),
    "distributed": (DISTRIBUTED, "ray::RayTrainWorker", 300, 120),
}


def uninterrupted_final_loss(path) -> float:
    """The same config through `train()` directly, on one thread like the trial."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = train(load_experiment(path).resolve())
    finally:
        torch.set_num_threads(threads)
    assert summary.final_val_loss is not None
    return summary.final_val_loss


@pytest.mark.parametrize("trial_path", list(PATHS))
def test_killed_trial_resumes_to_the_same_loss_with_every_point_once(
    ray_address, tmp_path, trial_path
):
    # Rule: a trial whose training process is killed mid-run resumes from its checkpoint;
    # its final loss equals an uninterrupted run's, and its metric history has every step
    # exactly once (the retrained steps after the checkpoint are not logged again).
    resources, title, steps, kill_after = PATHS[trial_path]
    train_section = {
        "steps": steps,
        "micro_batch_size": 2,  # 2 ranks × 2, or 1 process × 2 micro-batches: the same windows
        "log_every": 10,
        "eval_every": 50,
        "checkpoint_every": 50,
    }
    name = f"kill-{trial_path}"
    path = sweep_file(tmp_path, name, train=train_section, resources=resources)
    uri = tracking_uri(path)
    with driver(path, address=ray_address) as sweep:
        run = wait_until(
            lambda: next(
                (r for r in children(uri, name) if last_step(uri, r.info.run_id) >= kill_after),
                None,
            ),
            timeout=180,
            what=f"the trial to log step {kill_after}",
            driver=sweep,
        )
        assert last_step(uri, run.info.run_id) < steps, "the trial ended before the kill"
        assert kill_titled(title) >= 1, f"no process titled {title}"
        assert sweep.wait(timeout=240) == 0, sweep.output()
    (child,) = children(uri, name)
    assert child.data.tags["status"] == "completed" and child.info.status == "FINISHED"
    assert_every_point_once(uri, child, steps, log_every=10, eval_every=50)
    assert child.data.metrics["final_val_loss"] == pytest.approx(
        uninterrupted_final_loss(path), rel=1e-5
    )


def test_a_killed_trial_with_no_retries_left_is_recorded_failed(ray_address, tmp_path):
    # Rule: a trial whose process dies with no retry left (max_failures 0) ends `failed`: its
    # run tagged failed and marked FAILED by the driver (the process could not), counted in the
    # summary, and the sweep exits 1; its points logged so far stay.
    name = "kill-no-retry"
    train_section = {"steps": 600, "micro_batch_size": 2, "log_every": 10}
    path = sweep_file(tmp_path, name, train=train_section, resources={"max_failures": 0})
    uri = tracking_uri(path)
    with driver(path, address=ray_address) as sweep:
        wait_for_step(uri, name, 50, sweep, timeout=180)
        assert kill_titled("ray::ImplicitFunc") >= 1
        assert sweep.wait(timeout=120) == 1, sweep.output()
        output = sweep.output()
    (child,) = children(uri, name)
    assert child.data.tags["status"] == "failed" and child.info.status == "FAILED", output
    assert "1/1 done · 0 running · 0 diverged · 1 failed" in output, output
    assert last_step(uri, child.info.run_id) >= 50
