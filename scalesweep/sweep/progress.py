"""The live view of a running sweep: trials done, running, diverged and failed, the best value
so far, and an ETA from the plan's FLOPs (trained FLOPs per second so far, against what is left).

A Tune `Callback` in the driver; Tune's own trial table is silenced. On a terminal it is one
rich progress bar; elsewhere (CI, `ray job logs`) a line each time a trial ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback

from scalesweep import metrics as m
from scalesweep.sweep.capacity import WAITING_S
from scalesweep.sweep.plan import Plan, trial_name
from scalesweep.sweep.search import CELL_KEY
from scalesweep.sweep.trial import CHECKPOINT_STEP, UNREACHABLE_S, assignment_of


@dataclass
class Tally:
    """Counts and FLOPs of a sweep in progress (pure; the callback feeds it)."""

    total_trials: int
    total_flops: float
    done: int = 0
    diverged: int = 0
    failed: int = 0
    best: float | None = None
    flops_done: float = 0.0
    running: dict[str, float] = field(default_factory=dict)
    """Trial -> FLOPs it has trained so far."""
    unreachable: dict[str, float] = field(default_factory=dict)
    """Running trial -> seconds its tracking server has not answered, while that lasts."""
    waiting: dict[str, float] = field(default_factory=dict)
    """Running trial -> seconds it has waited for capacity to restart its workers."""
    restarting: dict[str, float] = field(default_factory=dict)
    """Trial whose process was lost -> time.monotonic() since when Tune restarts it."""
    started: float = field(default_factory=time.monotonic)

    def eta_s(self) -> float | None:
        trained = self.flops_done + sum(self.running.values())
        elapsed = time.monotonic() - self.started
        if trained <= 0 or elapsed <= 0:
            return None
        return max(0.0, self.total_flops - trained) / (trained / elapsed)

    def line(self) -> str:
        eta = self.eta_s()
        when = "?" if eta is None else f"{eta / 60:.1f} min" if eta >= 60 else f"{eta:.0f} s"
        best = "-" if self.best is None else f"{self.best:.4g}"
        counts = f"{self.done}/{self.total_trials} done · {len(self.running)} running"
        line = f"{counts} · {self.diverged} diverged · {self.failed} failed · best {best}"
        down = [s for s in self.unreachable.values() if s > 0]
        if down:  # training goes on; the points wait in memory or the spool
            line += (
                f" · tracking server unreachable for {max(down):.0f} s ({len(down)} trial(s) "
                "queueing their points)"
            )
        now = time.monotonic()
        waiting = [s for s in self.waiting.values() if s > 0]
        waiting += [now - since for since in self.restarting.values()]
        if waiting:  # Ray restarts a trial (or its workers) once the cluster can place it
            line += f" · {len(waiting)} waiting for capacity to restart ({max(waiting):.0f} s)"
        return f"{line} · ETA {when}"


class SweepProgress(Callback):
    """Keeps a `Tally` from Tune's trial events and shows it."""

    def __init__(
        self,
        plan: Plan,
        *,
        already_done: int = 0,
        metric: str,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self.metric = metric
        self.on_restart = on_restart
        """Called with a trial's name when Tune restarts it (its process was lost)."""
        self.flops = {t.name: t.flops for t in plan.trials}
        self.steps = {t.name: t.steps for t in plan.trials}
        self.tally = Tally(plan.n_trials, plan.total_flops, done=already_done)
        self.errored: dict[str, float] = {}
        """Trials Tune gave up on (no retries left), by name: when (Unix time). Tune's result
        grid cannot say it: it gives a trial stopped while being retried its earlier error."""
        self.bar: Any = None
        self.task: Any = None

    def _cell_name(self, trial: Any) -> str:
        return trial_name((trial.config or {}).get(CELL_KEY, {}))

    def _show(self, *, ended: bool = False) -> None:
        if self.bar is None:
            from rich.console import Console

            if not Console().is_terminal:
                if ended:
                    print(f"sweep: {self.tally.line()}", flush=True)
                return
            from rich.progress import BarColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("sweep"), BarColumn(), TextColumn("{task.description}"))
            self.bar.start()
            self.task = self.bar.add_task("", total=self.tally.total_trials)
        self.bar.update(self.task, completed=self.tally.done, description=self.tally.line())

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.tally.running[trial.trial_id] = 0.0
        self.tally.restarting.pop(trial.trial_id, None)
        self._show()

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.tally.running.pop(trial.trial_id, None)
        self.tally.restarting[trial.trial_id] = time.monotonic()
        if self.on_restart is not None:
            self.on_restart(trial_name(assignment_of(trial.config or {})))
        self._show(ended=True)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        cell = self._cell_name(trial)
        step = result.get(CHECKPOINT_STEP)
        if step is not None and cell in self.steps:
            self.tally.running[trial.trial_id] = self.flops[cell] * step / max(1, self.steps[cell])
        self.tally.unreachable[trial.trial_id] = float(result.get(UNREACHABLE_S) or 0.0)
        self.tally.waiting[trial.trial_id] = float(result.get(WAITING_S) or 0.0)
        said = self.tally.unreachable[trial.trial_id] + self.tally.waiting[trial.trial_id]
        self._show(ended=said > 0)

    def _end(self, trial: Any, status: str, value: float | None) -> None:
        self.tally.running.pop(trial.trial_id, None)
        self.tally.unreachable.pop(trial.trial_id, None)
        self.tally.waiting.pop(trial.trial_id, None)
        self.tally.restarting.pop(trial.trial_id, None)
        self.tally.done += 1
        self.tally.flops_done += self.flops.get(self._cell_name(trial), 0.0)
        self.tally.diverged += status == m.DIVERGED
        self.tally.failed += status == m.FAILED
        if status == m.COMPLETED and value is not None and math.isfinite(value):
            self.tally.best = value if self.tally.best is None else min(self.tally.best, value)
        self._show(ended=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        status = result.get(m.STATUS)  # a trial that ended without its final report failed
        status = status if status in m.ENDED_STATUSES else m.FAILED
        self._end(trial, status, result.get(self.metric))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.errored[trial_name(assignment_of(trial.config or {}))] = time.time()
        self._end(trial, m.FAILED, None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
