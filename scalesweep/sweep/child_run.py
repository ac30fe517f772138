"""The MLflow child run of a trial (or of one of its cooldown branches), from the trial's side.

Opened once per attempt: found again when the trial was restarted (by Tune, Ray Train or
--resume), in which case whatever an earlier attempt spooled is written first, its status says
whether there is anything left to do, and the steps it already logged are not logged again.
Every call waits out a tracking outage (bounded by `tracking.outage_timeout_s`); per-step
metrics never wait (`MetricLog`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.config import ExperimentConfig
from scalesweep.metric_log import MetricLog, logged_through, replay_spool


def bound_mlflow_retries() -> None:
    """Make one MLflow request give up within seconds, not minutes: outages are waited out by
    our own retries (`tracking.with_retries`, `MetricLog`), which know what they may block."""
    for key, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
    ):
        os.environ.setdefault(key, value)


class ChildRun:
    """One child run of the sweep's parent run: found or created, fed metrics, marked."""

    def __init__(
        self,
        *,
        uri: str,
        parent_run_id: str,
        storage: str,
        name: str,
        config: ExperimentConfig,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> None:
        self.name = name
        self.config = config
        self.client = tracking.MlflowClient(uri)
        self.spool = Path(storage) / "spool" / f"{name}.jsonl"
        self.run_id, existing = self._retry(
            lambda: tracking.get_or_create_child_run(
                self.client, config.name, parent_run_id, name, params, tags
            ),
            "opening the child run",
        )
        self.restarted = existing is not None
        self.done: dict[str, Any] | None = None
        """The summary of an earlier attempt that finished (then nothing is left to do)."""
        if self.restarted:  # what did its earlier attempts leave?
            self._retry(lambda: replay_spool(self.client, self.spool), "writing its spool")
            run = self._retry(lambda: self.client.get_run(self.run_id), "reading its run")
            if run.data.tags.get(tracking.STATUS_TAG) in m.FINISHED_STATUSES:
                self.done = {**run.data.metrics, m.STATUS: run.data.tags[tracking.STATUS_TAG]}

    def _retry(self, call: Any, what: str) -> Any:
        return tracking.with_retries(
            call, what=f"{self.name}: {what}", timeout_s=self.config.tracking.outage_timeout_s
        )

    def metric_log(self) -> MetricLog:
        """The run's metric log; a restarted run's skips the steps already logged (read here,
        by the process that logs, not by a distributed trial's driver that never does)."""
        skip_through = {}
        if self.restarted:
            skip_through = self._retry(
                lambda: logged_through(self.client, self.run_id), "reading its metrics"
            )
        return MetricLog(
            self.client,
            self.run_id,
            every_s=self.config.tracking.log_every_s,
            spool=self.spool,
            skip_through=skip_through,
        )

    def finish(self, log: MetricLog, summary: dict[str, Any]) -> None:
        """Log the summary, then the status, and mark the run finished (rank 0, both paths).
        A server that stays down gets them later, from the spool."""
        tags = {tracking.STATUS_TAG: summary[m.STATUS]}
        if summary.get("reason"):
            tags[tracking.REASON_TAG] = summary["reason"]
        timeout = self.config.tracking.outage_timeout_s
        if log.close(summary=tracking.summary_metrics(summary), tags=tags, timeout_s=timeout):
            end = "FAILED" if summary[m.STATUS] == m.FAILED else "FINISHED"
            self._retry(lambda: self.client.set_terminated(self.run_id, end), "marking it")

    def fail(self, error: BaseException) -> None:
        def mark() -> None:
            self.client.set_tag(self.run_id, tracking.STATUS_TAG, m.FAILED)
            self.client.set_tag(self.run_id, tracking.ERROR_TAG, str(error)[:5000])
            self.client.set_terminated(self.run_id, "FAILED")

        self._retry(mark, "marking it failed")
