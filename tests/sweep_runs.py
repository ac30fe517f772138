"""Sweep-shaped runs written to MLflow exactly as a sweep writes them, for tests of the fitter.

`write_sweep` goes through the same calls as `scalesweep sweep` (`tracking.start_parent_run`,
`tracking.get_or_create_child_run` with dotted params and the cell/sampled tags, a `MetricLog`
for per-step metrics, the summary and the status tags at the end), so a test that reads the
runs back with `scalesweep fit` exercises the real MLflow round trip: params as strings,
planned vs trained tokens, diverged runs without `final_val_loss`, curves as metric histories.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.metric_log import MetricLog


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
    client = MlflowClient(uri)
    parent = tracking.start_parent_run(client, name, params={}, tags={}, artifacts={})
    for index, trial in enumerate(trials):
        trial_id = str(trial.get("name", f"trial-{index:04d}"))
        params = dict(trial["params"])
        tags = {tracking.CELL_TAG: json.dumps(params), tracking.SAMPLED_TAG: json.dumps({})}
        run_id, _ = tracking.get_or_create_child_run(client, name, parent, trial_id, params, tags)
        log = MetricLog(client, run_id, every_s=60, spool=spool_dir / f"{trial_id}.jsonl")
        for step, values in trial.get("curve", ()):
            log.on_log(step, dict(values))
        summary = {k: v for k, v in trial["summary"].items() if v is not None}
        status = {tracking.STATUS_TAG: trial.get("status", m.COMPLETED)}
        assert log.close(summary=tracking.summary_metrics(summary), tags=status, timeout_s=30)
        client.set_terminated(run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return parent


def fit_json(args: Sequence[str], capsys: Any) -> dict:
    """`scalesweep fit ARGS --json` (exit 0 asserted, stderr shown otherwise) as a dict."""
    from scalesweep.commands.fit import main

    code = main(["fit", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)
