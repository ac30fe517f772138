"""kill -9 the sweep driver mid-sweep, then `scalesweep sweep FILE --resume`, on both paths.

When the driver dies, Ray ends its job and with it the trials it was running. The resumed
sweep must finish what is left and nothing else: every trial exactly once (one child run each,
a finished trial not trained again), every child run FINISHED with its status, the parent run
finished, and no metric point lost or logged twice. An edited file is refused, not mixed in.
"""

from __future__ import annotations

import pytest

from scalesweep.cli import main
from tests.faults.conftest import (
    DISTRIBUTED,
    assert_every_point_once,
    children,
    driver,
    last_step,
    parents,
    sweep_file,
    tracking_uri,
    wait_until,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

PATHS = {
    # path: (resources, learning rates (one trial each), steps)
    "in_place": ({}, [0.01, 0.005, 0.003], 400),
    "distributed": (DISTRIBUTED, [0.01, 0.003], 200),
}
TRAIN = {"micro_batch_size": 2, "log_every": 10, "eval_every": 50, "checkpoint_every": 50}


def _one_done_one_midway(uri: str, name: str, steps: int) -> bool:
    runs = children(uri, name)
    done = [r for r in runs if r.data.tags.get("status") == "completed"]
    midway = [r for r in runs if 0 < last_step(uri, r.info.run_id) < steps and r not in done]
    return bool(done and midway)


@pytest.mark.parametrize("trial_path", list(PATHS))
def test_killed_driver_then_resume_runs_each_trial_once(ray_address, tmp_path, trial_path, capsys):
    # Rule: after kill -9 of the driver (one trial done, one half way), --resume with an edited
    # file exits 2 saying what changed; --resume with the file finishes the sweep: one child
    # run per trial, all completed and FINISHED, one parent FINISHED, every point once.
    resources, lrs, steps = PATHS[trial_path]
    name = f"driver-{trial_path}"
    path = sweep_file(tmp_path, name, optim={"lr": {"grid": lrs}},
                      train={**TRAIN, "steps": steps}, resources=resources)  # fmt: skip
    uri = tracking_uri(path)
    with driver(path, address=ray_address) as sweep:
        wait_until(lambda: _one_done_one_midway(uri, name, steps), timeout=240,
                   what="one trial done and another half way", driver=sweep)  # fmt: skip
    # the driver's process group is killed here, by the context manager

    edited = sweep_file(tmp_path / "edited", name, optim={"lr": {"grid": [*lrs, 0.001]}},
                        train={**TRAIN, "steps": steps // 2}, resources=resources)  # fmt: skip
    edited.write_text(edited.read_text().replace(str(tmp_path / "edited"), str(tmp_path)))
    assert main(["sweep", str(edited), "--resume", "--address", ray_address]) == 2
    err = capsys.readouterr().err
    assert "changed since the sweep started" in err and "added" in err and "changed" in err

    assert main(["sweep", str(path), "--resume", "--address", ray_address]) == 0
    runs = children(uri, name)
    names = [r.data.tags["scalesweep.trial_id"] for r in runs]
    assert len(names) == len(lrs) and len(set(names)) == len(lrs)
    for run in runs:
        assert run.data.tags["status"] == "completed" and run.info.status == "FINISHED"
        assert_every_point_once(uri, run, steps, log_every=10, eval_every=50)
    (parent,) = parents(uri, name)
    assert parent.info.status == "FINISHED"
