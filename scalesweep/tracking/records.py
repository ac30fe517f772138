"""A trial's child run as the sweep reads it back: found by its trial id, or listed under its
parent, with its tags decoded once into a `TrialRecord`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scalesweep import metrics as m
from scalesweep.tracking.store import (
    BRANCH_TAG,
    CELL_TAG,
    OUTAGE_TAG,
    PARENT_TAG,
    RETRIES_TAG,
    ROLE_TAG,
    SAMPLED_TAG,
    SPOOLED_TAG,
    STATUS_TAG,
    TRIAL_ROLE,
    TRIAL_TAG,
    Client,
    search_all,
)


@dataclass(frozen=True)
class TrialRecord:
    """One child run of a sweep (a trial's or a cooldown branch's), decoded."""

    run_id: str
    name: str
    """The trial id (`scalesweep.trial_id`)."""
    cell: dict[str, Any] | None
    """Its grid cell (`scalesweep.cell`); None on a run that has no such tag."""
    sampled: dict[str, Any]
    """The searcher's sampled values (`scalesweep.sampled`); empty when there are none."""
    status: str
    """The `status` tag: running until the trial ends, then completed, diverged or failed."""
    metrics: dict[str, float]
    """The latest value of each metric (the summary metrics among them)."""
    run_status: str
    """MLflow's own status of the run: RUNNING, FINISHED, FAILED or KILLED."""
    branch_of: str | None = None
    """On a cooldown branch's run: its trunk's trial id."""

    @classmethod
    def of(cls, run: Any) -> TrialRecord:
        """The record of an MLflow run as `MlflowClient.get_run`/`search_runs` return it."""
        tags = run.data.tags
        cell = tags.get(CELL_TAG)
        return cls(
            run_id=str(run.info.run_id),
            name=tags.get(TRIAL_TAG, run.info.run_name),
            cell=None if cell is None else json.loads(cell),
            sampled=json.loads(tags.get(SAMPLED_TAG, "{}")),
            status=tags.get(STATUS_TAG, m.RUNNING),
            metrics=dict(run.data.metrics),
            run_status=run.info.status,
            branch_of=tags.get(BRANCH_TAG),
        )

    @property
    def finished(self) -> bool:
        """Completed or diverged: a result the searcher can be told."""
        return self.status in m.FINISHED_STATUSES

    def summary(self) -> dict[str, Any]:
        """Its metrics and its status, as a trial's summary holds them."""
        return {**self.metrics, m.STATUS: self.status}


def trial_tags(
    cell: Mapping[str, Any], sampled: Mapping[str, Any], branch_of: str | None = None
) -> dict[str, str]:
    """The tags a trial writes on its child run for `TrialRecord.of` to decode: its grid cell
    and sampled values as JSON (exact values, for resume), and a branch's trunk."""
    tags = {CELL_TAG: json.dumps(dict(cell)), SAMPLED_TAG: json.dumps(dict(sampled))}
    if branch_of is not None:
        tags[BRANCH_TAG] = branch_of
    return tags


def find_child_run(client: Client, experiment: str, parent_id: str, trial: str) -> Any:
    """The MLflow run of trial `trial` under the parent run `parent_id`, or None."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TRIAL_TAG}` = '{trial}'",
        max_results=2,
    )
    return runs[0] if runs else None


def child_runs(client: Client, experiment: str, parent_id: str) -> list[Any]:
    """Every trial run of one sweep invocation (the children of `parent_id`), as MLflow
    returns them."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    query = f"tags.`{ROLE_TAG}` = '{TRIAL_ROLE}' and tags.`{PARENT_TAG}` = '{parent_id}'"
    return search_all(client, found.experiment_id, query)


def trial_records(client: Client, experiment: str, parent_id: str) -> list[TrialRecord]:
    """Every trial run of one sweep invocation, decoded."""
    return [TrialRecord.of(run) for run in child_runs(client, experiment, parent_id)]


def read_record(client: Client, run_id: str) -> TrialRecord:
    """One child run, read again by its id."""
    return TrialRecord.of(client.get_run(run_id))


def outage_line(client: Client, experiment: str, parent_id: str) -> str | None:
    """One line on the tracking outages the sweep's trials lived through (their tags), or None:
    for the sweep's closing summary."""
    tags = [run.data.tags for run in child_runs(client, experiment, parent_id)]
    hit = [t for t in tags if RETRIES_TAG in t]
    if not hit:
        return None
    longest = max(float(t.get(OUTAGE_TAG, 0)) for t in hit)
    spooled = sum(t.get(SPOOLED_TAG) == "true" for t in hit)
    return (
        f"tracking: the server did not answer for up to {longest:.0f} s during {len(hit)} "
        f"trial(s) ({sum(int(t[RETRIES_TAG]) for t in hit)} failed sends); training went on, "
        f"{spooled} trial(s) kept points in the spool until it answered (tags {RETRIES_TAG}, "
        f"{OUTAGE_TAG}, {SPOOLED_TAG})"
    )
