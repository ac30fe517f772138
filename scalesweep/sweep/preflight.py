"""Checks that need the cluster but no compute: run before any trial starts.

On a multi-node cluster every node must reach the same tracking store and the same trial
storage. A SQLite file or a local directory exists on one node only, so trials elsewhere would
write to stores nobody reads: refuse them with an error that says what to do instead.
"""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from scalesweep.errors import UserError
from scalesweep.experiment import Experiment
from scalesweep.tracking import is_local_uri, resolve_tracking_uri


def alive_nodes() -> list[dict[str, object]]:
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def is_loopback_url(uri: str) -> bool:
    """An http(s) URL whose host is this machine only (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(uri).hostname if uri.startswith(("http://", "https://")) else None
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def check_tracking_for_cluster(uri: str, n_nodes: int) -> None:
    if n_nodes > 1 and is_local_uri(uri):
        raise UserError(
            f"tracking.uri: got {uri!r}, a local store, on a cluster of {n_nodes} nodes; trials "
            "on other nodes cannot write to it. Start the tracking server in clusters/mlflow/ "
            "and set tracking.uri (or MLFLOW_TRACKING_URI) to its http:// address"
        )
    if n_nodes > 1 and is_loopback_url(uri):
        raise UserError(
            f"tracking.uri: got {uri!r}, a loopback address, on a cluster of {n_nodes} nodes; "
            "trials on other nodes would look for the server on their own machine. Start the "
            "server in clusters/mlflow/ on an address every node reaches (MLFLOW_HOST=<private "
            "IP>) and set tracking.uri (or MLFLOW_TRACKING_URI) to http://<that IP>:<port>"
        )


def check_storage_for_cluster(storage: Path, explicit: bool, n_nodes: int) -> None:
    """The storage path must be set explicitly and be visible from every node."""
    if n_nodes <= 1:
        return
    if not explicit:
        raise UserError(
            f"storage_path: not set, so trials would write under {storage}, a local directory, "
            f"on a cluster of {n_nodes} nodes; set storage_path to shared storage (NFS, or a "
            "bucket mounted at the same path on every node)"
        )
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    storage.mkdir(parents=True, exist_ok=True)
    marker = storage / f".scalesweep-probe-{uuid.uuid4().hex}"
    marker.write_text("probe")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return Path(path).is_file()

    try:
        checks = {
            str(node["NodeID"]): sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(str(node["NodeID"]), soft=False)
            ).remote(str(marker))
            for node in alive_nodes()
        }
        blind = [node for node, ref in checks.items() if not ray.get(ref, timeout=60)]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise UserError(
            f"storage_path: {storage} is not shared storage: node(s) {', '.join(blind)} cannot "
            "see it. Use a path on NFS or a bucket mounted at the same path on every node"
        )


def preflight(experiment: Experiment, *, address: str | None) -> None:
    """Connect to the cluster named by `address` (if any) and check it can run this sweep."""
    if address is None:
        return
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    n_nodes = len(alive_nodes())
    config = experiment.config
    check_tracking_for_cluster(resolve_tracking_uri(config.tracking.uri), n_nodes)
    storage = Path(config.storage_path or "runs").resolve()
    check_storage_for_cluster(storage, config.storage_path is not None, n_nodes)
