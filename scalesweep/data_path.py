"""What a `data.path` names, read: a shard directory, or the built-in corpus prepared on first use.

This is the one module that both writes (the built-in corpus's cache, `scalesweep.shards`) and
reads (`scalesweep.data`), so that neither of those imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path

from scalesweep.data import BUILTIN, TokenShards, read_shards
from scalesweep.shards import builtin_dir


def shard_dir(path: str | os.PathLike[str]) -> Path:
    """The shard directory `path` names: the built-in corpus's cache (prepared on first use, see
    `shards.builtin_dir`) when `path == "builtin"`, else `path` itself."""
    return builtin_dir() if str(path) == BUILTIN else Path(path)


def load_shards(path: str | os.PathLike[str]) -> TokenShards:
    """Memory-map the shards at `path`, or the built-in corpus when `path == "builtin"`.

    The built-in corpus is tokenized once into a cache directory; later calls only read
    meta.json and map the two files.
    """
    return read_shards(shard_dir(path))
