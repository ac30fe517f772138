"""Resources no node can hold are refused before any trial; the cluster scripts keep secrets
off command lines and out of world-readable files; the embedded Ray listens on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalesweep.cli import main
from scalesweep.config import ResourcesConfig
from scalesweep.sweep import preflight
from tests.faults.conftest import sweep_file

REPO = Path(__file__).resolve().parents[2]
TWO_CPUS = [{"CPU": 2.0}]


@pytest.mark.parametrize(
    ("resources", "needle"),
    [
        ({"cpus_per_worker": 64}, "resources.cpus_per_worker: got 64"),
        ({"gpus_per_worker": 1}, "no node has a GPU"),
        ({"workers_per_trial": 4}, "4 workers × 1 CPU + 0.01"),
        # all the CPUs per worker, plus the distributed trial's own driver fraction
        ({"workers_per_trial": 2, "cpus_per_worker": 1}, "= 2.01 CPUs, but the cluster has 2"),
    ],
)
def test_unplaceable_trials_are_named(resources, needle):
    # Rule: a trial no node (or the cluster) can hold says which key asks too much; such a
    # trial used to sit pending forever with no message.
    why = preflight.unplaceable(ResourcesConfig(**resources), TWO_CPUS)
    assert why is not None and needle in why


def test_placeable_trials_pass():
    # Rule: all the CPUs of a node for one in-place trial is fine (no separate driver).
    assert preflight.unplaceable(ResourcesConfig(cpus_per_worker=2), TWO_CPUS) is None
    assert preflight.unplaceable(ResourcesConfig(workers_per_trial=2, cpus_per_worker=0.5),
                                 TWO_CPUS) is None  # fmt: skip


@pytest.mark.ray
def test_sweep_with_impossible_resources_exits_2_before_any_trial(ray_address, tmp_path, capsys):
    # Rule: against a live cluster (the session's 2-CPU Ray), the sweep exits 2 naming the key
    # and no MLflow run is created.
    path = sweep_file(tmp_path, "toobig", resources={"cpus_per_worker": 64})
    assert main(["sweep", str(path), "--address", ray_address]) == 2
    assert "resources.cpus_per_worker" in capsys.readouterr().err
    from mlflow.tracking import MlflowClient

    assert (
        MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("toobig") is None
    )


def test_embedded_ray_listens_on_loopback_only(monkeypatch):
    # Rule: a local sweep needs no network, so the Ray it starts binds 127.0.0.1 (Ray would
    # listen on every interface by default) and starts no dashboard.
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    preflight.connect(None)
    assert calls[0]["_node_ip_address"] == "127.0.0.1" and calls[0]["include_dashboard"] is False


def test_setup_postgres_keeps_the_password_off_command_lines():
    # Rule: every local user can read command lines; the password reaches psql through the
    # environment (`\set ... printenv`), and sudo passes that one variable.
    script = (REPO / "clusters/mlflow/setup-postgres.sh").read_text()
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not any('MLFLOW_DB_PASSWORD"' in line and "-v" in line for line in commands)
    assert "\\set db_password `printenv MLFLOW_DB_PASSWORD`" in script
    assert "--preserve-env=MLFLOW_DB_PASSWORD" in script


def test_ray_token_and_pgpass_are_created_private():
    # Rule: the Ray token and ~/.pgpass are created under umask 077, never world-readable first.
    head = (REPO / "clusters/local/start-head.sh").read_text()
    assert "(umask 077 && mkdir -p ~/.ray && ray get-auth-token --generate" in head
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if ".pgpass" in line and "echo" in line)
    assert line.startswith("(umask 077 &&")
