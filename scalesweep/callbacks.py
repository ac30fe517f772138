"""How the outside hears from a training run: a `Callback` with three hooks.

The training loop (`scalesweep.train.Trainer`) knows neither Ray nor MLflow; progress bars,
metric files, MLflow logging and reports to Tune or Ray Train plug in as callbacks.
"""

from __future__ import annotations

from pathlib import Path


class Callback:
    """Hooks into the loop; a subclass overrides the ones it needs."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """The metrics of a logged step (rank 0 only)."""

    def on_checkpoint(self, step: int) -> None:
        """Just before the checkpoint of `step` is written (every rank): make durable what a
        run resumed from that checkpoint could not produce again, e.g. logged metrics."""

    def on_report(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        """At each evaluation and checkpoint (every rank: Ray Train wants every worker to
        report), with the checkpoint folder when one was written."""
