"""A sweep across two Ray nodes, and what it does when one of them dies mid-trial.

Two Ray nodes on this machine, from the committed scripts (clusters/local/start-head.sh and
start-worker.sh), each `--num-cpus 1` with its own ports and temp dir, token auth. `ray job
submit` runs one trial of 2 ranks of 0.99 CPU each, which no single node can hold, so Ray must
place one rank on each node. The test checks, from Ray's state API, that the ranks ran on both
nodes; then the second node dies mid-trial (every process of it stopped, then SIGKILLed),
holding a rank and, depending on where Ray placed them, the trial's own process and its Train
controller. The trial cannot restart on the 1 CPU left: it must say it is waiting (the run's
`scalesweep.waiting_for_capacity` tag and the sweep's progress line) until a third node
joins, then resume from its last checkpoint and finish, with every point logged once and the
same losses as the same trial run locally (one process accumulating the two ranks'
micro-batches).

Both nodes share this machine's files and loopback, so MLflow is a SQLite store here (the
sweep's preflight counts machines, not nodes). Everything started is killed by a marker in its
environment, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient

from scalesweep.tracking import WAITING_TAG, WAITS_TAG
from tests.faults.conftest import assert_every_point_once, children, driver, sweep_file
from tests.test_cluster_e2e import kill_marked_groups, marked_pids, tail

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")
STEPS, LOG_EVERY, EVAL_EVERY = 160, 5, 40
TRAIN = {
    "steps": STEPS,
    "batch_size": 8,
    "micro_batch_size": 4,  # 2 ranks × 1 micro-batch = 1 process × 2 micro-batches
    "checkpoint_every": 20,
    "log_every": LOG_EVERY,
    "eval_every": EVAL_EVERY,
}
SPREAD = {"workers_per_trial": 2, "cpus_per_worker": 0.99, "max_failures": 3}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(540)]


def free_ports(n: int) -> list[int]:
    """n distinct free ports below Linux's ephemeral range (32768-60999), where the ports Ray
    picks at random for its other components never land: a port chosen there and released
    again could be taken by one of them before the node binds it."""
    found: list[int] = []
    for port in random.sample(range(24000, 32000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    raise RuntimeError(f"no {n} free ports in 24000-31999")


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float, explain: Callable[[], str]
) -> T:
    """check()'s first truthy value; fails with `explain()` when there is none in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if value := check():
                return value
        time.sleep(0.5)
    pytest.fail(f"{what}: not after {timeout:.0f} s\n{explain()}")


class Cluster:
    """Ray nodes on this machine, one process group each, found again by a marker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = secrets.token_hex(16)
        self.port, self.dashboard_port = free_ports(2)
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        bin_dir = root / "bin"  # `ray` of this interpreter, for the scripts and `ray job`
        bin_dir.mkdir()
        script = f'#!/bin/sh\nexec {sys.executable} -m ray.scripts.scripts "$@"\n'
        (bin_dir / "ray").write_text(script)
        (bin_dir / "ray").chmod(0o755)
        self.ray = str(bin_dir / "ray")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
        self.env = {
            **base,
            "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.markers: dict[str, bytes] = {}

    def start(self, name: str, script: str, *args: str) -> None:
        """A node from clusters/local/SCRIPT, with its own ports and temp dir (nodes sharing a
        temp dir share runtime_resources/, which a node joining later clears)."""
        marker = uuid.uuid4().hex
        ports = free_ports(4)
        temp = Path(tempfile.mkdtemp(prefix=f"ss2n-{name}-"))  # short: Ray's socket paths
        env = {**self.env, "SCALESWEEP_NODE": marker, "RAY_PORT": str(self.port)}
        env["RAY_DASHBOARD_PORT"] = str(self.dashboard_port)
        command = [
            *("bash", str(REPO / "clusters/local" / script), *args, "--block"),
            *("--num-cpus", "1", "--num-gpus", "0", "--temp-dir", str(temp)),
            *("--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1])),
            *("--dashboard-agent-listen-port", str(ports[2])),
        ]
        if script == "start-head.sh":
            command += ["--ray-client-server-port", str(ports[3])]
        first = 20000 + 1000 * len(self.markers)
        command += ["--min-worker-port", str(first), "--max-worker-port", str(first + 999)]
        with (self.root / f"{name}.log").open("w") as log:
            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
        self.markers[name] = f"SCALESWEEP_NODE={marker}".encode()

    def api(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        reply = requests.get(f"{self.dashboard}{path}", headers=headers, params=params, timeout=10)
        reply.raise_for_status()
        return reply.json()

    def alive_nodes(self) -> list[dict[str, Any]]:
        nodes = self.api("/api/v0/nodes", limit=100, detail=1)["data"]["result"]["result"]
        return [node for node in nodes if node["state"] == "ALIVE"]

    def actors(self, name: str) -> list[str]:
        """The node of every live actor of class `name`."""
        actors = self.api("/api/v0/actors", limit=1000, detail=1)["data"]["result"]["result"]
        return [a["node_id"] for a in actors if a["state"] == "ALIVE" and a["class_name"] == name]

    def rank_nodes(self) -> list[str]:
        """The node of every live Ray Train worker (rank)."""
        return self.actors("RayTrainWorker")

    def add_node(self, name: str) -> str:
        """Start a worker node; its Ray node id once it has joined."""
        before = {node["node_id"] for node in self.alive_nodes()}
        self.start(name, "start-worker.sh", f"127.0.0.1:{self.port}")
        joined = wait_for(
            f"{name} joined",
            lambda: [n["node_id"] for n in self.alive_nodes() if n["node_id"] not in before],
            120,
            lambda: tail(self.root / f"{name}.log"),
        )
        return str(joined[0])

    def job_status(self, job: str) -> str:
        return str(self.api(f"/api/jobs/{job}")["status"])

    def job_logs(self, job: str) -> str:
        return str(self.api(f"/api/jobs/{job}/logs")["logs"])

    def state(self, job: str | None = None) -> str:
        """What the cluster holds now, for a failure's message: the job's log tail, the live
        actors with their nodes, the placement groups."""
        parts = [f"job log:\n{self.job_logs(job)[-3000:]}"] if job else []
        with contextlib.suppress(Exception):
            actors = self.api("/api/v0/actors", limit=1000, detail=1)["data"]["result"]["result"]
            parts.append("actors:\n" + "\n".join(
                f"  {a['class_name']} {a['state']} node {a['node_id'][:8]}" for a in actors
            ))  # fmt: skip
            groups = self.api("/api/v0/placement_groups", limit=100, detail=1)
            parts.append("placement groups:\n" + "\n".join(
                f"  {g['state']} {g.get('bundles')}" for g in groups["data"]["result"]["result"]
            ))  # fmt: skip
        return "\n".join(parts) + f"\nhead log:\n{tail(self.root / 'head.log', 1500)}"

    def kill(self, name: str) -> int:
        """Node `name` dies as a machine does, all at once: every process of it stopped
        (SIGSTOP), then SIGKILLed; how many there were. Killed one by one, a process of it
        could react to the death of another (a Train controller starting a new worker
        group whose placement group nobody removes)."""
        found = marked_pids(self.markers[name])
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        kill_marked_groups(self.markers[name])
        return len(found)

    def stop(self) -> None:
        for marker in self.markers.values():
            kill_marked_groups(marker)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="ss2n-"))
    nodes = Cluster(root)
    try:
        nodes.start("head", "start-head.sh")
        wait_for("the head's jobs API", lambda: nodes.api("/api/jobs/") is not None, 120,
                 nodes.state)  # fmt: skip
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(root, ignore_errors=True)
        for temp in Path(tempfile.gettempdir()).glob("ss2n-*"):
            shutil.rmtree(temp, ignore_errors=True)


def losses(uri: str, run_id: str) -> dict[int, float]:
    return {p.step: p.value for p in MlflowClient(uri).get_metric_history(run_id, "train/loss")}


def test_two_rank_trial_spreads_over_two_nodes_and_survives_losing_one(
    cluster, tmp_path, ray_address
):
    # Rule: the 2 ranks run on 2 nodes; after the second node dies mid-trial, the trial says
    # it waits for capacity (tag and progress line) until a node joins, then resumes from its
    # last checkpoint and completes: every point once, losses equal to a local run's.
    second = cluster.add_node("node2")
    path = sweep_file(tmp_path / "cluster", "two_nodes", train=TRAIN, resources=SPREAD)
    raw = yaml.safe_load(path.read_text())
    uri = raw["tracking"]["uri"]
    job = f"two-nodes-{uuid.uuid4().hex[:8]}"
    submit = subprocess.run(
        [
            *(cluster.ray, "job", "submit", "--address", cluster.dashboard, "--no-wait"),
            *("--submission-id", job, "--working-dir", str(REPO)),
            *("--runtime-env", str(REPO / "clusters/runtime_env.yaml"), "--"),
            *("scalesweep", "sweep", str(path)),
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr

    def state() -> str:
        return cluster.state(job)

    def running(check: Callable[[], T | None]) -> Callable[[], T | None]:
        def until_ended() -> T | None:
            if (status := cluster.job_status(job)) in TERMINAL:
                pytest.fail(f"job {status}:\n{cluster.job_logs(job)[-4000:]}")
            return check()

        return until_ended

    ranks = wait_for("2 ranks", running(lambda: len(r := cluster.rank_nodes()) == 2 and r), 240,
                     state)  # fmt: skip
    assert second in ranks and len(set(ranks)) == 2, f"ranks on {ranks}"
    # Either the node holds a rank only (Ray Train restarts the workers), or also the trial's
    # own process and its Train controller (Tune restarts the trial): both must recover.
    holds_trial = second in cluster.actors("TrainController") + cluster.actors("ImplicitFunc")
    print(f"the second node holds {'the trial process and ' * holds_trial}a rank")

    def trial_run() -> Any:
        return children(uri, "two_nodes")[0]

    def past_a_checkpoint() -> bool:
        step = max(losses(uri, trial_run().info.run_id), default=0)
        return 40 <= step < STEPS - 40

    wait_for("a step past a checkpoint", running(past_a_checkpoint), 240, state)
    assert cluster.kill("node2") > 0
    waiting = wait_for("the waiting tag", running(lambda: trial_run().data.tags.get(WAITING_TAG)),
                       180, state)  # fmt: skip
    assert "needs 2 workers × 0.99 CPU" in waiting and "CPU free on" in waiting, waiting
    assert "waiting for capacity" in cluster.job_logs(job)
    cluster.add_node("node3")
    status = wait_for("the job's end", lambda: (s := cluster.job_status(job)) in TERMINAL and s,
                      300, state)  # fmt: skip
    assert status == "SUCCEEDED", cluster.job_logs(job)[-4000:]

    run = trial_run()
    assert run.data.tags["status"] == "completed" and run.info.status == "FINISHED"
    assert WAITING_TAG not in run.data.tags and "waited" in run.data.tags[WAITS_TAG]
    assert_every_point_once(uri, run, STEPS, log_every=LOG_EVERY, eval_every=EVAL_EVERY)

    # The same trial on the session's local Ray, in one process.
    one_process = {**SPREAD, "workers_per_trial": 1, "cpus_per_worker": 1}
    local = sweep_file(tmp_path / "local", "two_nodes", train=TRAIN, resources=one_process)
    with driver(local, address=ray_address) as sweep:
        assert sweep.wait(timeout=240) == 0, sweep.output()
    local_uri = yaml.safe_load(local.read_text())["tracking"]["uri"]
    (reference,) = children(local_uri, "two_nodes")
    expected = losses(local_uri, reference.info.run_id)
    assert losses(uri, run.info.run_id) == pytest.approx(expected, rel=1e-5)
