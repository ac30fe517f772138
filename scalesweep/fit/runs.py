"""Load a runs table (MLflow experiment, CSV or Parquet) and check it before a fit.

One row per trial. The sweep writes MLflow in the layout of `scalesweep.sweep.tracking`; this
module reads it back. Everything else in `scalesweep.fit` is a pure function of the DataFrame
returned here, so I/O (MLflow, files) stays at this edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from scalesweep.errors import UserError

# Canonical column <- the names other tools use for it, applied only when the canonical column
# is absent. `N`/`D` are the Step Law CSV's names; the dotted names are the sweep's params.
ALIASES: dict[str, tuple[str, ...]] = {
    "loss": ("final_val_loss",),
    "lr": ("optim.lr",),
    "width": ("model.width",),
    "bs": ("train.batch_size",),
    "params": ("N",),
    "tokens": ("D",),
}
# Statuses written by the sweep; diverged and failed runs are kept in the table and counted.
BAD_STATUSES = ("diverged", "failed")
ROLE_TAG = "scalesweep.role"
TRIAL_TAG = "scalesweep.trial_id"
PARENT_TAG = "mlflow.parentRunId"


class Prepared(NamedTuple):
    """A runs table ready for one fit: canonical columns present, checked, bad runs set aside."""

    frame: pd.DataFrame
    """Rows the fit uses (completed runs, or every run when there is no `status` column)."""
    excluded: pd.DataFrame
    """Diverged or failed runs: not fitted, but counted and reported, never silently dropped."""
    notes: tuple[str, ...]
    """What was derived or assumed (e.g. tokens = flops / (6·params)); printed by the CLI."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def parse_column_map(items: Iterable[str]) -> dict[str, str]:
    """`["params=Model Size", ...]` (the CLI's `--col`) -> {"params": "Model Size"}."""
    mapping: dict[str, str] = {}
    for item in items:
        canonical, sep, source = item.partition("=")
        if not sep or not canonical.strip() or not source.strip():
            raise UserError(f"--col: `canonical=source` must hold, but got {item!r}")
        mapping[canonical.strip()] = source.strip()
    return mapping


def read_runs(
    source: str | Path,
    *,
    tracking_uri: str | None = None,
    columns: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> pd.DataFrame:
    """The runs table from a `.csv`, a `.parquet`, or else an MLflow experiment (sweep) name.

    `columns` maps canonical names to source columns (`{"params": "Model Size"}`), then the
    `ALIASES` fill canonical columns that are still absent. Nothing is dropped here.
    """
    text = str(source)
    suffix = Path(text).suffix.lower()
    if suffix in (".csv", ".parquet"):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"SOURCE: the file {path} does not exist")
        try:
            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        except Exception as error:  # pandas raises many types for a malformed file
            raise UserError(f"SOURCE: cannot read {path} as {suffix[1:]} ({error})") from None
    else:
        frame = runs_table_from_mlflow(text, tracking_uri, parent_run_id=parent_run_id)
    return apply_column_map(frame, columns or {})


def apply_column_map(frame: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """Copy source columns to canonical names: explicit `columns` first, then `ALIASES`."""
    out = frame.copy()
    for canonical, source in columns.items():
        if source not in out.columns:
            raise UserError(
                f"--col {canonical}={source}: the table has no column {source!r}; "
                f"its columns are {sorted(map(str, out.columns))}"
            )
        out[canonical] = out[source]
    for canonical, sources in ALIASES.items():
        if canonical in out.columns:
            continue
        for source in sources:
            if source in out.columns:
                out[canonical] = out[source]
                break
    return out


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


def _client(tracking_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    from scalesweep.sweep.tracking import resolve_tracking_uri

    return MlflowClient(resolve_tracking_uri(tracking_uri))


def _experiment(client: Any, experiment: str) -> Any:
    try:
        found = client.get_experiment_by_name(experiment)
    except Exception as error:
        raise UserError(
            f"cannot open the MLflow store at {client.tracking_uri} ({error})"
        ) from None
    if found is None:
        names = [e.name for e in client.search_experiments(max_results=50)]
        raise UserError(
            f"no MLflow experiment named {experiment!r} at {client.tracking_uri} "
            f"(SOURCE is read as an experiment unless it ends in .csv or .parquet); "
            f"experiments there: {names}"
        )
    return found


def _search_all(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_table_from_mlflow(
    experiment: str, tracking_uri: str | None, *, parent_run_id: str | None = None
) -> pd.DataFrame:
    """One row per trial child run of `experiment`: `sweep, trial_id, run_id, status`, the
    summary metrics, then every param under its dotted name. By default the children of every
    parent (sweep invocation) of the experiment; `parent_run_id` restricts to one."""
    client = _client(tracking_uri)
    found = _experiment(client, experiment)
    query = f"tags.`{ROLE_TAG}` = 'trial'"
    if parent_run_id is not None:
        query += f" and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    rows: list[dict[str, Any]] = []
    params: list[dict[str, str]] = []
    for run in _search_all(client, found.experiment_id, query):
        tags = run.data.tags
        rows.append(
            {
                "sweep": experiment,
                "trial_id": tags.get(TRIAL_TAG, run.info.run_name),
                "run_id": run.info.run_id,
                "parent_run_id": tags.get(PARENT_TAG),
                "status": tags.get("status", "running"),
                **{k: float(v) for k, v in run.data.metrics.items() if "/" not in k},
            }
        )
        params.append(dict(run.data.params))
    base = pd.DataFrame(rows)
    if base.empty:
        return pd.DataFrame(columns=["sweep", "trial_id", "run_id", "status"])
    raw = pd.DataFrame(params, index=base.index)
    converted = pd.DataFrame({c: _param_column(raw[c]) for c in sorted(raw.columns)})
    table = pd.concat([base, converted], axis=1)
    return table.sort_values("trial_id", kind="stable").reset_index(drop=True)


def latest_parent_run_id(experiment: str, tracking_uri: str | None) -> str:
    """The most recently started sweep (parent) run of `experiment`, where fit outputs go."""
    client = _client(tracking_uri)
    found = _experiment(client, experiment)
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise UserError(f"experiment {experiment!r} has no sweep (parent) run to log the fit to")
    return str(runs[0].info.run_id)


def curves_from_mlflow(
    experiment: str,
    tracking_uri: str | None,
    *,
    loss_key: str = "val/loss",
    flops_key: str = "train/flops",
    parent_run_id: str | None = None,
) -> pd.DataFrame:
    """Per-step training curves of every completed trial: `run_id, params, step, flops, loss`
    (for isoFLOP Approach 1). Steps with both metrics logged are kept."""
    client = _client(tracking_uri)
    table = runs_table_from_mlflow(experiment, tracking_uri, parent_run_id=parent_run_id)
    parts: list[pd.DataFrame] = []
    for row in table.itertuples(index=False):
        if getattr(row, "status", None) != "completed" or "params" not in table.columns:
            continue
        loss = {m.step: m.value for m in client.get_metric_history(row.run_id, loss_key)}
        flops = {m.step: m.value for m in client.get_metric_history(row.run_id, flops_key)}
        steps = sorted(set(loss) & set(flops))
        if steps:
            parts.append(
                pd.DataFrame(
                    {
                        "run_id": row.run_id,
                        "params": float(row.params),
                        "step": steps,
                        "flops": [flops[s] for s in steps],
                        "loss": [loss[s] for s in steps],
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=["run_id", "params", "step", "flops", "loss"])
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------


def _describe(frame: pd.DataFrame, index: Any) -> str:
    """`row 3 (trial_id=...)`: enough for a user to find the run."""
    where = f"row {index}"
    if "trial_id" in frame.columns:
        where += f" (trial_id={frame.at[index, 'trial_id']})"
    return where


def prepare(
    frame: pd.DataFrame,
    *,
    kind: str,
    numeric: Sequence[str],
    positive: Sequence[str] = (),
    min_rows: int = 1,
) -> Prepared:
    """Check the columns a fit of `kind` needs, derive `tokens` from `flops` when absent, and
    set diverged/failed runs aside (counted in `excluded`).

    Errors name the column: missing, non-numeric, NaN in a run the fit uses, non-positive
    where `positive`, or fewer than `min_rows` usable runs.
    """
    out = frame.copy()
    notes: list[str] = []
    if "tokens" in numeric and "tokens" not in out.columns:
        if "flops" in out.columns and "params" in out.columns:
            out["tokens"] = pd.to_numeric(out["flops"], errors="coerce") / (
                6.0 * pd.to_numeric(out["params"], errors="coerce")
            )
            notes.append("`tokens` was absent: derived as flops / (6·params) (C = 6ND)")
        else:
            raise UserError(
                f"{kind} fit needs a column `tokens` (or `flops` and `params` to derive "
                f"tokens = flops / (6·params)), but the table has columns "
                f"{sorted(map(str, out.columns))}; map one with --col tokens=SOURCE"
            )
    missing = [c for c in numeric if c not in out.columns]
    if missing:
        hint = " ".join(f"--col {c}=SOURCE" for c in missing)
        raise UserError(
            f"{kind} fit needs column(s) {missing}, but the table has columns "
            f"{sorted(map(str, out.columns))}; map them with {hint}"
        )
    if "status" in out.columns:
        bad = out["status"].astype(str).isin(BAD_STATUSES)
        excluded, out = out[bad], out[~bad]
        if len(excluded):
            counts = excluded["status"].value_counts().to_dict()
            notes.append(f"{kind}: {len(excluded)} run(s) not fitted: {counts}")
    else:
        excluded = out.iloc[0:0]
    for column in numeric:
        values = pd.to_numeric(out[column], errors="coerce")
        bad_text = values.isna() & out[column].notna()
        if bad_text.any():
            index = out.index[bad_text][0]
            raise UserError(
                f"column `{column}` must be numeric, but got {out.at[index, column]!r} in "
                f"{_describe(out, index)}"
            )
        nonfinite = ~np.isfinite(values.to_numpy(dtype=float))
        if nonfinite.any():
            index = out.index[nonfinite][0]
            raise UserError(
                f"column `{column}` must be a finite number for every run the {kind} fit uses, "
                f"but got {values[index]} in {_describe(out, index)}"
            )
        if column in positive and (values <= 0).any():
            index = out.index[values <= 0][0]
            raise UserError(
                f"`{column} > 0` must hold for every run, but got ({column}={values[index]}) in "
                f"{_describe(out, index)}"
            )
        out[column] = values.astype(float)
    if len(out) < min_rows:
        raise UserError(
            f"{kind} fit needs at least {min_rows} usable runs (columns {list(numeric)}), but "
            f"got {len(out)} ({len(excluded)} diverged/failed set aside)"
        )
    return Prepared(out.reset_index(drop=True), excluded.reset_index(drop=True), tuple(notes))


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
