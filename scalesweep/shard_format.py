"""What reading (`scalesweep.data`) and writing (`scalesweep.shards`) token shards agree on:
the byte tokenizer's ids and the version of the shard layout.

It sits below both, so the reader never imports the writer and the writer never imports the
reader.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BYTE_TOKENIZER = "byte"
BYTE_VOCAB_SIZE = 256
BYTE_EOT = 0x1E
"""ASCII record separator: never occurs in ordinary text, so it can end documents."""

FORMAT_VERSION = 1
"""Bump when the shard layout or the split method changes; it is part of the builtin cache key."""


def encode_bytes(text: str) -> np.ndarray:
    """UTF-8 bytes of `text` as uint16 token ids (vocab 256)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)


def decode_bytes(tokens: np.ndarray | Sequence[int]) -> str:
    """Inverse of `encode_bytes`. A window can cut a multi-byte character, hence `replace`."""
    return np.asarray(tokens, dtype=np.uint8).tobytes().decode("utf-8", errors="replace")
