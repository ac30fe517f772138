"""The inputs of `scalesweep fit`: the runs table and the per-step curves, from a file or an
MLflow experiment (through `scalesweep.tracking`). This is the fitter's edge: everything in
`scalesweep.fit` is a pure function of what these return.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def is_file_source(source: str) -> bool:
    return Path(source).suffix.lower() in (".csv", ".parquet")


def read_runs(
    source: str,
    *,
    tracking_uri: str | None = None,
    columns: dict[str, str] | None = None,
    parent_run_id: str | None = None,
) -> Any:
    """The runs table from a `.csv`, a `.parquet`, or else an MLflow experiment (sweep) name.

    `columns` maps canonical names to source columns (`{"params": "Model Size"}`), then the
    aliases of `fit.runs` fill canonical columns that are still absent. Nothing is dropped.
    """
    import pandas as pd

    from scalesweep.errors import UserError
    from scalesweep.fit.runs import apply_column_map

    if is_file_source(source):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"SOURCE: the file {path} does not exist")
        try:
            frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
        except Exception as error:  # pandas raises many types for a malformed file
            raise UserError(f"SOURCE: cannot read {path} as {path.suffix[1:]} ({error})") from None
    else:
        from scalesweep import tracking

        frame = tracking.runs_table(source, tracking_uri, parent_run_id=parent_run_id)
    return apply_column_map(frame, columns or {})


def load_curves(args: argparse.Namespace, keys: tuple[str, ...], cache: Any = None) -> Any:
    """Per-step curves: one row per (run, step) with `run_id`, `step` and the metric `keys`
    as columns, from --curves, else the MLflow histories of the completed and diverged runs
    with their status (None for a file source without --curves)."""
    if args.curves is not None:
        return _curves_file(args.curves, ("run_id", "step", *keys))
    if is_file_source(args.source):
        return None
    from scalesweep import metrics as m
    from scalesweep import tracking

    curves = tracking.curves(
        args.source,
        args.tracking_uri,
        keys=keys,
        parent_run_id=args.parent_run_id,
        statuses=m.FINISHED_STATUSES,
        cache=cache,
    )
    return None if curves.empty else curves


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


def envelope_curves(args: argparse.Namespace, cache: Any = None) -> Any:
    """Per-step curves for Approach 1 (run_id, params, flops, loss): --curves, or the MLflow
    histories of an experiment source; None when there are none. `cache`: see
    `tracking.curves`."""
    import pandas as pd

    from scalesweep import metrics as m
    from scalesweep.errors import UserError

    if args.curves is not None:
        if not args.curves.is_file():
            raise UserError(f"--curves: the file {args.curves} does not exist")
        return pd.read_csv(args.curves)
    if is_file_source(args.source):
        return None
    from scalesweep import tracking

    curves = tracking.curves(
        args.source, args.tracking_uri, parent_run_id=args.parent_run_id, cache=cache
    )
    if curves.empty:
        return None
    table = tracking.runs_table(args.source, args.tracking_uri, parent_run_id=args.parent_run_id)
    sizes = table.set_index("run_id")[m.PARAMS]
    return curves.rename(columns={m.VAL_LOSS: "loss", m.FLOPS: "flops"}).assign(
        params=lambda frame: frame["run_id"].map(sizes)
    )
