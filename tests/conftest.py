"""Shared fixtures: one local Ray instance for every test that needs Ray."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory):
    """Start one local Ray for the whole session (2 CPUs, no dashboard); yield its address."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    os.environ["SCALESWEEP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
