"""Helpers of the fault-injection suite: tiny sweeps, a driver in its own process, killing
processes by their Ray title, a real MLflow server, and counting every logged point.

Every process a test starts is killed by the test (by process group), also when it fails.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient

TINY: dict[str, Any] = {
    "model": {"width": 16, "depth": 1, "head_dim": 16, "seq_len": 32},
    "optim": {"lr": 0.01},
    "schedule": {"type": "constant"},
    "train": {"batch_size": 4, "eval_batches": 1, "eval_batch_size": 4},
    "resources": {"cpus_per_worker": 1, "max_concurrent_trials": 1, "max_failures": 2},
}
DISTRIBUTED = {"workers_per_trial": 2, "cpus_per_worker": 0.5}
"""2 gloo ranks of half a CPU: with the trial's driver fraction they fit 2 CPUs."""


def sweep_file(tmp_path: Path, name: str, uri: str | None = None, **sections: Any) -> Path:
    """A sweep YAML in tmp_path: TINY updated section by section; MLflow on SQLite in tmp_path
    unless `uri`."""
    raw = {key: {**TINY.get(key, {}), **sections.get(key, {})} for key in {*TINY, *sections}}
    raw["name"] = name
    raw["storage_path"] = str(tmp_path / "runs")
    raw["tracking"] = {"uri": uri or f"sqlite:///{tmp_path / 'mlflow.db'}", "log_every_s": 0.3}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    # Create the store now: the test polls it while the driver starts, and two processes
    # creating one fresh SQLite store at once race on its schema migration.
    MlflowClient(raw["tracking"]["uri"]).search_experiments(max_results=1)
    return path


def tracking_uri(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["tracking"]["uri"])


class Driver:
    """`scalesweep sweep PATH` in its own process group, joined to the session's Ray; its
    output goes to a file (a pipe nobody reads would block it once full)."""

    def __init__(self, path: Path, args: tuple[str, ...], address: str) -> None:
        self.path, self.log = path, path.with_suffix(".driver.log")
        command = [sys.executable, "-m", "scalesweep", "sweep", str(path), "--address", address]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [*command, *args], start_new_session=True, stdout=out, stderr=subprocess.STDOUT
            )

    def wait(self, timeout: float) -> int:
        """The driver's exit code; fails the test with its output when it does not exit."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the driver did not exit in {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        """The driver's output, then the trials' errors as Tune recorded them (a failing test
        shows why a trial failed or was retried)."""
        raw = yaml.safe_load(self.path.read_text())
        storage = Path(raw["storage_path"]) / raw["name"]
        errors = [f"--- {f}:\n{f.read_text()[-2000:]}" for f in sorted(storage.rglob("error.txt"))]
        return "\n".join([self.log.read_text()[-5000:], *errors])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def driver(path: Path, *args: str, address: str) -> Iterator[Driver]:
    """A `Driver`, killed with its process group when the block ends."""
    running = Driver(path, args, address)
    try:
        yield running
    finally:
        running.kill()


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, driver: Driver | None = None
) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout`
    (or as soon as `driver` exits, with its output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the store may be busy or not created yet
            value = condition()
            if value:
                return value
        if driver is not None and driver.proc.poll() is not None:
            pytest.fail(f"the driver exited before {what}:\n{driver.output()}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_for_step(uri: str, name: str, step: int, sweep: Driver, timeout: float = 240) -> None:
    """Wait until a child run of sweep `name` has logged `step` (fails with the driver's output
    if it exits first)."""
    wait_until(
        lambda: any(last_step(uri, r.info.run_id) >= step for r in children(uri, name)),
        timeout=timeout,
        what=f"a trial at step {step}",
        driver=sweep,
    )


def pids_titled(title: str) -> list[int]:
    """PIDs of processes whose command line starts with `title` (Ray titles its workers
    `ray::ImplicitFunc.train`, `ray::RayTrainWorker...`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "cmdline").read_bytes().startswith(title.encode()):
                found.append(int(entry.name))
    return found


def kill_titled(title: str) -> int:
    """SIGKILL every process titled `title`; returns how many."""
    pids = pids_titled(title)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def children(uri: str, sweep: str) -> list[Any]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(sweep)
    assert experiment is not None, f"no experiment {sweep}"
    return client.search_runs(
        [experiment.experiment_id], filter_string="tags.`scalesweep.role` = 'trial'"
    )


def parents(uri: str, sweep: str) -> list[Any]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(sweep)
    assert experiment is not None
    return client.search_runs(
        [experiment.experiment_id], filter_string="tags.`scalesweep.role` = 'sweep'"
    )


def last_step(uri: str, run_id: str, key: str = "train/loss") -> int:
    history = MlflowClient(uri).get_metric_history(run_id, key)
    return max((point.step for point in history), default=-1)


def lost_and_doubled(
    uri: str, run_id: str, key: str, expected: set[int]
) -> tuple[set[int], dict[int, int]]:
    """(steps never logged, steps logged more than once) of one metric of one run."""
    counts = collections.Counter(p.step for p in MlflowClient(uri).get_metric_history(run_id, key))
    return expected - set(counts), {step: n for step, n in counts.items() if n > 1}


def assert_every_point_once(
    uri: str, run: Any, steps: int, log_every: int, eval_every: int
) -> None:
    """train/loss at every log step and val/loss at step 0 and every evaluation, each once."""
    run_id = run.info.run_id
    expected = {
        "train/loss": set(range(log_every, steps + 1, log_every)) | {steps},
        "val/loss": set(range(0, steps + 1, eval_every)) | {steps},
    }
    for key, steps_expected in expected.items():
        lost, doubled = lost_and_doubled(uri, run_id, key, steps_expected)
        assert not lost and not doubled, f"{key}: lost {sorted(lost)}, doubled {doubled}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (SQLite backend) that can be stopped and restarted
    on the same port; stopped by process group (it starts worker children)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        mlflow = Path(sys.executable).parent / "mlflow"
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--default-artifact-root", str(self.folder / "artifacts"), "--workers", "1"],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # No GenAI job workers: a tracking store for sweeps needs none, and they cost
            # seconds of start on 2 cores.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip
        wait_until(
            lambda: requests.get(f"{self.url}/health", timeout=2).ok,
            timeout=timeout,
            what="the MLflow server to answer",
        )

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
