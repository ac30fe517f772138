"""A sweep submitted to a real Ray cluster with `ray job submit`, logging to a real MLflow
tracking server backed by PostgreSQL: the path of docs/cluster.md, on loopback ports.

Everything here is started from the committed scripts (clusters/local/start-head.sh,
clusters/mlflow/setup-postgres.sh, clusters/mlflow/start.sh, clusters/runtime_env.yaml) and
owned by this test: a private PostgreSQL cluster in a temp dir, an MLflow server, and a Ray
head with its own ports, temp dir and auth token. It does not use the session's in-process
Ray (`ray_address`). Teardown kills what it started by process group, also on failure; Ray
processes are found by a marker in their environment, since Ray workers and job drivers run in
process groups of their own (`ray stop` would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SWEEP = "cluster_e2e"
# search_spaces/pulse.yaml (2 learning rates = 2 trials) shrunk to ~20 s per trial on a CPU.
TINY = {
    "name": SWEEP,
    "model.width": 16,
    "model.depth": 1,
    "model.head_dim": 16,
    "model.seq_len": 32,
    "train.steps": 20,
    "train.batch_size": 4,
    "train.eval_every": 10,
    "train.eval_batches": 1,
    "train.log_every": 5,
    "tracking.log_every_s": 0.5,
    "resources.max_concurrent_trials": 2,
}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")

pytestmark = pytest.mark.timeout(480)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    """The folder of `initdb`, `postgres`, `psql`: on PATH, else /usr/lib/postgresql/N/bin."""
    names = ("initdb", "postgres", "psql", "pg_isready")
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if all((folder / name).is_file() for name in names):
            return folder
    return None


def wait_for(what: str, check, *, timeout: float, proc: subprocess.Popen | None, log: Path):
    """Poll `check()` until it returns a truthy value; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if value := check():
                return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else f"({path} missing)"


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10) -> None:
    """Signal the process group `proc` leads (it was started with start_new_session), then
    SIGKILL the group if it is not gone within `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def marked_pids(marker: bytes) -> list[int]:
    """Live processes whose environment holds `marker` (inherited from the Ray head's env)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):  # zombies are dead; only their parent can reap them
            pids.append(int(entry.name))
    return pids


def kill_marked_groups(marker: bytes, timeout: float = 20) -> None:
    """SIGKILL the process group of every process carrying `marker`, until none is left."""
    own_group = os.getpgid(0)
    deadline = time.monotonic() + timeout
    while (pids := marked_pids(marker)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                group = os.getpgid(pid)
                if group != own_group:
                    os.killpg(group, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# PostgreSQL, owned by the test
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    bin: Path
    port: int
    admin: str
    admin_password: str


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A private PostgreSQL cluster: initdb into a temp dir, `postgres` on a free loopback port
    in its own process group, password (SCRAM) logins only. Runs as the `postgres` OS user when
    the test runs as root (PostgreSQL refuses to run as root)."""
    folder = postgres_bin()
    if folder is None:
        pytest.skip(
            "no PostgreSQL binaries (initdb, postgres, psql) on PATH or in "
            "/usr/lib/postgresql/*/bin; install Debian's `postgresql` (./scripts/test.sh does, "
            "as root)"
        )
    run_as: dict = {}
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, but there is no `postgres` OS user to run PostgreSQL")
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="scalesweep-pg-"))
    data, log = root / "data", root / "postgres.log"
    admin, admin_password = "scalesweep_admin", secrets.token_urlsafe(16)
    (root / "pwfile").write_text(admin_password + "\n")
    if run_as:
        for path in (root, root / "pwfile"):
            os.chown(path, run_as["user"], run_as["group"])
    env = {"PATH": f"{folder}:/usr/bin:/bin", "LC_ALL": "C", "HOME": str(root)}
    subprocess.run(
        [
            folder / "initdb",
            *("-D", data, "-U", admin, f"--pwfile={root / 'pwfile'}"),
            *("--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"),
        ],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        **run_as,
    )
    port = free_port()
    with log.open("w") as out:
        if run_as:
            os.chown(log, run_as["user"], run_as["group"])
        server = subprocess.Popen(
            [
                folder / "postgres",
                *("-D", data, "-p", str(port), "-k", root),
                *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,
        )
    try:
        wait_for(
            "PostgreSQL",
            lambda: (
                subprocess.run(
                    [folder / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
                ).returncode
                == 0
            ),
            timeout=60,
            proc=server,
            log=log,
        )
        yield Postgres(folder, port, admin, admin_password)
    finally:
        stop_group(server, signal.SIGINT)  # SIGINT: PostgreSQL's "fast" shutdown
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# MLflow tracking server (clusters/mlflow/), Ray head (clusters/local/)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def mlflow_server(postgres: Postgres, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """clusters/mlflow/setup-postgres.sh, then clusters/mlflow/start.sh on a free loopback
    port; yields (http URL, artifacts folder)."""
    db_password = secrets.token_urlsafe(16)
    setup = subprocess.run(
        ["bash", REPO / "clusters/mlflow/setup-postgres.sh"],
        env={
            "PATH": f"{postgres.bin}:/usr/bin:/bin",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(postgres.port),
            "PGUSER": postgres.admin,
            "PGPASSWORD": postgres.admin_password,
            "MLFLOW_DB_PASSWORD": db_password,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    uri = setup.stdout.strip().splitlines()[-1].removeprefix("MLFLOW_BACKEND_STORE_URI=")
    assert uri == f"postgresql+psycopg://mlflow@127.0.0.1:{postgres.port}/mlflow"
    port, artifacts, log = free_port(), tmp_path / "mlartifacts", tmp_path / "mlflow.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            ["bash", REPO / "clusters/mlflow/start.sh"],
            cwd=tmp_path,
            env={
                **os.environ,
                "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "MLFLOW_BACKEND_STORE_URI": uri,
                "PGPASSWORD": db_password,  # libpq reads it; the URI holds no password
                "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts),
                "MLFLOW_HOST": "127.0.0.1",
                "MLFLOW_PORT": str(port),
                "MLFLOW_WORKERS": "1",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # mlflow server starts worker children: one group to stop
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "mlflow server",
            lambda: requests.get(f"{url}/health", timeout=2).ok,
            timeout=120,
            proc=server,
            log=log,
        )
        yield url, artifacts
    finally:
        stop_group(server)


@dataclass(frozen=True)
class RayHead:
    dashboard: str
    client_env: dict[str, str]
    token: str


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[RayHead]:
    """clusters/local/start-head.sh --block: a Ray head with the dashboard and jobs API on
    127.0.0.1, its own ports, temp dir and token (so ~/.ray/auth_token is left alone)."""
    token, marker = secrets.token_hex(16), f"SCALESWEEP_E2E_CLUSTER={uuid.uuid4().hex}"
    temp = Path(tempfile.mkdtemp(prefix="ssray-"))  # short: Ray's socket paths are length-bound
    dashboard_port, log = free_port(), tmp_path / "ray-head.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    client_env = {
        **base,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    head_env = {
        **client_env,
        marker.split("=")[0]: marker.split("=")[1],
        "RAY_PORT": str(free_port()),
        "RAY_DASHBOARD_PORT": str(dashboard_port),
        "SCALESWEEP_CACHE_DIR": str(tmp_path / "cache"),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    with log.open("w") as out:
        head = subprocess.Popen(
            [
                *("bash", REPO / "clusters/local/start-head.sh", "--block"),
                *("--num-cpus", "2", "--num-gpus", "0", "--temp-dir", str(temp)),
                *("--ray-client-server-port", str(free_port())),
                *("--dashboard-agent-listen-port", str(free_port())),
            ],
            env=head_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_for(
            "Ray head (jobs API)",
            lambda: (
                requests.get(
                    f"{dashboard}/api/jobs/",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=2,
                ).ok
            ),
            timeout=120,
            proc=head,
            log=log,
        )
        yield RayHead(dashboard, client_env, token)
    finally:
        # `ray start --block` stops the processes it started on SIGTERM; workers and job
        # drivers live in process groups of their own: kill those found by the marker.
        with contextlib.suppress(ProcessLookupError):
            head.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(15)
        stop_group(head, signal.SIGKILL, grace=0)
        kill_marked_groups(marker.encode())
        shutil.rmtree(temp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------


def test_ray_job_submit_sweep_logs_parent_and_children_to_the_postgres_mlflow_server(
    postgres: Postgres, mlflow_server: tuple[str, Path], ray_head: RayHead, tmp_path: Path
) -> None:
    # Rule: `ray job submit --working-dir . --runtime-env clusters/runtime_env.yaml -- scalesweep
    # sweep search_spaces/pulse.yaml` against a token-authenticated Ray head succeeds, and the
    # tracking server holds one finished parent run and one completed child run per trial,
    # with per-step metrics and the parent's artifact (stored through the server).
    url, artifacts = mlflow_server
    auth = {"Authorization": f"Bearer {ray_head.token}"}
    job = f"{SWEEP}-{uuid.uuid4().hex[:8]}"
    overrides = {**TINY, "tracking.uri": url, "storage_path": str(tmp_path / "storage")}
    submit = subprocess.run(
        [VENV_BIN / "ray", "job", "submit", "--address", ray_head.dashboard, "--no-wait"]
        + ["--submission-id", job, "--working-dir", REPO]
        + ["--runtime-env", REPO / "clusters/runtime_env.yaml", "--"]
        + ["scalesweep", "sweep", "search_spaces/pulse.yaml"]
        + [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")],
        env=ray_head.client_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    try:
        deadline, status = time.monotonic() + 300, None
        while time.monotonic() < deadline:
            reply = requests.get(f"{ray_head.dashboard}/api/jobs/{job}", headers=auth, timeout=10)
            status = reply.json()["status"] if reply.ok else None
            if status in TERMINAL:
                break
            time.sleep(2)
        logs = requests.get(f"{ray_head.dashboard}/api/jobs/{job}/logs", headers=auth, timeout=10)
        assert status == "SUCCEEDED", f"job {job}: {status}\n{logs.json()['logs'][-6000:]}"
    finally:
        if status not in TERMINAL:
            with contextlib.suppress(requests.RequestException):
                requests.post(f"{ray_head.dashboard}/api/jobs/{job}/stop", headers=auth, timeout=10)

    api = f"{url}/api/2.0/mlflow"
    experiment = requests.get(
        f"{api}/experiments/get-by-name", params={"experiment_name": SWEEP}, timeout=10
    )
    assert experiment.ok, experiment.text
    experiment_id = experiment.json()["experiment"]["experiment_id"]

    def runs(role: str) -> list[dict]:
        reply = requests.post(
            f"{api}/runs/search",
            json={
                "experiment_ids": [experiment_id],
                "filter": f"tags.`scalesweep.role` = '{role}'",
                "max_results": 100,
            },
            timeout=10,
        )
        assert reply.ok, reply.text
        return reply.json().get("runs", [])

    def tags(run: dict) -> dict[str, str]:
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    parents, children = runs("sweep"), runs("trial")
    assert len(parents) == 1 and parents[0]["info"]["status"] == "FINISHED"
    parent_id = parents[0]["info"]["run_id"]
    assert len(children) == 2
    lrs = set()
    for child in children:
        assert tags(child)["mlflow.parentRunId"] == parent_id
        assert tags(child)["status"] == "completed"
        assert child["info"]["status"] == "FINISHED"
        metrics = {m["key"] for m in child["data"]["metrics"]}
        assert {"init_loss", "final_val_loss", "params", "tokens", "flops"} <= metrics
        lrs |= {p["value"] for p in child["data"]["params"] if p["key"] == "optim.lr"}
        history = requests.get(
            f"{api}/metrics/get-history",
            params={"run_id": child["info"]["run_id"], "metric_key": "train/loss"},
            timeout=10,
        ).json()["metrics"]
        assert sorted(m["step"] for m in history) == [5, 10, 15, 20]
    assert lrs == {"0.01", "0.003"}  # pulse.yaml's two learning rates
    listed = requests.get(f"{api}/artifacts/list", params={"run_id": parent_id}, timeout=10)
    assert "sweep.yaml" in {f["path"] for f in listed.json().get("files", [])}
    assert list(artifacts.rglob("sweep.yaml")), "the parent's artifact is not in the server's store"
