"""One driver per sweep: a lock file beside the sweep's storage folder, held while it runs.

Two drivers of one sweep (same name, same storage) would both schedule every trial: two parent
runs, every child run twice, and in place each resuming from the other's checkpoints. The lock
is an OS lock (`flock`) on `<storage_path>/<name>.lock`: the kernel releases it when the
driver exits in any way, kill -9 included, so a lock left behind does not block the next sweep.
The file names the driver holding it, for the message the second driver prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from scalesweep.config import ExperimentConfig
from scalesweep.errors import UserError


def lock_path(config: ExperimentConfig) -> Path | None:
    """`<storage_path>/<name>.lock`, beside the folder a fresh sweep replaces; None for a
    storage URL (refused later, naming storage_path)."""
    root = config.storage_path or "runs"
    return None if "://" in root else Path(root).resolve() / f"{config.name}.lock"


@contextlib.contextmanager
def sweep_lock(config: ExperimentConfig) -> Iterator[None]:
    """Hold the sweep's lock for the block, or refuse (exit 2) naming the driver that holds it."""
    path = lock_path(config)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(_held_message(config.name, path)) from None
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _held_message(name: str, path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        who = (
            f"pid {holder['pid']} on {holder['host']}, since {holder['started']}: "
            f"{holder['command']}"
        )
    except (OSError, ValueError, KeyError):
        who = "another driver"
    return (
        f"sweep {name!r} is running already ({who}); its lock is {path}. Wait for it, stop it "
        "(Ctrl-C), or give this one another name. If no driver of it runs (its machine died "
        f"with the lock on shared storage), delete {path} and pass --resume"
    )
