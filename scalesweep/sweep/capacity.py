"""A distributed trial that lost a worker (its node died) and waits for the capacity to restart
its worker group says so: in its child run's tags and on the sweep's progress line.

Ray Train restarts a failed worker group from the trial's latest checkpoint, but only once the
cluster can place every worker again; until then it waits, retrying, with nothing to show for
it. `CapacityWatch` is a Train controller callback (it runs in the trial's controller): on a
restart that waits for resources it tags the run with why (WAITING_TAG: what the workers need
and what the cluster has free), reports the wait to Tune (WAITING_S, which the progress line
shows), and when the workers run again records the wait (WAITS_TAG) and clears the tag.

A trial whose own process died (with its node) is restarted by Tune. Its Train controller died
too, and Ray 2.60 may leave the placement group of that controller's workers reserved (its
cleaner did not remove it in our two-node test): once a node joins, the group holds the
capacity the restarted trial waits for. So `CapacityWatch` records the group of each worker
group it starts, and a restarted trial removes the one its previous attempt left
(`remove_leftover_placement_group`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.train.v2._internal.execution.callback import (
    ControllerCallback,
    ReportCallback,
    WorkerGroupCallback,
)
from ray.train.v2._internal.execution.controller.state import (
    ReschedulingState,
    RunningState,
    SchedulingState,
)

from scalesweep import tracking
from scalesweep.config import ResourcesConfig

WAITING_S = "waiting_for_capacity_s"
"""Key of a trial's Tune result: seconds it has waited for capacity to restart (0 otherwise)."""


def short_of(resources: ResourcesConfig, free: dict[str, float]) -> bool:
    """Whether the cluster's free resources cannot hold the worker group (pure; by totals, so a
    group that fits in total but on no node is not seen)."""
    workers = resources.workers_per_trial
    cpus, gpus = workers * resources.cpus_per_worker, workers * resources.gpus_per_worker
    return free.get("CPU", 0.0) + 1e-9 < cpus or free.get("GPU", 0.0) + 1e-9 < gpus


def need_and_free(resources: ResourcesConfig, free: dict[str, float], nodes: int) -> str:
    """What the worker group needs against what the cluster has free (pure)."""
    need = f"{resources.workers_per_trial} workers × {resources.cpus_per_worker:g} CPU"
    have = f"{free.get('CPU', 0.0):g} CPU"
    if resources.gpus_per_worker:
        need += f" + {resources.gpus_per_worker:g} GPU"
        have += f", {free.get('GPU', 0.0):g} GPU"
    return f"needs {need}; {have} free on {nodes} node(s)"


def shortfall(resources: ResourcesConfig) -> tuple[bool, str]:
    """Whether the cluster's free resources are short of the worker group now, and what it
    needs against what is free (`need_and_free`)."""
    import ray

    from scalesweep.sweep.preflight import alive_nodes

    free = ray.available_resources()
    return short_of(resources, free), need_and_free(resources, free, len(alive_nodes()))


def restart_tagger(
    uri: str, experiment: str, parent_id: str, resources: ResourcesConfig, outage_s: float
) -> Callable[[str], None]:
    """For the driver: tag the child run of a trial Tune restarts (its process was lost, with
    its node or killed) with why it waits; the restarted trial ends the wait
    (`ChildRun.open`)."""

    def tag(trial: str) -> None:
        why = f"its process was lost; restarts when placed: {shortfall(resources)[1]}"
        client = tracking.connect(uri)
        with contextlib.suppress(Exception):  # the progress line says it anyway
            tracking.with_retries(
                lambda: tracking.mark_restarting(client, experiment, parent_id, trial, why),
                what=f"{trial}: tagging its restart",
                timeout_s=min(outage_s, 10.0),
            )

    return tag


def remove_leftover_placement_group(record: Path) -> str | None:
    """Remove the placement group recorded in `record` if it is still reserved: for a trial
    that starts its Train run again after its previous attempt's process (and controller)
    died. Returns what it did, or None."""
    if not record.is_file():
        return None
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import (
        PlacementGroup,
        placement_group_table,
        remove_placement_group,
    )

    group = PlacementGroup(PlacementGroupID(bytes.fromhex(record.read_text().strip())))
    state = placement_group_table(group).get("state")
    if state in (None, "REMOVED"):
        return None
    remove_placement_group(group)
    return f"removed the placement group ({state}) its previous attempt's workers held"


class CapacityWatch(ControllerCallback, WorkerGroupCallback, ReportCallback):
    """Train controller callback of a distributed trial (picklable: it travels to the
    controller). Tracking calls wait out an outage for at most `outage_s`; the placement group
    of each worker group started is written to `record`."""

    def __init__(
        self,
        *,
        uri: str,
        run_id: str,
        resources: ResourcesConfig,
        outage_s: float,
        record: Path,
    ) -> None:
        from ray.train._internal.session import get_session

        self.uri, self.run_id, self.resources, self.outage_s = uri, run_id, resources, outage_s
        self.record = record
        session = get_session()
        # Tune's queue of the trial's results (the one Ray's TuneReportCallback feeds).
        self.queue = session._get_or_create_inter_actor_queue() if session else None
        self.ran = False
        self.last: dict[str, Any] | None = None
        self.since: float | None = None
        """time.time() when the current wait began."""

    def after_worker_group_start(self, worker_group: Any) -> None:
        group = worker_group.get_worker_group_state().placement_group_handle.placement_group
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(group.id.hex())

    def after_report(self, training_report: Any, metrics: list[dict[str, Any]]) -> None:
        self.last = dict(metrics[0]) if metrics else self.last

    def after_controller_state_update(self, previous_state: Any, current_state: Any) -> None:
        if isinstance(current_state, RunningState):
            self._resumed()
            self.ran = True
        elif self.ran and isinstance(current_state, SchedulingState | ReschedulingState):
            self._waiting()

    def _waiting(self) -> None:
        short, why = shortfall(self.resources)  # a dead node counts until Ray marks it dead
        if self.since is None and not short:
            return  # a restart that can place its workers now: no wait to speak of
        self.since = self.since or time.time()
        waited = time.time() - self.since
        print(f"waiting for capacity to restart the workers ({waited:.0f} s): {why}", flush=True)
        since = self.since
        self._tracking(lambda client: tracking.start_waiting(client, self.run_id, why, since))
        self._report(waited)

    def _resumed(self) -> None:
        if self.since is not None:
            self._tracking(lambda client: tracking.end_waiting(client, self.run_id))
            self.since = None

    def _tracking(self, call: Callable[[tracking.Client], None]) -> None:
        client = tracking.connect(self.uri)
        tracking.with_retries(
            lambda: call(client), what="tagging a wait for capacity", timeout_s=self.outage_s
        )

    def _report(self, waited: float) -> None:
        """The trial's last result again, with the wait: Tune needs the metric in every
        result, and the progress line reads WAITING_S."""
        if self.queue is None or self.last is None:
            return
        with contextlib.suppress(Exception):  # a full queue: the next state update says it
            self.queue.put({**self.last, WAITING_S: waited}, timeout=10)
