"""A 2-rank trial across two Ray nodes, and what happens when one of them dies mid-trial.

On this machine, from the committed scripts: clusters/local/start-head.sh and
start-worker.sh, each `--num-cpus 1` with its own ports (and the head its own temp dir), token
auth. `ray job submit` runs `scalesweep sweep search_spaces/pulse.yaml` as one trial of
`resources.workers_per_trial=2` with `cpus_per_worker=0.99` (two ranks cannot share a 1-CPU
node, so they must spread), a checkpoint every 20 steps, logging to a SQLite MLflow store.
Steps, each printed with the time since submission:
  1. the node of each rank, from Ray's state API (RayTrainWorker actors);
  2. once the trial has logged a step past a checkpoint, SIGKILL every process of the second
     node (found by a marker in their environment);
  3. watch the job for `--wait-s`: what the trial does on the surviving capacity;
  4. start a new second node, wait for the job to end;
  5. MLflow: one child run, its status, and every train/loss step logged exactly once.

    python benchmarks/cluster_two_nodes.py [--steps 200] [--wait-s 60]

Status (2026-12-06, 2-core development machine, load 7-15): both nodes start and join (Ray's
node list shows the head and node2); `scalesweep sweep` refuses a SQLite store and a loopback
tracking server on 2 nodes, as docs/cluster.md says, so the server runs on the machine's own
address. The submitted job's driver then died twice, before any rank started, with "Intel oneMKL
FATAL ERROR: Cannot load .../torch/lib/libtorch_cpu.so" (`import torch` after `ray.init` in a
plain process works); not yet diagnosed, so steps 1-5 have not been observed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.test_cluster_e2e import free_port, kill_marked_groups, marked_pids  # noqa: E402

VENV_BIN = Path(sys.executable).parent
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {text}", flush=True)


def ray_bin(root: Path) -> Path:
    """A folder with a `ray` command of this interpreter (a venv whose packages come from
    elsewhere may have no `ray` script of its own)."""
    folder = root / "bin"
    folder.mkdir()
    script = folder / "ray"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m ray.scripts.scripts "$@"\n')
    script.chmod(0o755)
    return folder


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = secrets.token_hex(16)
        self.port, self.dashboard_port = free_port(), free_port()
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.bin = ray_bin(root)
        self.env = {
            **base,
            "PATH": f"{self.bin}:{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.markers: list[bytes] = []
        self.procs: list[subprocess.Popen] = []

    def _start(self, name: str, command: list[str]) -> bytes:
        marker = f"SCALESWEEP_TWO_NODES={uuid.uuid4().hex}"
        env = {**self.env, marker.split("=")[0]: marker.split("=")[1]}
        env.update(RAY_PORT=str(self.port), RAY_DASHBOARD_PORT=str(self.dashboard_port))
        log = (self.root / f"{name}.log").open("w")
        self.procs.append(
            subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        self.markers.append(marker.encode())
        return marker.encode()

    def start_head(self) -> None:
        temp = Path(tempfile.mkdtemp(prefix="ss2n-"))
        self._start(
            "head",
            [
                *("bash", str(REPO / "clusters/local/start-head.sh"), "--block"),
                *("--num-cpus", "1", "--num-gpus", "0", "--temp-dir", str(temp)),
                *("--ray-client-server-port", str(free_port())),
                *("--dashboard-agent-listen-port", str(free_port())),
                *("--node-manager-port", str(free_port())),
                *("--object-manager-port", str(free_port())),
                *("--min-worker-port", "20000", "--max-worker-port", "20999"),
            ],
        )
        self.wait(lambda: self.api("/api/jobs/").ok, "head's jobs API", 120)

    def start_worker(self, name: str) -> bytes:
        before = len(self.wait(self.nodes, "the head's node", 60))
        marker = self._start(
            name,
            [
                *("bash", str(REPO / "clusters/local/start-worker.sh"), f"127.0.0.1:{self.port}"),
                *("--block", "--num-cpus", "1", "--num-gpus", "0"),
                *("--node-manager-port", str(free_port())),
                *("--object-manager-port", str(free_port())),
                *("--dashboard-agent-listen-port", str(free_port())),
                *("--min-worker-port", "21000", "--max-worker-port", "21999"),
            ],
        )
        self.wait(lambda: len(self.nodes()) == before + 1, f"{name} joined", 120)
        return marker

    def api(self, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.get(f"{self.dashboard}{path}", headers=headers, timeout=10, **kwargs)

    def nodes(self) -> list[dict]:
        reply = self.api("/api/v0/nodes", params={"limit": 100, "detail": 1})
        found = reply.json()["data"]["result"]["result"] if reply.ok else []
        return [n for n in found if n["state"] == "ALIVE"]

    def rank_nodes(self) -> dict[str, str]:
        """Alive RayTrainWorker actors: actor id -> node id."""
        reply = self.api("/api/v0/actors", params={"limit": 1000, "detail": 1})
        actors = reply.json()["data"]["result"]["result"] if reply.ok else []
        return {
            a["actor_id"]: a["node_id"]
            for a in actors
            if a["state"] == "ALIVE" and a["class_name"] == "RayTrainWorker"
        }

    def wait(self, check, what: str, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if value := check():
                    return value
            time.sleep(1)
        raise SystemExit(f"{what}: not after {timeout:.0f} s (logs in {self.root})")

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        for marker in self.markers:
            kill_marked_groups(marker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--wait-s", type=float, default=60)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="two_nodes_"))
    cluster = Cluster(root)
    try:
        # A tracking server on the machine's own address, as a multi-node sweep requires
        # (SQLite behind it: one machine); MLflow answers that address only when allowed.
        port = free_port()
        host = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[0]
        uri = f"http://{host}:{port}"
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server", "--host", host),
                *("--port", str(port), "--workers", "1"),
                *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
                *("--artifacts-destination", str(root / "artifacts")),
            ],
            env={**os.environ, "MLFLOW_SERVER_ALLOWED_HOSTS": f"{host}:*,127.0.0.1:*,localhost:*"},
            stdout=(root / "mlflow.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        cluster.procs.append(server)
        cluster.wait(lambda: requests.get(f"{uri}/health", timeout=2).ok, "mlflow server", 120)
        say("mlflow server up")
        cluster.start_head()
        say("head up")
        second = cluster.start_worker("node2")
        nodes = {n["node_id"]: ("head" if n["is_head_node"] else "node2") for n in cluster.nodes()}
        say(f"2 nodes: {nodes}")
        job = f"two-nodes-{uuid.uuid4().hex[:8]}"
        sets = {
            "name": "two_nodes",
            "optim.lr": 0.01,
            "train.steps": args.steps,
            "train.checkpoint_every": 20,
            "train.log_every": 5,
            "train.eval_every": 50,
            "tracking.uri": uri,
            "tracking.log_every_s": 0.5,
            "resources.workers_per_trial": 2,
            "resources.cpus_per_worker": 0.99,
            "storage_path": str(root / "storage"),
        }
        submit = subprocess.run(
            [cluster.bin / "ray", "job", "submit", "--address", cluster.dashboard, "--no-wait"]
            + ["--submission-id", job, "--working-dir", REPO]
            + ["--runtime-env", REPO / "clusters/runtime_env.yaml", "--"]
            + ["scalesweep", "sweep", "search_spaces/pulse.yaml"]
            + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
            env=cluster.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if submit.returncode != 0:
            raise SystemExit(submit.stdout + submit.stderr)
        global T0
        T0 = time.monotonic()
        say(f"submitted {job}")

        def ranks_or_end() -> dict[str, str] | None:
            status = cluster.api(f"/api/jobs/{job}").json()["status"]
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                logs = cluster.api(f"/api/jobs/{job}/logs").json()["logs"]
                raise SystemExit(f"job {status} before its ranks started:\n{logs[-3000:]}")
            found = cluster.rank_nodes()
            return found if len(found) == 2 else None

        ranks = cluster.wait(ranks_or_end, "2 ranks", 300)
        placed = sorted(nodes.get(n, n) for n in ranks.values())
        say(f"ranks on nodes: {placed}")

        def logged_steps() -> list[int]:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(uri)
            runs = client.search_runs(
                [e.experiment_id for e in client.search_experiments()],
                filter_string="tags.`scalesweep.role` = 'trial'",
            )
            return [
                x.step for r in runs for x in client.get_metric_history(r.info.run_id, "train/loss")
            ]

        cluster.wait(lambda: max(logged_steps(), default=0) >= 30, "step 30 logged", 300)
        say(f"killing node2 at logged step {max(logged_steps())}")
        pids = marked_pids(second)
        kill_marked_groups(second)
        say(f"killed {len(pids)} processes of node2")
        end = time.monotonic() + args.wait_s
        while time.monotonic() < end:
            status = cluster.api(f"/api/jobs/{job}").json()["status"]
            alive = sorted(nodes.get(n, n) for n in cluster.rank_nodes().values())
            last = max(logged_steps(), default=0)
            say(f"job {status}; ranks alive on {alive}; last logged step {last}")
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(10)
        logs = cluster.api(f"/api/jobs/{job}/logs").json()["logs"]
        (root / "job-after-kill.log").write_text(logs)
        say("job log tail after the kill:\n" + "\n".join(logs.splitlines()[-25:]))
        cluster.start_worker("node3")
        say("node3 joined")
        status = cluster.wait(
            lambda: (
                (s := cluster.api(f"/api/jobs/{job}").json()["status"])
                in ("SUCCEEDED", "FAILED", "STOPPED")
                and s
            ),
            "job end",
            600,
        )
        logs = cluster.api(f"/api/jobs/{job}/logs").json()["logs"]
        (root / "job.log").write_text(logs)
        say(f"job {status}; log tail:\n" + "\n".join(logs.splitlines()[-30:]))
        steps = logged_steps()
        doubled = sorted({s for s in steps if steps.count(s) > 1})
        expected = list(range(5, args.steps + 1, 5))
        say(
            f"train/loss steps logged: {len(steps)}, expected {len(expected)}; doubled {doubled}; "
            f"missing {sorted(set(expected) - set(steps))}"
        )
    finally:
        cluster.stop()
        say(f"stopped; logs in {root}")


if __name__ == "__main__":
    main()
