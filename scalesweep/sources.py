"""The inputs of the fitter: the runs table and the per-step curves, from a file or an MLflow
experiment (through `scalesweep.tracking`). This is the fitter's edge: everything in
`scalesweep.fit` is a pure function of what these return. Read by `scalesweep fit` and by the
report a sweep writes on itself (`sweep.report`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def is_file_source(source: str) -> bool:
    return Path(source).suffix.lower() in (".csv", ".parquet")


def read_table(
    source: str, *, tracking_uri: str | None = None, parent_run_id: str | None = None
) -> Any:
    """The runs table as the source has it: a `.csv`, a `.parquet`, or else an MLflow
    experiment (sweep) name (`tracking.runs_table`)."""
    import pandas as pd

    from scalesweep.errors import UserError

    if not is_file_source(source):
        from scalesweep import tracking

        return tracking.runs_table(source, tracking_uri, parent_run_id=parent_run_id)
    path = Path(source)
    if not path.is_file():
        raise UserError(f"SOURCE: the file {path} does not exist")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as error:  # pandas raises many types for a malformed file
        raise UserError(f"SOURCE: cannot read {path} as {path.suffix[1:]} ({error})") from None


def read_runs(
    source: str,
    *,
    tracking_uri: str | None = None,
    columns: dict[str, str] | None = None,
    parent_run_id: str | None = None,
) -> Any:
    """The runs table (`read_table`) with canonical columns: `columns` maps canonical names to
    source columns (`{"params": "Model Size"}`), then the aliases of `fit.runs` fill canonical
    columns that are still absent. Nothing is dropped.
    """
    from scalesweep.fit.runs import apply_column_map

    table = read_table(source, tracking_uri=tracking_uri, parent_run_id=parent_run_id)
    return apply_column_map(table, columns or {})


@dataclass
class CurveSource:
    """Where the per-step curves come from: a `--curves` file, else the MLflow histories of
    the sweep `source` (none for a file source). Each (run, key) history is fetched once, and
    the runs table is read once (or given, when the caller has read it)."""

    source: str
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    curves_file: Path | None = None
    table: Any = None
    """The sweep's runs table as `tracking.runs_table` gives it (read on first use if None)."""
    histories: dict[Any, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, args: argparse.Namespace, table: Any = None) -> CurveSource:
        """The source `scalesweep fit` was given."""
        return cls(args.source, args.tracking_uri, args.parent_run_id, args.curves, table)

    def curves(self, keys: tuple[str, ...]) -> Any:
        """One row per (run, step) with `run_id`, `step` and the metric `keys` as columns:
        the --curves file, else the histories of the completed and diverged runs with their
        status; None when there are none."""
        from scalesweep import metrics as m

        if self.curves_file is not None:
            return _curves_file(self.curves_file, ("run_id", "step", *keys))
        found = self._histories(keys, m.FINISHED_STATUSES)
        return None if found is None or found.empty else found

    def _histories(self, keys: tuple[str, ...], statuses: tuple[str, ...]) -> Any:
        if is_file_source(self.source):
            return None
        from scalesweep import tracking

        if self.table is None:
            self.table = read_table(
                self.source, tracking_uri=self.tracking_uri, parent_run_id=self.parent_run_id
            )
        return tracking.curves(
            self.source,
            self.tracking_uri,
            keys=keys,
            parent_run_id=self.parent_run_id,
            statuses=statuses,
            table=self.table,
            cache=self.histories,
        )


def _curves_file(path: Path, columns: tuple[str, ...]) -> Any:
    import pandas as pd

    from scalesweep.errors import UserError

    if not path.is_file():
        raise UserError(f"--curves: the file {path} does not exist")
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"--curves {path}: needs column(s) {missing}, but has {list(frame.columns)}"
        )
    return frame
