"""Waiting out a tracking outage: MLflow's own retries bounded to seconds, ours to the sweep's
`tracking.outage_timeout_s`, for the calls a sweep cannot go on without. Per-step metrics
never wait (`metric_log.MetricLog`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def bound_mlflow_retries() -> None:
    """Make one MLflow request give up within seconds, not minutes: outages are waited out by
    our own retries (`with_retries`, `MetricLog`), which know what they may block."""
    for key, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
    ):
        os.environ.setdefault(key, value)


def with_retries(call: Callable[[], T], *, what: str, timeout_s: float) -> T:
    """`call()`, retried with backoff while the tracking server is unreachable, for at most
    `timeout_s`; then the last error is raised. For the few calls a sweep cannot go on
    without (creating and finding runs, marking them finished)."""
    deadline = time.monotonic() + timeout_s
    wait = 1.0
    while True:
        try:
            return call()
        except Exception as error:
            if time.monotonic() + wait > deadline:
                raise
            print(f"tracking: {what} failed ({str(error)[:200]}); retrying in {wait:.0f} s")
            time.sleep(wait)
            wait = min(wait * 2, 30.0)
