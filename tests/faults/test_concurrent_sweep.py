"""Two drivers of one sweep (same name, same storage) at once.

Before: both were accepted (2 parent runs, every trial run twice, in place one resuming from the
other's checkpoints). Now the second is refused before anything starts, naming the running
driver and how to break a lock left on shared storage; the first is untouched. The lock is the
kernel's (`flock`), so a driver killed with -9 leaves nothing that blocks `--resume`
(test_kill_driver resumes after exactly that).
"""

from __future__ import annotations

import pytest

from scalesweep.cli import main
from scalesweep.experiment import load_experiment
from scalesweep.sweep.lock import lock_path, sweep_lock
from tests.faults.conftest import (
    assert_every_point_once,
    children,
    driver,
    parents,
    sweep_file,
    tracking_uri,
    wait_until,
)


def test_a_second_driver_is_refused_naming_the_first(tmp_path, capsys):
    # Rule: while the lock is held, `sweep` and `sweep --resume` exit 2 naming the holder's pid
    # and the lock file, before any storage or run is made; once released, it is free again.
    path = sweep_file(tmp_path, "locked")
    config = load_experiment(path).config
    with sweep_lock(config):
        for extra in ([], ["--resume"]):
            assert main(["sweep", str(path), *extra]) == 2
            err = capsys.readouterr().err
            assert "is running already (pid" in err and f"delete {lock_path(config)}" in err
    assert not (tmp_path / "runs" / "locked").exists()
    with sweep_lock(config):  # released when the block ended
        pass


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_two_drivers_of_one_sweep_run_it_once(ray_address, tmp_path, capsys):
    # Rule: a second driver started while the first runs exits 2; the first finishes with one
    # parent run, one child run per trial, every point once.
    steps = 200
    train = {"steps": steps, "log_every": 10, "eval_every": 50, "checkpoint_every": 50}
    path = sweep_file(tmp_path, "twice", optim={"lr": {"grid": [0.01, 0.003]}}, train=train)
    uri = tracking_uri(path)
    with driver(path, address=ray_address) as first:
        wait_until(lambda: children(uri, "twice"), timeout=180, what="a child run", driver=first)
        assert main(["sweep", str(path), "--address", ray_address]) == 2
        assert "is running already" in capsys.readouterr().err
        assert first.wait(timeout=240) == 0, first.output()
    assert len(parents(uri, "twice")) == 1
    runs = children(uri, "twice")
    assert len(runs) == 2
    for run in runs:
        assert run.data.tags["status"] == "completed"
        assert_every_point_once(uri, run, steps, log_every=10, eval_every=50)
