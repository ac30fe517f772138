"""The MLflow child run of a trial (or of one of its cooldown branches), from the trial's side.

Opened once per attempt of a trial (`ChildRun.open`): found again when the trial was restarted
(by Tune or --resume), in which case whatever an earlier attempt spooled is written first, its
status says whether there is anything left to do, and the steps it already logged are not
logged again. A distributed trial's rank 0 attaches to the run its trial opened
(`ChildRun.attach`) without searching for it again: it writes what an earlier attempt of its
worker group spooled, and skips the steps already logged. Every call waits out a tracking
outage (bounded by `tracking.outage_timeout_s`); per-step metrics never wait (`MetricLog`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from scalesweep import metrics as m
from scalesweep.config import TrackingConfig
from scalesweep.tracking.metric_log import MetricLog, logged_through, replay_spool
from scalesweep.tracking.records import read_record
from scalesweep.tracking.retry import with_retries
from scalesweep.tracking.runs import (
    end_trial_run,
    end_waiting,
    get_or_create_child_run,
    mark_failed,
    note_checkpoints_set_aside,
    note_error,
    summary_metrics,
)
from scalesweep.tracking.store import REASON_TAG, STATUS_TAG, connect

T = TypeVar("T")


class ChildRun:
    """One child run of the sweep's parent run: opened or attached to, fed metrics, marked.
    Build it with `open` or `attach`."""

    def __init__(
        self,
        *,
        uri: str,
        run_id: str,
        name: str,
        storage: str,
        tracking: TrackingConfig,
        restarted: bool,
    ) -> None:
        self.client = connect(uri)
        self.run_id = run_id
        self.name = name
        self.tracking = tracking
        self.spool = Path(storage) / "spool" / f"{name}.jsonl"
        self.restarted = restarted
        """The run may hold points already: its metric log skips the steps it holds."""
        self.done: dict[str, Any] | None = None
        """The summary of an earlier attempt that finished (then nothing is left to do)."""

    @classmethod
    def open(
        cls,
        *,
        uri: str,
        experiment: str,
        parent_run_id: str,
        storage: str,
        name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        tracking: TrackingConfig,
    ) -> ChildRun:
        """The run of trial `name` under `parent_run_id`, created with `params` and `tags`, or
        found again; then what its earlier attempts left: their spool, written first, and
        whether one of them finished (`done`). `storage` is the sweep's storage folder, whose
        `spool/` holds the points MLflow did not take yet."""
        client = connect(uri)
        run_id, existing = with_retries(
            lambda: get_or_create_child_run(client, experiment, parent_run_id, name, params, tags),
            what=f"{name}: opening the child run",
            timeout_s=tracking.outage_timeout_s,
        )
        run = cls(
            uri=uri,
            run_id=run_id,
            name=name,
            storage=storage,
            tracking=tracking,
            restarted=existing is not None,
        )
        if run.restarted:
            tags = existing.data.tags
            run._retry(lambda: end_waiting(client, run_id, tags), "ending its wait")
            run._write_spool()
            record = run._retry(lambda: read_record(run.client, run_id), "reading its run")
            if record.finished:
                run.done = record.summary()
        return run

    @classmethod
    def attach(
        cls, *, uri: str, run_id: str, name: str, storage: str, tracking: TrackingConfig
    ) -> ChildRun:
        """The run `open` opened in another process (a distributed trial's, for its rank 0):
        nothing is searched or created. What an earlier attempt spooled (a rank 0 that died,
        before Ray Train restarted the worker group) is written first, and its metric log
        skips the steps the run already holds."""
        run = cls(
            uri=uri, run_id=run_id, name=name, storage=storage, tracking=tracking, restarted=True
        )
        run._write_spool()
        return run

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return with_retries(
            call, what=f"{self.name}: {what}", timeout_s=self.tracking.outage_timeout_s
        )

    def _write_spool(self) -> None:
        self._retry(lambda: replay_spool(self.client, self.spool), "writing its spool")

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
            every_s=self.tracking.log_every_s,
            spool=self.spool,
            skip_through=skip_through,
        )

    def finish(self, log: MetricLog, summary: dict[str, Any]) -> bool:
        """Log the summary, then the status, and mark the run ended (rank 0, both paths).
        A server that stays down gets them later, from the spool. True when everything
        reached MLflow now."""
        tags = {STATUS_TAG: summary[m.STATUS]}
        if summary.get("reason"):
            tags[REASON_TAG] = summary["reason"]
        timeout = self.tracking.outage_timeout_s
        if not log.close(summary=summary_metrics(summary), tags=tags, timeout_s=timeout):
            return False
        status = summary[m.STATUS]
        self._retry(lambda: end_trial_run(self.client, self.run_id, status), "marking it")
        return True

    def note_set_aside(self, notes: list[str]) -> None:
        """Say which checkpoints a restart found unreadable and set aside: on the trial's log
        and in the run's `scalesweep.checkpoint_set_aside` tag (added to an earlier one)."""
        for note in notes:
            print(f"{self.name}: {note}", flush=True)
        if notes:
            self._retry(
                lambda: note_checkpoints_set_aside(self.client, self.run_id, notes), "tagging it"
            )

    def note_error(self, error: BaseException) -> None:
        """Tag the run with the error this attempt raised, leaving it running (Tune may retry)."""
        self._retry(lambda: note_error(self.client, self.run_id, error), "tagging its error")

    def fail(self, error: BaseException) -> None:
        """Tag the run failed with `error` and mark it FAILED."""
        self._retry(lambda: mark_failed(self.client, self.run_id, error), "marking it failed")
