"""Reading a sweep back: the runs table (one row per trial, what the fitter consumes), the
per-step curves of its trials, and the parent run that fit outputs go to. Nothing here writes
or creates anything (`store.connect_existing` refuses a store that is not there)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from scalesweep import metrics as m
from scalesweep.errors import UserError
from scalesweep.tracking.store import (
    PARENT_TAG,
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ROLE,
    TRIAL_ROLE,
    TRIAL_TAG,
    connect_existing,
    open_experiment,
    search_all,
)


def _param_column(values: pd.Series) -> pd.Series:
    """MLflow stores params as strings: "None" -> missing, "True"/"False" -> bool, numbers
    back to numbers when the whole column converts."""
    cleaned = values.where(values != "None", None)
    present = cleaned.dropna()
    if len(present) and present.isin(["True", "False"]).all():
        return cleaned.map({"True": True, "False": False, None: None})
    try:
        return pd.to_numeric(cleaned)
    except (ValueError, TypeError):
        return cleaned


def runs_table(
    experiment: str, tracking_uri: str | None, *, parent_run_id: str | None = None
) -> pd.DataFrame:
    """One row per trial child run of `experiment`: `sweep, trial_id, run_id, parent_run_id,
    status`, the summary metrics, then every param under its dotted name. By default the
    children of every parent (sweep invocation) of the experiment; `parent_run_id` restricts
    to one."""
    client = connect_existing(tracking_uri, experiment)
    found = open_experiment(client, experiment)
    query = f"tags.`{ROLE_TAG}` = '{TRIAL_ROLE}'"
    if parent_run_id is not None:
        query += f" and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    rows: list[dict[str, Any]] = []
    params: list[dict[str, str]] = []
    for run in search_all(client, found.experiment_id, query):
        tags = run.data.tags
        rows.append(
            {
                "sweep": experiment,
                "trial_id": tags.get(TRIAL_TAG, run.info.run_name),
                "run_id": run.info.run_id,
                "parent_run_id": tags.get(PARENT_TAG),
                m.STATUS: tags.get(STATUS_TAG, m.RUNNING),
                **{k: float(v) for k, v in run.data.metrics.items() if k in m.SUMMARY_METRICS},
            }
        )
        params.append(dict(run.data.params))
    base = pd.DataFrame(rows)
    if base.empty:
        return pd.DataFrame(columns=["sweep", "trial_id", "run_id", m.STATUS])
    raw = pd.DataFrame(params, index=base.index)
    converted = pd.DataFrame({c: _param_column(raw[c]) for c in sorted(raw.columns)})
    table = pd.concat([base, converted], axis=1)
    return table.sort_values("trial_id", kind="stable").reset_index(drop=True)


def latest_parent_run_id(experiment: str, tracking_uri: str | None) -> str:
    """The most recently started sweep (parent) run of `experiment`, where fit outputs go."""
    client = connect_existing(tracking_uri, experiment)
    found = open_experiment(client, experiment)
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise UserError(f"experiment {experiment!r} has no sweep (parent) run to log the fit to")
    return str(runs[0].info.run_id)


def curves(
    experiment: str,
    tracking_uri: str | None,
    *,
    keys: Iterable[str] = (m.VAL_LOSS, m.FLOPS),
    parent_run_id: str | None = None,
    statuses: Iterable[str] = (m.COMPLETED,),
    table: pd.DataFrame | None = None,
    cache: dict[tuple[str, str], dict[int, float]] | None = None,
) -> pd.DataFrame:
    """Per-step histories of the trials whose status is in `statuses`: `run_id, trial_id,
    status, step` and one column per metric in `keys`; a step is kept when every key was logged
    at it. `table`: the `runs_table` the caller has already read; a `cache` shared between
    calls fetches each (run, key) history once."""
    keys, statuses = tuple(keys), tuple(statuses)
    client = connect_existing(tracking_uri, experiment)
    if table is None:
        table = runs_table(experiment, tracking_uri, parent_run_id=parent_run_id)
    cache = {} if cache is None else cache
    chosen = [
        row for row in table.itertuples(index=False) if getattr(row, m.STATUS, None) in statuses
    ]
    for key in keys:
        _fetch_histories(
            client, [r.run_id for r in chosen if (r.run_id, key) not in cache], key, cache
        )
    # Columns built as lists and framed once: a DataFrame per run was 40 s of 60 on 6,830 runs.
    columns: dict[str, list[Any]] = {c: [] for c in ("run_id", "trial_id", m.STATUS, "step", *keys)}
    for row in chosen:
        histories = [cache[row.run_id, key] for key in keys]
        steps = sorted(set.intersection(*(set(h) for h in histories)))
        columns["run_id"] += [row.run_id] * len(steps)
        columns["trial_id"] += [row.trial_id] * len(steps)
        columns[m.STATUS] += [getattr(row, m.STATUS)] * len(steps)
        columns["step"] += steps
        for key, history in zip(keys, histories, strict=True):
            columns[key] += [history[s] for s in steps]
    if not columns["step"]:
        return pd.DataFrame(columns=["run_id", "trial_id", m.STATUS, "step", *keys])
    return pd.DataFrame(columns)


BULK_CHUNK = 500
"""Run ids per bulk query (SQLite's older builds allow 999 bound variables)."""


def _fetch_histories(
    client: Any, run_ids: list[str], key: str, cache: dict[tuple[str, str], dict[int, float]]
) -> None:
    """`key`'s history of each of `run_ids` into `cache` as {step: value} (a step logged twice
    keeps its latest value). A SQL store answers one query per 500 runs; any other store (an
    MLflow server) one request per run. One query per run made reading 10,000 runs' curves
    take minutes (benchmarks/fit_scale.py)."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    if bulk is None:
        for run_id in run_ids:
            found = client.get_metric_history(run_id, key)
            cache[run_id, key] = {x.step: x.value for x in found}
        return
    for start in range(0, len(run_ids), BULK_CHUNK):
        chunk = run_ids[start : start + BULK_CHUNK]
        histories: dict[str, dict[int, float]] = {run_id: {} for run_id in chunk}
        # Ordered by run, then timestamp: a later point at the same step replaces an earlier.
        for point in bulk(chunk, key, max_results=2**62):
            histories[point.run_id][point.step] = point.value
        for run_id, history in histories.items():
            cache[run_id, key] = history
