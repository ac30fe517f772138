"""A run's complete state, on disk or in memory, so that it continues bit for bit on CPU.

The state is the model and optimizer, the step, ℓ0 and the last finite loss, the averaged
weights when averaging is on, and every RNG. The data position is the step itself: batches
depend only on (seed, step, index), so there is no sampler state to save.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.pt"
CHECKSUM_FILE = "state.pt.sha256"


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def snapshot(state: dict[str, Any]) -> bytes:
    """A deep copy of `state` in memory (tensors included), for forking a run."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def restore(blob: bytes, device: torch.device) -> dict[str, Any]:
    return torch.load(io.BytesIO(blob), map_location=device, weights_only=False)


PREVIOUS = "previous"
"""The checkpoint before `latest`, kept beside it: where a run goes on when `latest` is bad."""
SET_ASIDE = ".unreadable"
"""Suffix of a checkpoint folder that failed to load, renamed so that no restart tries it."""


class UnreadableCheckpoint(Exception):
    """A checkpoint file that is missing, fails its checksum, or does not load."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to the directory `path` so that a crash at any moment leaves a complete
    checkpoint: the file and its SHA-256 are written and fsynced in a temporary folder, the
    checkpoint before is kept as `previous` beside `path`, and the folder is renamed in place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    data = snapshot(state)
    (tmp / STATE_FILE).write_bytes(data)
    (tmp / CHECKSUM_FILE).write_text(hashlib.sha256(data).hexdigest())
    for file in (tmp / STATE_FILE, tmp / CHECKSUM_FILE, tmp):
        _fsync(file)
    if path.is_dir():
        previous = path.with_name(PREVIOUS)
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(path, previous)
    os.replace(tmp, path)
    _fsync(path.parent)


def load(path: Path, device: torch.device) -> dict[str, Any]:
    """The state in the checkpoint directory `path`, checked against its SHA-256 (when it has
    one); `UnreadableCheckpoint` naming the file when it cannot be used."""
    file = Path(path) / STATE_FILE
    try:
        data = file.read_bytes()
    except OSError as error:
        raise UnreadableCheckpoint(f"{file}: {error.strerror}") from None
    sums = Path(path) / CHECKSUM_FILE
    if sums.is_file() and hashlib.sha256(data).hexdigest() != sums.read_text().strip():
        raise UnreadableCheckpoint(f"{file}: its SHA-256 differs from {CHECKSUM_FILE}'s")
    try:
        return restore(data, device)
    except Exception as error:  # a truncated or garbled file: torch says so in many ways
        raise UnreadableCheckpoint(f"{file}: {type(error).__name__}: {error}") from None


def set_aside(path: Path) -> Path | None:
    """Rename an unreadable checkpoint folder to `<name>.unreadable` (numbered if taken), out
    of the way of later saves and restarts; None when another rank already did."""
    path = Path(path)
    for n in range(100):
        target = path.with_name(f"{path.name}{SET_ASIDE}{'' if n == 0 else f'.{n}'}")
        if not target.exists():
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, target)
                return target
            return None
    return None


def load_newest(
    candidates: Sequence[Path], device: torch.device, *, owner: bool = True
) -> tuple[dict[str, Any] | None, list[str]]:
    """The state of the first of `candidates` (newest first) that loads, and a line for each
    checkpoint that did not, which the `owner` sets aside on the way. (None, lines): start from
    scratch. Of a distributed trial's ranks, only rank 0 owns them: another rank that set one
    aside first would leave rank 0 a missing folder to skip, and nothing to name."""
    notes: list[str] = []
    for candidate in candidates:
        if not (Path(candidate) / STATE_FILE).is_file():
            continue  # set aside already (by rank 0, or by an earlier attempt)
        try:
            return load(candidate, device), notes
        except UnreadableCheckpoint as error:
            if not owner:
                notes.append(f"checkpoint unreadable, left for rank 0 to set aside ({error})")
                continue
            moved = set_aside(candidate)
            notes.append(
                f"checkpoint unreadable, set aside as {moved or 'by another process'} ({error})"
            )
    return None, notes
