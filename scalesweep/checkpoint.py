"""A run's complete state, on disk or in memory, so that it continues bit for bit on CPU.

The state is the model and optimizer, the step, ℓ0 and the last finite loss, the averaged
weights when averaging is on, and every RNG. The data position is the step itself: batches
depend only on (seed, step, index), so there is no sampler state to save.
"""

from __future__ import annotations

import io
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalesweep.errors import UserError

STATE_FILE = "state.pt"


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


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to the directory `path` atomically: a crash leaves the old or the new."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load(path: Path, device: torch.device) -> dict[str, Any]:
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise UserError(f"resume: no checkpoint at {file}")
    return torch.load(file, map_location=device, weights_only=False)
