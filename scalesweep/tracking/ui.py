"""The MLflow UI side of a sweep's MLflow contract: where a person lands and what they see there.

MLflow 3.x opens an experiment on its GenAI pages (traces, sessions, an empty overview) and shows
a sweep's parent run collapsed, without param or metric columns. Three things fix that, checked
in a real browser by tests/ui/:
- the URL parameter `workflowType=machine_learning` switches the UI to its model-training pages
  (the experiment tag `mlflow.experimentKind=custom_model_development` is also set: the UI reads
  it when its GenAI / model-training switch is turned off);
- a saved view, the UI's own experiment tag `mlflow.sharedViewState.<key>`: the child runs only,
  flat, with the swept params, final_val_loss, the largest attention logit, the last log Z and
  the status as columns, best first, its first chart `val/loss`. It is listed under "Views"
  and opened by `viewStateShareKey=<key>`;
- the sweep prints that URL in its closing lines.
MLflow has no way to make a view the default, or to save which parent runs are expanded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from scalesweep import metrics as m
from scalesweep.tracking.store import (
    ROLE_TAG,
    STATUS_TAG,
    TRIAL_ROLE,
    connect_existing,
    experiment_id,
    resolve_tracking_uri,
)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
TRIALS_VIEW = "scalesweep-trials"
"""The key of the saved view of the trials."""
UI_ADDRESS = "http://127.0.0.1:5000"
"""Where `mlflow ui` listens by default: the UI of a store that is a file."""
REPORT_ARTIFACT = "report/report.html"
"""The sweep's own report on its parent run (written when the sweep ends)."""


FIRST_CHART = m.VAL_LOSS
"""The chart the trials view opens on; the UI adds the other metrics' charts after it."""
VIEW_COLUMNS = (m.FINAL_VAL_LOSS, m.MAX_ATTN_LOGIT, m.FINAL_OUTPUT_LOGZ)
"""The summary metrics the trials view shows as columns: the loss, and the two diagnostics of
Wortsman et al. 2023 (is the attention logit growing, is log Z drifting)."""


def _first_chart() -> tuple[dict[str, object], dict[str, object]]:
    """(section, chart): a line chart of `FIRST_CHART` against step in a section of its own.
    The UI's own layout sorts sections by name (`perf`, `train`, `val`), so without this the
    validation loss comes last; with a chart set given, it only appends the missing ones."""
    section_name = FIRST_CHART.split("/")[0]
    section = {
        "uuid": f"scalesweep-{section_name}",
        "name": section_name,
        "display": True,
        "isReordered": True,
        "deleted": False,
        "isGenerated": True,
    }
    chart = {  # the fields of the UI's line chart card (RunsChartsLineCardConfig)
        "type": "LINE",
        "uuid": "scalesweep-first-chart",
        "metricSectionId": section["uuid"],
        "isGenerated": True,
        "deleted": False,
        "metricKey": FIRST_CHART,
        "displayName": FIRST_CHART,
        "selectedMetricKeys": [FIRST_CHART],
        "lineSmoothness": 0,
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "range": {},
        "xAxisKey": "step",
        "selectedXAxisMetricKey": "",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": True,
        "useGlobalLineSmoothing": True,
        "runsCountToCompare": 100,
    }
    return section, chart


def trials_view(params: Iterable[str]) -> dict[str, object]:
    """The UI state of the trials view: what the runs table filters, sorts and shows, and its
    first chart (`FIRST_CHART`)."""
    loss = f"metrics.`{m.FINAL_VAL_LOSS}`"
    section, chart = _first_chart()
    return {
        "searchFilter": f"tags.`{ROLE_TAG}` = '{TRIAL_ROLE}'",
        "orderByKey": loss,
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": [
            *(f"params.`{p}`" for p in params),
            *(f"metrics.`{key}`" for key in VIEW_COLUMNS),
            f"tags.`{STATUS_TAG}`",
        ],
        "compareRunSections": [section],
        "compareRunCharts": [chart],
        "isAccordionReordered": True,  # the UI appends the other sections after it, unsorted
        "runsHiddenMode": "SHOW_ALL",  # charts show every run, not the first 10
    }


def set_up_experiment(tracking_uri: str, experiment: str, params: Iterable[str]) -> str:
    """Create the sweep's experiment if needed, mark it as model training and save its trials
    view (`params`: the swept keys, shown as columns). Returns the experiment id."""
    client = connect_existing(tracking_uri)
    found = experiment_id(client, experiment)
    now = int(time.time() * 1000)
    saved = {  # the envelope the UI's "Views" menu lists
        "name": f"{experiment}: trials",
        "createdAt": now,
        "updatedAt": now,
        "state": json.dumps(trials_view(params)),
    }
    client.set_experiment_tag(found, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    client.set_experiment_tag(found, VIEW_TAG_PREFIX + TRIALS_VIEW, json.dumps(saved))
    return found


def ui_base(tracking_uri: str) -> str:
    """The UI's address: the tracking server itself, or `mlflow ui`'s default for a file store."""
    uri = resolve_tracking_uri(tracking_uri)
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS


def runs_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's trials view, on the UI's model-training pages."""
    return (
        f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={TRIALS_VIEW}"
    )


def report_url(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str:
    """The parent run's sweep report, rendered by the UI's artifact viewer."""
    return (
        f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs/{parent_run_id}"
        f"/artifacts/{REPORT_ARTIFACT}?workflowType=machine_learning"
    )
