"""The report a sweep writes on itself when it ends, with no separate command: its LR curves
and sensitivity, its training diagnostics and every trial's status, logged to the sweep's
parent run so that the MLflow UI shows a picture as soon as the sweep is over.

It is `scalesweep fit` restricted to the kinds a sweep can always answer, through the same
functions (`fit_all`, `fit_result`, `write_report`), so it has the same shape as fit.json and
the full report. Not a subcommand: `scalesweep sweep` calls `sweep_report`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scalesweep.commands.fit import (
    fit_all,
    fit_result,
    headline_metrics,
    json_default,
    write_report,
)

SWEEP_REPORT_KINDS = ("lr-sensitivity", "diagnostics")
"""What a sweep reports on itself when it ends (`scalesweep fit` fits the rest)."""


def sweep_report(sweep: str, tracking_uri: str, parent_run_id: str, out: Path) -> Path:
    """The report a sweep writes when it ends, from this invocation's runs: the LR curves and
    sensitivity (when it swept the LR), the training diagnostics and every run's status.
    Written to `out` and logged to the parent run under `report/`; returns report.html."""
    from scalesweep import metrics as m
    from scalesweep import tracking
    from scalesweep.fit.kinds import FitData, FitOptions
    from scalesweep.fit.runs import apply_column_map

    table = tracking.runs_table(sweep, tracking_uri, parent_run_id=parent_run_id)
    runs = apply_column_map(table, {})

    def load_curves(keys: tuple[str, ...]) -> Any:
        found = tracking.curves(
            sweep,
            tracking_uri,
            keys=keys,
            parent_run_id=parent_run_id,
            statuses=m.FINISHED_STATUSES,
        )
        return None if found.empty else found

    names: tuple[str, ...] = SWEEP_REPORT_KINDS
    skipped: dict[str, str] = {}
    if "lr" not in runs.columns or runs["lr"].nunique() < 2:
        names = tuple(n for n in names if n != "lr-sensitivity")
        skipped["lr-sensitivity"] = "the sweep ran one learning rate"
    data = FitData(runs, load_curves=load_curves)
    fits, more, notes = fit_all(data, names, FitOptions(), strict=False)
    result = fit_result(sweep, "sweep", runs, fits, {**skipped, **more}, notes)
    text = json.dumps(result, indent=2, allow_nan=False, default=json_default)
    files = write_report(out, fits, runs, result, text)
    tracking.log_fit_outputs(
        sweep,
        tracking_uri,
        parent_run_id=parent_run_id,
        files=files,
        headline=headline_metrics(fits),
        artifact_path="report",
    )
    return out / "report.html"
