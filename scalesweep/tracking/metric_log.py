"""Per-step metrics of one MLflow run, sent from a background thread: training never waits.

`MetricLog.on_log` (a `train.Callback`, rank 0) only appends to a queue. A sender thread sends
a batch at most every `every_s` seconds. When the tracking server does not answer, the batch
stays queued and is retried with backoff while training goes on; past `max_pending` points the
oldest spill to a spool file on disk, so memory stays bounded and nothing is lost. `close` sends
the rest and the summary, then the status tags, in that order: a run tagged finished has all its
points. If the server is still down, what is left goes to the spool with the tags, and
`replay_spool` writes it later (the sweep driver does, at the end and on --resume).

Exactly once: a resent batch carries the same timestamps, which MLflow's SQL stores take as the
same points; a trial restarted from a checkpoint retrains steps it had already logged, so points
at or below `skip_through[key]` (the run's last logged step of that key) are dropped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunTag

from scalesweep.callbacks import Callback
from scalesweep.tracking.store import MAX_BATCH, OUTAGE_TAG, RETRIES_TAG, SPOOLED_TAG, Client

RETRY_CAP_S = 30.0
CHECKPOINT_WAIT_S = 5.0
"""How long a checkpoint waits for a healthy server to take the queued points."""


def logged_through(client: Client, run_id: str) -> dict[str, int]:
    """The last step logged of each metric of a run (for a restarted trial's `skip_through`)."""
    run = client.get_run(run_id)
    return {
        key: max(point.step for point in client.get_metric_history(run_id, key))
        for key in run.data.metrics
    }


def _append(spool: Path, records: list[dict[str, Any]]) -> None:
    spool.parent.mkdir(parents=True, exist_ok=True)
    with spool.open("a") as stream:
        for record in records:
            stream.write(json.dumps(record) + "\n")


def _metric_record(run_id: str, point: Metric) -> dict[str, Any]:
    return {"run_id": run_id, "metric": [point.key, point.value, point.timestamp, point.step]}


class MetricLog(Callback):
    """See the module docstring. The tag `store.RETRIES_TAG` counts failed sends."""

    def __init__(
        self,
        client: Any,
        run_id: str,
        *,
        every_s: float,
        spool: Path,
        skip_through: Mapping[str, int] | None = None,
        max_pending: int = 200_000,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.every_s = every_s
        self.spool = spool
        self.skip_through = dict(skip_through or {})
        self.max_pending = max_pending
        self.failures = 0
        self.healthy = True
        """Whether the last send went through."""
        self.spilled = False
        self.ever_spilled = False
        """Points went to the spool at some time (tagged `SPOOLED_TAG` even once replayed)."""
        self.down_since: float | None = None
        """When the server stopped answering (monotonic), while it does not."""
        self.down_s = 0.0
        """Seconds the server did not answer, over the outages that ended."""
        self._pending: list[Metric] = []
        self._in_flight: list[Metric] = []
        self._in_flight_spooled = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send_loop, name="metric-log", daemon=True)
        self._thread.start()

    # --- train.Callback -------------------------------------------------------------------------

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        points = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if step > self.skip_through.get(k, -1)
        ]
        with self._lock:
            self._pending.extend(points)
            full = len(self._pending) > self.max_pending
        if full:  # a long outage: keep memory bounded
            self.spill()

    def on_checkpoint(self, step: int) -> None:
        """Every point logged so far reaches MLflow or the spool before the checkpoint exists:
        a run resumed from it does not train those steps again, so a point still queued in
        memory when the process died would be lost. A healthy server takes them in one
        request; a server that is down is not waited for (they go to the spool)."""
        if self.healthy:
            self._wake.set()
            deadline = time.monotonic() + CHECKPOINT_WAIT_S
            while (self._pending or self._in_flight) and time.monotonic() < deadline:
                time.sleep(0.01)
        if self._pending or self._in_flight:
            self.spill()

    # --- sending ---------------------------------------------------------------------------------

    def spill(self) -> None:
        """Move every unsent point (the batch in flight too) to the spool file on disk."""
        with self._lock:
            points, self._pending = [*self._in_flight, *self._pending], []
            self._in_flight_spooled = bool(self._in_flight)
            if points:
                _append(self.spool, [_metric_record(self.run_id, p) for p in points])
                self.spilled = self.ever_spilled = True

    def _send_one_batch(self) -> bool:
        """Send the oldest batch; False when the server did not take it (the batch is kept,
        unless a spill took it meanwhile)."""
        with self._lock:
            batch, self._pending = (
                self._pending[:MAX_BATCH],
                self._pending[MAX_BATCH:],
            )
            self._in_flight, self._in_flight_spooled = batch, False
        if not batch:
            return True
        try:
            self.client.log_batch(self.run_id, metrics=batch)
            ok = True
        except Exception:
            ok = False
        with self._lock:
            if not ok and not self._in_flight_spooled:
                self._pending[:0] = batch
            self._in_flight = []
            self.failures += not ok
            self._outage(ok)
        return ok

    def _outage(self, ok: bool) -> None:
        """Time the outage a send's result starts, continues or ends (under the lock)."""
        now = time.monotonic()
        if not ok and self.down_since is None:
            self.down_since = now
        elif ok and self.down_since is not None:
            self.down_s += now - self.down_since
            self.down_since = None
        self.healthy = ok

    def unreachable_s(self) -> float:
        """How long the server has not answered now (0 while it answers): the progress line."""
        since = self.down_since
        return 0.0 if since is None else time.monotonic() - since

    def outage_tags(self) -> dict[str, str]:
        """What the run says about the outages it lived through: failed sends, their length,
        and whether points waited in the spool."""
        if not self.failures:
            return {}
        tags = {
            RETRIES_TAG: str(self.failures),
            OUTAGE_TAG: f"{self.down_s + self.unreachable_s():.0f}",
        }
        return {**tags, SPOOLED_TAG: "true"} if self.ever_spilled else tags

    def _send_loop(self) -> None:
        wait = self.every_s
        while not self._stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            ok = True
            while ok and self._pending and not self._stop.is_set():
                ok = self._send_one_batch()
            wait = self.every_s if ok else min(max(wait * 2, 1.0), RETRY_CAP_S)

    def _drain(self, deadline: float) -> bool:
        """Send everything queued, then what was spilled to the spool (the sender thread has
        stopped), retrying with backoff; False if the deadline passed first."""
        wait = 1.0
        while self._pending or self.spilled:
            if self._send_one_batch() and (self._pending or not self.spilled or self._replay()):
                continue
            if time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)
            wait = min(wait * 2, RETRY_CAP_S)
        return True

    def _replay(self) -> bool:
        try:
            replay_spool(self.client, self.spool, final=False)
        except Exception:
            self.failures += 1
            return False
        with self._lock:
            self.spilled = False
            self._outage(True)
        return True

    def close(
        self, *, summary: Mapping[str, float], tags: Mapping[str, str], timeout_s: float
    ) -> bool:
        """Send the rest, the summary (at step 0) and then `tags`, waiting at most `timeout_s`
        for the server; else spool them. True when everything reached MLflow now."""
        now = int(time.time() * 1000)
        with self._lock:
            self._pending.extend(Metric(k, float(v), now, 0) for k, v in summary.items())
        self._stop.set()
        self._wake.set()
        self._thread.join()  # one send at most is in flight; the client's timeout bounds it
        deadline = time.monotonic() + timeout_s
        final_tags = dict(tags)
        try:
            if self._drain(deadline):
                final_tags.update(self.outage_tags())
                self.client.log_batch(
                    self.run_id, tags=[RunTag(k, v) for k, v in final_tags.items()]
                )
                return True
        except Exception:
            self.failures += 1
        self.spill()
        final_tags.update(self.outage_tags())
        _append(self.spool, [{"run_id": self.run_id, "tags": final_tags}])
        return False


def replay_spool(client: Any, spool: Path, *, final: bool = True) -> int:
    """Write a spool file into MLflow (metrics first, then tags), then delete it; returns the
    points written. `final` adds the `store.SPOOLED_TAG` to each run with tags in it."""
    if not spool.is_file():
        return 0
    points: dict[str, list[Metric]] = {}
    tags: dict[str, dict[str, str]] = {}
    for line in spool.read_text().splitlines():
        record = json.loads(line)
        if "metric" in record:
            points.setdefault(record["run_id"], []).append(Metric(*record["metric"]))
        else:
            tags.setdefault(record["run_id"], {}).update(record["tags"])
    for run_id, metrics in points.items():
        for start in range(0, len(metrics), MAX_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH])
    for run_id, run_tags in tags.items():
        marked = {**run_tags, SPOOLED_TAG: "true"} if final else run_tags
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in marked.items()])
    spool.unlink()
    return sum(len(v) for v in points.values())
