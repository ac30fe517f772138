"""What `--resume` compares: a digest of every trial's resolved config and of the search, so a
sweep file edited since the sweep started is refused instead of mixed into it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from scalesweep.errors import UserError
from scalesweep.experiment import Experiment
from scalesweep.sweep.plan import Plan


def plan_digests(experiment: Experiment, plan: Plan) -> dict[str, str]:
    """A digest per trial cell (its resolved config) and one for the search: what --resume
    compares, so an edited file is refused instead of mixed into the sweep."""

    def digest(value: Any) -> str:
        return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()

    digests = {t.name: digest(t.config.model_dump(mode="json")) for t in plan.trials}
    sampled = {k: s.to_yaml() for k, s in experiment.sampled_spaces().items()}
    digests["<search>"] = digest([sampled, experiment.config.search.model_dump(mode="json")])
    return digests


def check_unchanged(before: dict[str, str], now: dict[str, str], name: str) -> None:
    """Refuse to resume a sweep whose file changed: say which trials were added, removed or
    changed, and what to do."""
    if before == now:
        return
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    changed = sorted(k for k in set(before) & set(now) if before[k] != now[k])
    parts = [
        f"{what}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
        for what, keys in (("added", added), ("removed", removed), ("changed", changed))
        if keys
    ]
    raise UserError(
        f"--resume: the sweep file of {name!r} changed since the sweep started "
        f"({'; '.join(parts)}); resume it with the file it started with, or pass --restart "
        "to start it over (its MLflow runs are kept)"
    )
