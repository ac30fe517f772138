"""MLflow tracking: URI resolution, child-run reuse, background batches, surviving a dead server."""

import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from scalesweep import tracking
from scalesweep.errors import UserError
from scalesweep.tracking import MetricLog, logged_through, replay_spool


class FlakyClient:
    """Delegates to a real client, but its first `failures` log_batch calls raise."""

    def __init__(self, client: MlflowClient, failures: int) -> None:
        self.client, self.failures, self.calls = client, failures, 0

    def log_batch(self, run_id, **kwargs):
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("tracking server unreachable")
        return self.client.log_batch(run_id, **kwargs)


@pytest.fixture
def client(tmp_path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def parent_and_child(client: MlflowClient) -> tuple[str, str]:
    parent = tracking.start_parent_run(client, "s", params={}, tags={}, artifacts={})
    child, existing = tracking.get_or_create_child_run(client, "s", parent, "w32-abc", {"a": 1})
    assert existing is None
    return parent, child


def test_relative_sqlite_uri_is_made_absolute(tmp_path, monkeypatch):
    # Rule: Ray moves trials to other directories, so the driver resolves the URI to absolute.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_tracking_uri(None) == "http://127.0.0.1:5000"
    assert tracking.resolve_tracking_uri("sqlite:///x.db") == f"sqlite:///{tmp_path / 'x.db'}"


def test_child_run_is_reused_not_duplicated(client):
    # Rule: asking again for the same trial under the same parent returns the same run.
    parent, child = parent_and_child(client)
    again, existing = tracking.get_or_create_child_run(client, "s", parent, "w32-abc", {"a": 1})
    assert again == child and existing is not None
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    assert len(runs) == 2


def test_metric_log_retries_a_failed_batch_and_says_so(client, tmp_path):
    # Rule: a batch the server refused stays queued and is sent later; the run is tagged with
    # how many sends failed. Nothing raises into the training loop, and nothing is doubled.
    _, child = parent_and_child(client)
    flaky = FlakyClient(client, failures=1)
    log = MetricLog(flaky, child, every_s=0.01, spool=tmp_path / "spool.jsonl")
    log.on_log(10, {"train/loss": 3.0})
    log.on_log(20, {"train/loss": 2.5})
    assert log.close(summary={"final_val_loss": 2.4}, tags={"status": "completed"}, timeout_s=30)
    history = client.get_metric_history(child, "train/loss")
    assert [(m.step, m.value) for m in history] == [(10, 3.0), (20, 2.5)]
    run = client.get_run(child)
    assert run.data.tags["scalesweep.tracking_retries"] == "1"
    assert run.data.metrics["final_val_loss"] == 2.4
    assert not (tmp_path / "spool.jsonl").exists()


def test_unreachable_server_spools_and_replay_writes_it_later(client, tmp_path):
    # Rule: if the server never comes back before the trial ends, everything goes to a spool
    # file; replay_spool writes it later and tags the run `scalesweep.spooled`.
    _, child = parent_and_child(client)
    spool = tmp_path / "spool" / "w32-abc.jsonl"
    dead = FlakyClient(client, failures=10**6)
    log = MetricLog(dead, child, every_s=0.01, spool=spool)
    log.on_log(5, {"train/loss": 4.0})
    assert not log.close(summary={"init_loss": 5.5}, tags={"status": "diverged"}, timeout_s=1)
    assert spool.is_file()
    assert replay_spool(client, spool) == 2
    run = client.get_run(child)
    assert run.data.metrics["init_loss"] == 5.5 and run.data.tags["status"] == "diverged"
    assert run.data.tags["scalesweep.spooled"] == "true"
    assert run.data.tags["scalesweep.tracking_retries"] != "0"
    assert not spool.exists()


def test_long_outage_spills_to_disk_and_close_writes_it_once(client, tmp_path):
    # Rule: while the server is down, memory stays bounded (the oldest points spill to the
    # spool file); once it is back, close writes the spilled and the queued points, each once.
    _, child = parent_and_child(client)
    flaky = FlakyClient(client, failures=3)
    log = MetricLog(flaky, child, every_s=0.01, spool=tmp_path / "spool.jsonl", max_pending=4)
    for step in range(1, 11):
        log.on_log(step, {"train/loss": float(step)})
    assert log.close(summary={}, tags={"status": "completed"}, timeout_s=30)
    steps = [m.step for m in client.get_metric_history(child, "train/loss")]
    assert sorted(steps) == list(range(1, 11))
    assert not (tmp_path / "spool.jsonl").exists()


def test_restarted_trial_skips_steps_it_had_logged(client, tmp_path):
    # Rule: a trial restarted from a checkpoint at step 10 retrains steps 11-15, which its
    # first attempt had logged; they are not logged twice (points at or below the run's last
    # logged step of each key are dropped), and later steps are logged.
    _, child = parent_and_child(client)
    first = MetricLog(client, child, every_s=0.01, spool=tmp_path / "a.jsonl")
    for step in (5, 10, 15):
        first.on_log(step, {"train/loss": 1.0})
    first.on_log(10, {"val/loss": 1.0})
    assert first.close(summary={}, tags={}, timeout_s=30)
    assert logged_through(client, child) == {"train/loss": 15, "val/loss": 10}
    second = MetricLog(
        client,
        child,
        every_s=0.01,
        spool=tmp_path / "b.jsonl",
        skip_through=logged_through(client, child),
    )
    for step in (15, 20):
        second.on_log(step, {"train/loss": 2.0, "val/loss": 2.0})
    assert second.close(summary={}, tags={}, timeout_s=30)
    assert [m.step for m in client.get_metric_history(child, "train/loss")] == [5, 10, 15, 20]
    assert [m.step for m in client.get_metric_history(child, "val/loss")] == [10, 15, 20]


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////nonexistent-scalesweep-dir/mlflow.db",  # a folder that does not exist
        "http://127.0.0.1:9",  # nothing listens on the discard port
    ],
)
def test_unreachable_tracking_uri_is_a_user_error(uri):
    # Rule: a store that cannot be opened is refused, naming the key, before any compute.
    with pytest.raises(UserError, match=r"tracking\.uri"):
        tracking.check_reachable(uri)


def test_summary_metrics_leave_out_missing_values():
    summary = {"init_loss": 5.5, "final_val_loss": None, "params": 10, "tokens": 3, "flops": 1.0}
    assert tracking.summary_metrics(summary) == {
        "init_loss": 5.5,
        "params": 10.0,
        "tokens": 3.0,
        "flops": 1.0,
    }


def test_curves_read_in_bulk_equal_the_per_run_histories(tmp_path, monkeypatch):
    # Rule: a SQL store's curves are read a chunk of runs per query; the result must equal one
    # get_metric_history per (run, key), including a step logged twice (the later value wins),
    # a run without the key, and runs across a chunk boundary (chunk of 2 over 5 runs).
    from mlflow.entities import Metric

    from scalesweep.tracking import read

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    parent = tracking.start_parent_run(client, "s", params={}, tags={}, artifacts={})
    for i in range(5):
        run, _ = tracking.get_or_create_child_run(client, "s", parent, f"t{i}", {"i": i})
        points = [Metric("val/loss", 10.0 - s - i, 1000 + s, s) for s in (1, 2, 3)]
        points += [Metric("train/flops", 1e9 * s, 1000 + s, s) for s in (1, 2, 3) if i != 4]
        points.append(Metric("val/loss", -1.0, 2000, 2))  # step 2 again, later
        client.log_batch(run, metrics=points)
        client.set_tag(run, tracking.STATUS_TAG, "completed")
    keys = ("val/loss", "train/flops")
    monkeypatch.setattr(read, "BULK_CHUNK", 2)
    bulk = read.curves("s", uri, keys=keys)
    monkeypatch.setattr(read, "_fetch_histories", per_run_histories)
    looped = read.curves("s", uri, keys=keys)
    assert len(bulk) == 4 * 3 and set(bulk["trial_id"]) == {"t0", "t1", "t2", "t3"}
    pd.testing.assert_frame_equal(bulk, looped)
    assert (bulk.loc[bulk["step"] == 2, "val/loss"] == -1.0).all()


def per_run_histories(client, run_ids, key, cache) -> None:
    for run_id in run_ids:
        cache[run_id, key] = {x.step: x.value for x in client.get_metric_history(run_id, key)}


def test_a_wait_to_restart_is_tagged_then_recorded_once_it_ends(client):
    # Rule: start_waiting tags why and since when; end_waiting (the trial runs again) adds
    # one line with the seconds waited to the waits tag and removes the waiting tags; a run
    # that was not waiting is left as it is.
    _, child = parent_and_child(client)
    tracking.end_waiting(client, child, client.get_run(child).data.tags)
    assert tracking.WAITS_TAG not in client.get_run(child).data.tags
    since = time.time() - 42
    tracking.start_waiting(client, child, "needs 2 workers × 0.99 CPU", since)
    tags = client.get_run(child).data.tags
    assert tags[tracking.WAITING_TAG].endswith(": needs 2 workers × 0.99 CPU")
    tracking.end_waiting(client, child, tags)
    tags = client.get_run(child).data.tags
    assert tracking.WAITING_TAG not in tags and "scalesweep.waiting_since" not in tags
    (line,) = tags[tracking.WAITS_TAG].splitlines()
    assert "waited 42 s to restart (needs 2 workers × 0.99 CPU)" in line, line
