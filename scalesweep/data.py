"""Reading token shards, the built-in corpus, and random-window batches.

Writing shards (`scalesweep data prepare`) is `scalesweep.shards`. A shard directory holds
`train.bin` and `val.bin` (flat uint16 or uint32 token ids, memory-mapped when read) and
`meta.json` (tokenizer, vocab size, token counts, how the split was made).
`meta.json` is written last, so a directory with one is complete.

Documents are tokenized one at a time and each is followed by the tokenizer's end-of-text id when
it has one (ASCII RS, byte 0x1E, for the byte tokenizer). The validation split is made of whole
documents plus at most one contiguous document tail (see `split_documents`), so no token position
is in both splits.

Batches are random windows whose starts come from `np.random.default_rng([seed, step, index])`:
a batch depends only on its coordinates, so a run resumed at step k sees exactly the batches it
would have seen, with no sampler state to save.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from scalesweep.errors import UserError

BUILTIN = "builtin"
"""The `data.path` value meaning the shipped Shakespeare + Milton corpus."""
BYTE_TOKENIZER = "byte"
BYTE_VOCAB_SIZE = 256
BYTE_EOT = 0x1E
"""ASCII record separator: never occurs in ordinary text, so it can end documents."""

FORMAT_VERSION = 1
"""Bump when the shard layout or the split method changes; it is part of the builtin cache key."""

BUILTIN_VAL_FRACTION = 0.02
"""The built-in corpus has 6.4M tokens; 2% is about 128k tokens, roughly one play."""
BUILTIN_CORPUS = "shakespeare_milton.txt.xz"
BUILTIN_DOCUMENT_SEPARATOR = "\x1e"
"""How the shipped corpus file separates its documents (see corpus/build_corpus.py)."""


@dataclass(frozen=True)
class TokenShards:
    train: np.ndarray
    """1-D memmap (uint16 or uint32) of training tokens."""
    val: np.ndarray
    """1-D memmap of held-out tokens, disjoint from `train`."""
    vocab_size: int
    tokenizer: str
    """"byte", or the tokenizer.json path recorded in meta.json."""


# --- bytes <-> tokens --------------------------------------------------------------------------


def encode_bytes(text: str) -> np.ndarray:
    """UTF-8 bytes of `text` as uint16 token ids (vocab 256)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)


def decode_bytes(tokens: np.ndarray | Sequence[int]) -> str:
    """Inverse of `encode_bytes`. A window can cut a multi-byte character, hence `replace`."""
    return np.asarray(tokens, dtype=np.uint8).tobytes().decode("utf-8", errors="replace")


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


def load_shards(path: str | os.PathLike[str]) -> TokenShards:
    """Memory-map the shards at `path`, or the built-in corpus when `path == "builtin"`.

    The built-in corpus is tokenized once into a cache directory (see `builtin_dir`); later calls
    only read meta.json and map the two files.
    """
    directory = builtin_dir() if str(path) == BUILTIN else Path(path)
    meta = read_meta(directory)
    dtype = np.dtype(meta["dtype"])
    return TokenShards(
        train=_memmap(directory / "train.bin", dtype, int(meta["train_tokens"])),
        val=_memmap(directory / "val.bin", dtype, int(meta["val_tokens"])),
        vocab_size=int(meta["vocab_size"]),
        tokenizer=str(meta["tokenizer"]),
    )


# --- the built-in corpus -----------------------------------------------------------------------


def _builtin_corpus_bytes() -> bytes:
    return resources.files("scalesweep").joinpath("corpus", BUILTIN_CORPUS).read_bytes()


def cache_root() -> Path:
    """$SCALESWEEP_CACHE_DIR, else ~/.cache/scalesweep."""
    configured = os.environ.get("SCALESWEEP_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "scalesweep"


def builtin_dir() -> Path:
    """The built-in corpus as shards, prepared on first use.

    The directory name hashes the compressed corpus and the split settings, so a changed corpus
    or split never reuses a stale cache. Several Ray trials on one node may get here at once:
    each prepares into its own temporary directory and renames it into place; a rename that loses
    the race is discarded, and every caller ends up reading the winner's complete directory.
    """
    compressed = _builtin_corpus_bytes()
    key = hashlib.sha256(compressed)
    key.update(f"v{FORMAT_VERSION} val={BUILTIN_VAL_FRACTION} seed=0".encode())
    final = cache_root() / f"builtin-{key.hexdigest()[:12]}"
    if (final / "meta.json").is_file():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create the cache directory {final.parent} ({error}); point "
            "SCALESWEEP_CACHE_DIR at a writable directory"
        ) from error
    from scalesweep import shards  # writing is needed once per cache, not per read

    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        text = lzma.decompress(compressed).decode("utf-8")
        shards.write_shards(
            text.split(BUILTIN_DOCUMENT_SEPARATOR),
            tmp,
            tokenizer=BYTE_TOKENIZER,
            val_fraction=BUILTIN_VAL_FRACTION,
            seed=0,
            sources=[f"scalesweep/corpus/{BUILTIN_CORPUS}"],
        )
        try:
            os.replace(tmp, final)
        except OSError as error:
            # Another process renamed its copy first (the target is a non-empty directory).
            if not (final / "meta.json").is_file():
                raise UserError(
                    f"cannot move the prepared built-in corpus to {final} ({error}); if that "
                    "directory is left over from an interrupted run, delete it"
                ) from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
