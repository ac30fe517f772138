"""Known-truth validation: sweep-shaped runs written to MLflow as a sweep writes them, read back
by `scalesweep fit`, the answer compared with the truth that generated them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests import sweep_runs
from tests.sweep_runs import write_sweep


class Store:
    """One SQLite MLflow store in a temporary folder (created once per test module: creating
    the database is most of MLflow's start-up cost)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"

    def write(self, name: str, trials: Sequence[Mapping[str, Any]]) -> str:
        """Write one sweep invocation of `trials` (see tests.sweep_runs.write_sweep)."""
        return write_sweep(self.uri, name, trials, spool_dir=self.root / "spool" / name)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def fit_json(store: Store, capsys: pytest.CaptureFixture[str]) -> Callable[..., dict]:
    """Run `scalesweep fit SWEEP --tracking-uri ... ARGS --json` and return its JSON."""

    def run(sweep: str, *args: str) -> dict:
        return sweep_runs.fit_json([sweep, "--tracking-uri", store.uri, *args], capsys)

    return run
