"""A tracking outage is said, not only counted: while it lasts (the sweep's progress line) and
after it (the run's tags and the sweep's closing summary).

Before: after a 3-minute outage the run was tagged `scalesweep.tracking_retries=17` only, with
no `scalesweep.spooled` although points had waited in the spool, and neither the driver's
output nor the trial's log mentioned it. The end-to-end check is in test_tracking_outage.py.
"""

from __future__ import annotations

import time

from mlflow.tracking import MlflowClient

from scalesweep import tracking
from scalesweep.sweep.progress import Tally
from scalesweep.tracking import MetricLog


class DownFor:
    """A client whose log_batch fails for the first `seconds`, then delegates."""

    def __init__(self, client: MlflowClient, seconds: float) -> None:
        self.client, self.until = client, time.monotonic() + seconds

    def log_batch(self, run_id, **kwargs):
        if time.monotonic() < self.until:
            raise ConnectionError("tracking server unreachable")
        return self.client.log_batch(run_id, **kwargs)


def test_an_outage_is_timed_and_tagged_with_spooled(tmp_path):
    # Rule: while the server is down the log says for how long (unreachable_s > 0); after it,
    # the run carries the failed sends, the outage's seconds, and `spooled` when points waited
    # in the spool, and the sweep's closing line names them.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = tracking.start_parent_run(client, "s", params={}, tags={}, artifacts={})
    child, _ = tracking.get_or_create_child_run(client, "s", parent, "w32-abc", {"a": 1})
    log = MetricLog(DownFor(client, 1.5), child, every_s=0.01, spool=tmp_path / "s.jsonl",
                    max_pending=2)  # fmt: skip
    for step in range(1, 7):
        log.on_log(step, {"train/loss": float(step)})
        time.sleep(0.1)
    assert log.unreachable_s() > 0.3
    assert log.close(summary={}, tags={"status": "completed"}, timeout_s=30)
    assert log.unreachable_s() == 0
    tags = client.get_run(child).data.tags
    assert tags[tracking.SPOOLED_TAG] == "true"
    assert 1 <= float(tags["scalesweep.tracking_outage_s"]) <= 30
    assert int(tags[tracking.RETRIES_TAG]) >= 1
    line = tracking.outage_line(client, "s", parent)
    assert line is not None and "did not answer for up to" in line and "1 trial(s)" in line


def test_the_progress_line_says_the_server_is_unreachable():
    # Rule: while a running trial reports its server unreachable, the line says so.
    tally = Tally(total_trials=4, total_flops=1e12)
    tally.running = {"a": 0.0, "b": 0.0}
    assert "unreachable" not in tally.line()
    tally.unreachable = {"a": 42.0, "b": 0.0}
    assert "tracking server unreachable for 42 s (1 trial(s)" in tally.line()


def test_the_progress_line_says_a_trial_waits_for_capacity_to_restart():
    # Rule: a distributed trial's reported wait, or a trial Tune restarts (its process lost),
    # shows as "N waiting for capacity to restart (longest s)"; none: not shown.
    tally = Tally(total_trials=4, total_flops=1e12)
    tally.running = {"a": 0.0}
    assert "waiting" not in tally.line()
    tally.waiting = {"a": 63.0}
    assert "1 waiting for capacity to restart (63 s)" in tally.line()
    tally.restarting = {"b": time.monotonic() - 100}
    assert "2 waiting for capacity to restart (100 s)" in tally.line()


def test_a_wait_is_said_only_when_the_free_resources_cannot_hold_the_workers():
    # Rule: short_of compares the free CPUs/GPUs with workers × per-worker; the reason names
    # both.
    from scalesweep.config import ResourcesConfig
    from scalesweep.sweep.capacity import need_and_free, short_of

    two = ResourcesConfig(workers_per_trial=2, cpus_per_worker=0.99)
    assert short_of(two, {"CPU": 1.0}) and not short_of(two, {"CPU": 1.98})
    gpus = ResourcesConfig(workers_per_trial=2, cpus_per_worker=1, gpus_per_worker=1)
    assert short_of(gpus, {"CPU": 8.0, "GPU": 1.0})
    why = need_and_free(two, {"CPU": 1.0}, 1)
    assert why == "needs 2 workers × 0.99 CPU; 1 CPU free on 1 node(s)"
