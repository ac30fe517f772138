"""clusters/: every config parses and points at files that exist, the security defaults hold,
and a sweep refuses stores that only one node can reach on a multi-node cluster."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from scalesweep.cli import main
from scalesweep.errors import UserError
from scalesweep.experiment import parse_experiment
from scalesweep.sweep import preflight

REPO = Path(__file__).resolve().parents[1]
CLUSTERS = REPO / "clusters"
YAMLS = sorted(CLUSTERS.rglob("*.yaml"))
TEXTS = [
    *sorted(p for p in CLUSTERS.rglob("*") if p.is_file()),
    REPO / "docs/cluster.md",
    REPO / "README.md",
]
SCRIPTS = sorted(CLUSTERS.rglob("*.sh"))
LAUNCHERS = [CLUSTERS / "aws.yaml", CLUSTERS / "gcp.yaml"]
# A path into the repository, written from its root or from where the nodes keep a copy
# (~/scalesweep on launcher nodes, /home/ray/scalesweep in the KubeRay image).
REPO_PATH = re.compile(
    r"(?:~/scalesweep/|\$HOME/scalesweep/|/home/ray/scalesweep/)?"
    r"\b((?:clusters|search_spaces|scripts|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_])"
)


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def documents(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_the_expected_configs_exist():
    # Rule: the list of cluster configs is all there.
    for name in (
        "local/start-head.sh",
        "local/start-worker.sh",
        "local/stop.sh",
        "kuberay/raycluster.yaml",
        "kuberay/rayjob.yaml",
        "aws.yaml",
        "gcp.yaml",
        "mlflow/start.sh",
        "mlflow/setup-postgres.sh",
        "runtime_env.yaml",
    ):
        assert (CLUSTERS / name).is_file(), name


@pytest.mark.parametrize("path", YAMLS, ids=rel)
def test_every_yaml_parses_into_mappings(path):
    # Rule: every YAML file (each document of a multi-document file) is a non-empty mapping.
    docs = documents(path)
    assert docs and all(isinstance(d, dict) and d for d in docs)


@pytest.mark.parametrize("path", TEXTS, ids=rel)
def test_every_referenced_repository_file_exists(path):
    # Rule: a search space, script or config named in a config, script or the docs exists.
    missing = {m for m in REPO_PATH.findall(path.read_text()) if not (REPO / m).exists()}
    assert not missing, f"{rel(path)} names missing files: {sorted(missing)}"


@pytest.mark.parametrize("path", SCRIPTS, ids=rel)
def test_scripts_are_executable_bash(path):
    # Rule: the scripts run as documented (`clusters/local/start-head.sh`) and fail fast.
    assert os.access(path, os.X_OK)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text


@pytest.mark.parametrize("path", TEXTS, ids=rel)
def test_no_credentials_in_committed_files(path):
    # Rule: secrets come from the environment, k8s Secrets or files outside git; never here.
    text = path.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text), "an AWS access key id"
    assert "PRIVATE KEY-----" not in text
    # user:password@host in a URI (placeholders like $VAR are not secrets)
    assert not re.search(r"://[A-Za-z0-9_.-]+:[^@\s/$]+@", text), "a password in a URI"
    for line in text.splitlines():
        match = re.search(r"(?:PASSWORD|TOKEN|SECRET)[A-Z_]*[=:]\s*['\"]?([\w+/-]{12,})", line)
        if match and not match.group(1).startswith("CHANGE_ME"):
            pytest.fail(f"{rel(path)}: a literal secret? {line.strip()}")


@pytest.mark.parametrize("path", LAUNCHERS, ids=rel)
def test_launcher_configs_have_a_gpu_type_install_scalesweep_and_keep_auth_on(path):
    # Rule: a cluster-launcher config has an autoscaled GPU worker type, installs scalesweep on
    # every node, copies the Ray token, keeps token auth on and the dashboard on loopback.
    (config,) = documents(path)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = types["gpu"]
    assert 1 <= gpu["min_workers"] <= gpu["max_workers"] <= config["max_workers"]
    assert "GPU" in gpu["resources"] or "g5" in gpu["node_config"].get("InstanceType", "")
    assert any("scalesweep[cluster]" in c for c in config["setup_commands"])
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in worker
    assert "--dashboard-host=127.0.0.1" in head
    assert "clusters/mlflow/start.sh" in head and "MLFLOW_TRACKING_URI=" in head


def test_kuberay_cluster_has_token_auth_a_cpu_head_gpu_workers_and_shared_storage():
    # Rule: the RayCluster keeps token auth on, runs no trial on the head, requests GPUs for
    # its workers, and mounts one ReadWriteMany volume everywhere.
    pvc, cluster = documents(CLUSTERS / "kuberay/raycluster.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    spec = cluster["spec"]
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (workers,) = spec["workerGroupSpecs"]
    container = workers["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert 1 <= workers["minReplicas"] <= workers["maxReplicas"]
    for group in (spec["headGroupSpec"], workers):
        volumes = group["template"]["spec"]["volumes"]
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
        ]
        assert claims == [pvc["metadata"]["name"]]


def test_rayjob_entrypoint_is_a_scalesweep_sweep_of_an_existing_search_space():
    # Rule: the RayJob runs `scalesweep sweep` on a search space shipped in the image, with
    # shared trial storage and an http tracking server, under token auth.
    (job,) = documents(CLUSTERS / "kuberay/rayjob.yaml")
    spec = job["spec"]
    words = spec["entrypoint"].split()
    assert words[:2] == ["scalesweep", "sweep"]
    search_space = REPO / words[2].removeprefix("/home/ray/scalesweep/")
    assert search_space.is_file()
    sets = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "--set")
    assert sets["storage_path"].startswith("/mnt/shared/")
    assert sets["tracking.uri"].startswith("http://")
    assert spec["rayClusterSpec"]["authOptions"]["mode"] == "token"
    overrides = [f"{key}={value}" for key, value in sets.items()]
    parse_experiment(yaml.safe_load(search_space.read_text()), overrides=overrides)


def test_runtime_env_keeps_environments_and_results_out_of_the_upload():
    # Rule: `ray job submit --working-dir .` with clusters/runtime_env.yaml uploads the package
    # and search spaces, not virtualenvs, git history or local results.
    (env,) = documents(CLUSTERS / "runtime_env.yaml")
    assert {".git/", ".venv/", "runs/", "mlruns/", "mlflow.db"} <= set(env["excludes"])
    assert not {"scalesweep/", "search_spaces/"} & set(env["excludes"])


def test_local_head_script_keeps_auth_on_and_the_dashboard_on_loopback():
    # Rule: clusters/local/start-head.sh turns token auth on and binds the dashboard and jobs
    # API to 127.0.0.1 unless RAY_DASHBOARD_HOST says otherwise.
    text = (CLUSTERS / "local/start-head.sh").read_text()
    assert "export RAY_AUTH_MODE=token" in text
    assert "RAY_DASHBOARD_HOST=${RAY_DASHBOARD_HOST:-127.0.0.1}" in text
    assert '--dashboard-host "$RAY_DASHBOARD_HOST"' in text
    assert "MLFLOW_HOST:-127.0.0.1" in (CLUSTERS / "mlflow/start.sh").read_text()


# ---------------------------------------------------------------------------------------------
# Multi-node refusals (scalesweep/sweep/preflight.py)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", ["sqlite:////tmp/mlflow.db", "file:///tmp/mlruns", "http://127.0.0.1:5000"]
)
def test_one_machine_tracking_store_is_refused_on_several_nodes(uri):
    # Rule: on a cluster of 2+ nodes, a SQLite/file store or a loopback server URL is refused
    # with an error that points at clusters/mlflow/.
    with pytest.raises(UserError, match=r"tracking\.uri: .*clusters/mlflow/"):
        preflight.check_tracking_for_cluster(uri, n_machines=2)


@pytest.mark.parametrize(
    "uri", ["sqlite:////tmp/mlflow.db", "http://127.0.0.1:5000", "http://localhost:5000"]
)
def test_one_machine_tracking_store_is_fine_on_one_node(uri):
    # Rule: on one node every store works (the embedded default is SQLite).
    preflight.check_tracking_for_cluster(uri, n_machines=1)


@pytest.mark.parametrize("uri", ["http://10.0.0.5:5000", "https://mlflow.example.org"])
def test_a_server_every_node_reaches_is_accepted_on_several_nodes(uri):
    preflight.check_tracking_for_cluster(uri, n_machines=3)


def test_nodes_count_as_machines_by_their_address():
    # Rule: Ray nodes at one address are one machine (they share its files and loopback, as
    # the two-node test's do); the refusals above count machines.
    def node(name, address):
        return {"NodeID": name, "NodeManagerAddress": address}

    assert preflight.machines([node("a", "10.0.0.1"), node("b", "10.0.0.1")]) == 1
    assert preflight.machines([node("a", "10.0.0.1"), node("b", "10.0.0.2")]) == 2
    assert preflight.machines([]) == 0


def test_unset_storage_path_is_refused_on_several_nodes(tmp_path):
    # Rule: without an explicit storage_path, trials would write to ./runs on each node.
    with pytest.raises(UserError, match=r"storage_path: not set.*shared storage"):
        preflight.check_storage_for_cluster(tmp_path / "runs", explicit=False, n_machines=2)
    preflight.check_storage_for_cluster(tmp_path / "runs", explicit=False, n_machines=1)


def test_storage_path_a_node_cannot_see_is_refused(tmp_path, monkeypatch):
    # Rule: an explicit storage_path that some node does not see (its probe file is missing
    # there) is refused, naming the node. The probe's answer is faked: on one machine every
    # "node" shares the filesystem.
    ray = pytest.importorskip("ray")

    class Remote:
        def options(self, **_):
            return self

        def remote(self, path):
            return path

    monkeypatch.setattr(ray, "remote", lambda **_: lambda fn: Remote())
    monkeypatch.setattr(ray, "get", lambda path, timeout: path.endswith("never"))
    nodes = ["a" * 56, "b" * 56]  # Ray node IDs are 28 bytes of hex
    monkeypatch.setattr(preflight, "alive_nodes", lambda: [{"NodeID": n} for n in nodes])
    with pytest.raises(UserError, match=f"not shared storage: node\\(s\\) {nodes[0]}, {nodes[1]}"):
        preflight.check_storage_for_cluster(tmp_path / "runs", explicit=True, n_machines=2)
    assert not list((tmp_path / "runs").glob(".scalesweep-probe-*")), "probe file left behind"


def test_sweep_on_a_multi_node_cluster_with_sqlite_exits_2_naming_clusters_mlflow(
    tmp_path, monkeypatch, capsys
):
    # Rule: `scalesweep sweep --address ...` on a cluster of 2 nodes with the embedded SQLite
    # default prints "error: tracking.uri ... clusters/mlflow/" and exits 2 before any trial.
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # "connected" to the cluster
    two = [{"NodeID": n, "NodeManagerAddress": f"10.0.0.{i}"} for i, n in enumerate("ab")]
    monkeypatch.setattr(preflight, "alive_nodes", lambda: two)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    sweep = REPO / "search_spaces/pulse.yaml"
    assert main(["sweep", str(sweep), "--address", "10.0.0.1:6379"]) == 2
    assert "clusters/mlflow/" in capsys.readouterr().err
    # With a server but no storage_path, the next refusal names storage_path. The server
    # "answers" without a request: nothing here may reach an address other than 127.0.0.1.
    from scalesweep import tracking

    monkeypatch.setattr(tracking, "check_reachable", lambda uri: None)
    args = ["sweep", str(sweep), "--address", "10.0.0.1:6379", "--set"]
    assert main([*args, "tracking.uri=http://10.0.0.5:5000"]) == 2
    assert "storage_path: not set" in capsys.readouterr().err
