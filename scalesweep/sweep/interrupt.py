"""Ctrl-C during a sweep: stop it the way Tune stops gracefully, and know that it happened.

Tune's own SIGINT handler stops the trials and returns from `fit()` as if the sweep had ended;
the driver could not tell an interrupted sweep from a finished one (it printed the ordinary
summary and exited 0). Here the driver owns SIGINT: the first Ctrl-C is recorded and passed on
to Tune as SIGUSR1, which Tune handles exactly like its SIGINT (a graceful stop); a second
Ctrl-C raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

INTERRUPTED_HOW = "the sweep was stopped by Ctrl-C; `scalesweep sweep FILE --resume` goes on"
"""The reason tag of a trial's run that a Ctrl-C stopped."""


@dataclass
class Interrupt:
    """Set by the first Ctrl-C while `catch_interrupt` is active."""

    event: threading.Event = field(default_factory=threading.Event)
    at: float | None = None
    """Unix time of the Ctrl-C."""

    @property
    def happened(self) -> bool:
        return self.event.is_set()

    def stopped(self, gave_up_at: float | None) -> bool:
        """Whether a trial counts as stopped by the Ctrl-C: it happened, and Tune did not give
        up on the trial (`gave_up_at`: when it did, None if not) before it."""
        if not self.happened:
            return False
        return gave_up_at is None or gave_up_at >= (self.at or 0.0)


def _no_tune_restore_hint(record: logging.LogRecord) -> bool:
    """Drop Tune's "Resume experiment with: Tuner.restore(...)": a sweep resumes with
    `--resume` (docs/architecture.md says why not with Tune's restore)."""
    return "Tuner.restore" not in record.getMessage()


@contextlib.contextmanager
def catch_interrupt() -> Iterator[Interrupt]:
    """Within the block, the first SIGINT stops Tune gracefully and is recorded; the second
    raises KeyboardInterrupt. Outside the main thread (no signals there) it records nothing."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if interrupt.happened:  # the second Ctrl-C (Tune put this handler back)
            raise KeyboardInterrupt
        print("interrupted: stopping the running trials (Ctrl-C again to stop at once)")
        interrupt.at = interrupt.at or time.time()
        interrupt.event.set()
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop

    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(_no_tune_restore_hint)
    before_sigint = signal.signal(signal.SIGINT, on_sigint)
    before_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # keep ours; Tune still takes SIGUSR1
    try:
        yield interrupt
    finally:
        tune_log.removeFilter(_no_tune_restore_hint)
        signal.signal(signal.SIGINT, before_sigint)
        if before_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = before_env


def resume_hint(done: int, total: int, config_path: str) -> str:
    """The line an interrupted sweep ends with."""
    return (
        f"interrupted: {done} of {total} trials finished; continue with "
        f"`scalesweep sweep {config_path} --resume`"
    )
