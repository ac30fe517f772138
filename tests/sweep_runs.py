"""Sweep-shaped runs written to MLflow exactly as a sweep writes them, for tests of the fitter.

`write_sweep` goes through the same named operations as `scalesweep sweep`
(`tracking.start_parent_run`; per trial `tracking.ChildRun.open` with dotted params and the
cell/sampled tags, its `metric_log()` for per-step metrics, `finish` for the summary and the
status; `tracking.finish_parent`), so a test that reads the runs back with `scalesweep fit`
exercises the real MLflow round trip: params as strings, planned vs trained tokens, diverged
runs without `final_val_loss`, curves as metric histories.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.config import TrackingConfig

SETTINGS = TrackingConfig(log_every_s=60, outage_timeout_s=30)
"""Batches sent at the end of each trial; a store that does not answer within 30 s fails."""


def write_sweep(
    uri: str,
    name: str,
    trials: Sequence[Mapping[str, Any]],
    *,
    spool_dir: Path,
) -> str:
    """Write one sweep invocation; returns the parent run id.

    Each trial is a mapping with:
      - `params`: dotted run params (`model.width`, `optim.lr`, `train.tokens`, ...);
      - `summary`: summary fields (`init_loss`, `final_val_loss`, `params`, `tokens`, ...),
        None values left out as the trainer leaves them out;
      - `status`: completed | diverged | failed;
      - optional `curve`: a list of (step, {metric: value}) logged as per-step metrics;
      - optional `name`: the trial id (default: trial-<index>).
    """
    client = tracking.connect(uri)
    parent = tracking.start_parent_run(client, name, params={}, tags={}, artifacts={})
    for index, trial in enumerate(trials):
        trial_id = str(trial.get("name", f"trial-{index:04d}"))
        params = dict(trial["params"])
        run = tracking.ChildRun.open(
            uri=uri,
            experiment=name,
            parent_run_id=parent,
            storage=str(spool_dir),
            name=trial_id,
            params=params,
            tags=tracking.trial_tags(params, {}),
            tracking=SETTINGS,
        )
        log = run.metric_log()
        for step, values in trial.get("curve", ()):
            log.on_log(step, dict(values))
        summary = {k: v for k, v in trial["summary"].items() if v is not None}
        assert run.finish(log, {**summary, m.STATUS: trial.get("status", m.COMPLETED)})
    tracking.finish_parent(client, parent, finished=True)
    return parent


def fit_json(args: Sequence[str], capsys: Any) -> dict:
    """`scalesweep fit ARGS --json` (exit 0 asserted, stderr shown otherwise) as a dict."""
    from scalesweep.commands.fit import main

    code = main(["fit", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)
