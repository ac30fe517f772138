"""Reading token shards and random-window batches.

Writing shards (`scalesweep data prepare`, the built-in corpus's first use) is
`scalesweep.shards`; what the two agree on (the byte tokenizer, the format version) is
`scalesweep.shard_format`, below both; a `data.path`, the built-in corpus included, is resolved
and read by `scalesweep.data_path`, above both. A shard directory holds `train.bin` and `val.bin`
(flat uint16 or uint32 token ids, memory-mapped when read) and `meta.json` (tokenizer, vocab
size, token counts, how the split was made). `meta.json` is written last, so a directory with
one is complete.

Documents are tokenized one at a time and each is followed by the tokenizer's end-of-text id when
it has one (ASCII RS, byte 0x1E, for the byte tokenizer). The validation split is made of whole
documents plus at most one contiguous document tail (see `shards.split_documents`), so no token
position is in both splits.

Batches are random windows whose starts come from `np.random.default_rng([seed, step, index])`:
a batch depends only on its coordinates, so a run resumed at step k sees exactly the batches it
would have seen, with no sampler state to save.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scalesweep.errors import UserError

BUILTIN = "builtin"
"""The `data.path` value meaning the shipped Shakespeare + Milton corpus."""


@dataclass(frozen=True)
class TokenShards:
    train: np.ndarray
    """1-D memmap (uint16 or uint32) of training tokens."""
    val: np.ndarray
    """1-D memmap of held-out tokens, disjoint from `train`."""
    vocab_size: int
    tokenizer: str
    """"byte", or the tokenizer.json path recorded in meta.json."""


# --- batches -----------------------------------------------------------------------------------


def sample_batch(
    tokens: np.ndarray, *, batch_size: int, seq_len: int, seed: int, step: int, index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`batch_size` random windows of `seq_len + 1` tokens: x is the first seq_len, y the last.

    Window starts come from `np.random.default_rng([seed, step, index])`, so the batch is a pure
    function of its coordinates. `index` tells apart micro-batches and ranks within one step.
    Returns int64 arrays of shape (batch_size, seq_len).
    """
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, but got {batch_size=}, {seq_len=}")
    n = len(tokens)
    if n < seq_len + 1:
        raise ValueError(
            f"a window needs seq_len + 1 = {seq_len + 1} tokens, but the token array holds {n}"
        )
    rng = np.random.default_rng([seed, step, index])
    starts = rng.integers(0, n - seq_len, size=batch_size)  # the last window ends at n - 1
    return windows(tokens, starts, seq_len)


def windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of `seq_len + 1` tokens at `starts`: (x, y), int64, y shifted by one.

    Example:
        >>> x, y = windows(np.arange(10), np.array([0, 5]), 3)
        >>> x.tolist(), y.tolist()
        ([[0, 1, 2], [5, 6, 7]], [[1, 2, 3], [6, 7, 8]])
    """
    cut = np.asarray(tokens[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int64)
    return np.ascontiguousarray(cut[:, :-1]), np.ascontiguousarray(cut[:, 1:])


# --- reading shards ----------------------------------------------------------------------------

SHARD_FILES = ("train.bin", "val.bin", "meta.json")


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """meta.json of a shard directory, checked for the keys `load_shards` needs."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(
            f"data.path: {directory} is not a directory (expected train.bin, val.bin and "
            f"meta.json from `scalesweep data prepare`, or {BUILTIN!r})"
        )
    missing = [name for name in SHARD_FILES if not (directory / name).is_file()]
    if missing:
        raise UserError(
            f"data.path: {directory} is missing {', '.join(missing)}; make it with "
            "`scalesweep data prepare`"
        )
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"data.path: cannot read {directory / 'meta.json'}: {error}") from error
    required = ("vocab_size", "tokenizer", "dtype", "train_tokens", "val_tokens")
    absent = [key for key in required if not isinstance(meta, dict) or key not in meta]
    if absent:
        raise UserError(f"data.path: {directory / 'meta.json'} lacks {', '.join(absent)}")
    if meta["dtype"] not in ("uint16", "uint32"):
        raise UserError(
            f"data.path: {directory / 'meta.json'} has dtype {meta['dtype']!r}; "
            "expected 'uint16' or 'uint32'"
        )
    return meta


def _memmap(file: Path, dtype: np.dtype[Any], count: int) -> np.ndarray:
    size = file.stat().st_size
    if size != count * dtype.itemsize:
        raise UserError(
            f"data.path: {file} holds {size // dtype.itemsize} tokens but meta.json says {count}; "
            "the directory is corrupt or partly written, prepare it again"
        )
    if count == 0:  # numpy cannot map an empty file
        return np.zeros(0, dtype=dtype)
    return np.memmap(file, dtype=dtype, mode="r", shape=(count,))


def model_vocab(configured: int | None, data_vocab: int, data_path: str) -> int:
    """The model's vocabulary: `model.vocab_size`, which must hold the data's, else the data's."""
    if configured is None:
        return data_vocab
    if configured < data_vocab:
        raise UserError(
            f"model.vocab_size: got {configured}, but the data at {data_path} has vocab_size "
            f"{data_vocab}"
        )
    return configured


def read_shards(directory: str | os.PathLike[str]) -> TokenShards:
    """Memory-map the shards in `directory` (a `data.path` that may name the built-in corpus is
    `data_path.load_shards`); only meta.json is read, the two token files are mapped."""
    directory = Path(directory)
    meta = read_meta(directory)
    dtype = np.dtype(meta["dtype"])
    return TokenShards(
        train=_memmap(directory / "train.bin", dtype, int(meta["train_tokens"])),
        val=_memmap(directory / "val.bin", dtype, int(meta["val_tokens"])),
        vocab_size=int(meta["vocab_size"]),
        tokenizer=str(meta["tokenizer"]),
    )
