"""The report a sweep writes on itself when it ends, with no separate command: its LR curves
and sensitivity, its training diagnostics and every trial's status, logged to the sweep's
parent run so that the MLflow UI shows a picture as soon as the sweep is over.

It is `scalesweep fit` restricted to the kinds a sweep can always answer, through the same
pipeline (`fit.pipeline.run_fits`, `write_report`), so it has the same shape as fit.json and
the full report. `scalesweep sweep` calls `sweep_report`.
"""

from __future__ import annotations

from pathlib import Path

SWEEP_REPORT_KINDS = ("lr-sensitivity", "diagnostics")
"""What a sweep reports on itself when it ends (`scalesweep fit` fits the rest); with `compare`
when it switches a boolean or categorical model/optim/schedule key at 2 or more budgets."""


def sweep_report(sweep: str, tracking_uri: str, parent_run_id: str, out: Path) -> Path:
    """The report a sweep writes when it ends, from this invocation's runs: the LR curves and
    sensitivity (when it swept the LR), the training diagnostics, every run's status, and the
    compute multiplier of a switched key (qk-layernorm, the schedule) measured at 2+ budgets.
    Written to `out` and logged to the parent run under `report/`; returns report.html."""
    from scalesweep import tracking
    from scalesweep.fit import FitData, FitOptions
    from scalesweep.fit.laws.compare.frontier import sweep_variant
    from scalesweep.fit.pipeline import headline_metrics, run_fits, write_report
    from scalesweep.fit.runs import apply_column_map
    from scalesweep.sources import CurveSource, read_table

    table = read_table(sweep, tracking_uri=tracking_uri, parent_run_id=parent_run_id)
    runs = apply_column_map(table, {})
    curves = CurveSource(sweep, tracking_uri, parent_run_id, table=table)
    data = FitData(runs, load_curves=curves.curves)
    variant = sweep_variant(runs)
    kinds = SWEEP_REPORT_KINDS + (("compare",) if variant else ())
    options = FitOptions(variant=variant)
    outcome = run_fits(data, kinds, options, source=sweep, kind="sweep")
    files = write_report(out, outcome, runs)
    tracking.log_fit_outputs(
        sweep,
        tracking_uri,
        parent_run_id=parent_run_id,
        files=files,
        headline=headline_metrics(outcome.fits),
        artifact_path="report",
    )
    return out / "report.html"
