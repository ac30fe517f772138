"""Checks that need the cluster but no compute: run before any trial starts.

Resources: a trial asking for more than any node (or the whole cluster) holds is never placed,
and Ray says nothing: Tune shows it pending forever. Refuse it, naming the key; on an
autoscaling cluster, ask for the nodes and wait a bounded time instead.

On a cluster of several machines every node must reach the same tracking store and the same
trial storage. A SQLite file or a local directory exists on one machine only, so trials
elsewhere would write to stores nobody reads: refuse them with an error that says what to do
instead. Several Ray nodes on one machine (one address) share its files and its loopback.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scalesweep.config import ResourcesConfig
from scalesweep.errors import UserError
from scalesweep.experiment import Experiment
from scalesweep.tracking import is_local_uri


def alive_nodes() -> list[dict[str, object]]:
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def machines(nodes: list[dict[str, object]]) -> int:
    """How many machines these Ray nodes run on: their distinct addresses (pure)."""
    return len({node.get("NodeManagerAddress", node.get("NodeID")) for node in nodes})


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


def check_tracking_for_cluster(uri: str, n_machines: int) -> None:
    if n_machines > 1 and is_local_uri(uri):
        raise UserError(
            f"tracking.uri: got {uri!r}, a local store, on a cluster of {n_machines} machines; "
            "trials on other machines cannot write to it. Start the tracking server in "
            "clusters/mlflow/ and set tracking.uri (or MLFLOW_TRACKING_URI) to its http:// "
            "address"
        )
    if n_machines > 1 and is_loopback_url(uri):
        raise UserError(
            f"tracking.uri: got {uri!r}, a loopback address, on a cluster of {n_machines} "
            "machines; trials on other machines would look for the server on their own "
            "machine. Start the server in clusters/mlflow/ on an address every node reaches "
            "(MLFLOW_HOST=<private IP>) and set tracking.uri (or MLFLOW_TRACKING_URI) to "
            "http://<that IP>:<port>"
        )


def check_storage_for_cluster(storage: Path, explicit: bool, n_machines: int) -> None:
    """The storage path must be set explicitly and be visible from every node."""
    if n_machines <= 1:
        return
    if not explicit:
        raise UserError(
            f"storage_path: not set, so trials would write under {storage}, a local directory, "
            f"on a cluster of {n_machines} machines; set storage_path to shared storage (NFS, or a "
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


DRIVER_CPUS = 0.01  # Tune refuses 0; a distributed trial's driver only waits on its TorchTrainer


def trial_bundles(resources: ResourcesConfig) -> list[dict[str, float]]:
    """What one trial reserves, as Ray bundles: its own process (the single worker when it
    trains in place, a CPU fraction when it drives a TorchTrainer), plus each Train worker."""
    worker = {"CPU": resources.cpus_per_worker}
    if resources.gpus_per_worker:
        worker["GPU"] = resources.gpus_per_worker
    if resources.workers_per_trial == 1:
        return [worker]
    return [{"CPU": DRIVER_CPUS}, *([worker] * resources.workers_per_trial)]


def unplaceable(resources: ResourcesConfig, nodes: list[dict[str, float]]) -> str | None:
    """Why no trial could ever start on nodes with these resources, or None (pure)."""
    per_worker = (
        ("CPU", resources.cpus_per_worker, "cpus_per_worker"),
        ("GPU", resources.gpus_per_worker, "gpus_per_worker"),
    )
    for kind, want, key in per_worker:
        largest = max((node.get(kind, 0.0) for node in nodes), default=0.0)
        if want > largest:
            have = f"the largest node has {largest:g}" if largest else f"no node has a {kind}"
            return f"resources.{key}: got {want:g}, but {have}; one worker must fit on one node"
    bundles = trial_bundles(resources)
    for kind in ("CPU", "GPU"):
        want = sum(bundle.get(kind, 0.0) for bundle in bundles)
        total = sum(node.get(kind, 0.0) for node in nodes)
        if want > total + 1e-9:
            per = resources.cpus_per_worker if kind == "CPU" else resources.gpus_per_worker
            parts = f"{resources.workers_per_trial} workers × {per:g} {kind}"
            if kind == "CPU" and resources.workers_per_trial > 1:
                parts += f" + {DRIVER_CPUS} for the trial's driver"
            return (
                f"resources.workers_per_trial × {kind.lower()}s_per_worker: a trial needs "
                f"{parts} = {want:g} {kind}s, but the cluster has {total:g}; lower "
                f"resources.workers_per_trial or {kind.lower()}s_per_worker"
            )
    if resources.gpus_per_worker > 1 and not float(resources.gpus_per_worker).is_integer():
        gpus = resources.gpus_per_worker
        return f"resources.gpus_per_worker: got {gpus:g}; above 1 it must be a whole number"
    return None


def _node_resources() -> list[dict[str, float]]:
    resources: list[dict[str, float]] = []
    for node in alive_nodes():
        given: Any = node.get("Resources") or {}
        resources.append({str(k): float(v) for k, v in given.items()})
    return resources


def check_resources(resources: ResourcesConfig) -> None:
    """Refuse a trial no node can hold, or on an autoscaling cluster wait for one (bounded)."""
    import time

    why = unplaceable(resources, _node_resources())
    if why is None:
        return
    if resources.autoscaling_timeout_s is None:
        raise UserError(
            f"{why}. (On a cluster that adds nodes on demand, set "
            "resources.autoscaling_timeout_s to wait for them.)"
        )
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=trial_bundles(resources))
    deadline = time.monotonic() + resources.autoscaling_timeout_s
    while (why := unplaceable(resources, _node_resources())) is not None:
        if time.monotonic() > deadline:
            raise UserError(
                f"{why}; the autoscaler added no node that holds it within "
                f"resources.autoscaling_timeout_s={resources.autoscaling_timeout_s:g} s"
            )
        time.sleep(5)


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start a local Ray that listens on loopback only (a
    laptop sweep needs no network, and Ray would otherwise listen on every interface)."""
    import ray

    if ray.is_initialized():
        return
    if address is None:
        # No dashboard either: it would listen on a port and start six processes on a laptop.
        ray.init(
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    else:
        # torch before `ray.init`: a driver joining a cluster of 2+ nodes that loads torch after
        # it aborts in torch's MKL ("Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so";
        # Ray 2.60, torch 2.13 CPU); loaded first, it works. A local Ray does not need it.
        import torch  # noqa: F401

        ray.init(address=address, log_to_driver=False)


def preflight(
    experiment: Experiment, tracking_uri: str, storage: Path, *, address: str | None
) -> None:
    """Connect to the cluster (or start a local one) and check it can run this sweep, whose
    resolved tracking URI and storage root the driver gives."""
    connect(address)
    config = experiment.config
    n_machines = machines(alive_nodes())
    check_tracking_for_cluster(tracking_uri, n_machines)
    check_storage_for_cluster(storage, config.storage_path is not None, n_machines)
    check_resources(config.resources)
