"""Writing token shards: `scalesweep data prepare` and the built-in corpus's first use.

Documents (input files read by `scalesweep.documents`, or the shipped corpus) are tokenized one
at a time (UTF-8 bytes or a local HF `tokenizer.json`), each followed by the end-of-text id,
streamed to disk, then split into `train.bin` and `val.bin` by whole documents (see
`split_documents`); `meta.json` is written last. Reading them back is `scalesweep.data`, which
this module does not import (what both agree on is `scalesweep.shard_format`).
"""

from __future__ import annotations

import array
import hashlib
import json
import lzma
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from scalesweep.documents import read_documents
from scalesweep.errors import UserError
from scalesweep.shard_format import (
    BYTE_EOT,
    BYTE_TOKENIZER,
    BYTE_VOCAB_SIZE,
    FORMAT_VERSION,
    encode_bytes,
)

# Special tokens that mark the end of a document in common HF tokenizers, in order of preference.
EOT_CANDIDATES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "[EOS]", "[SEP]")

DEFAULT_VAL_FRACTION = 0.01
"""1% of tokens: 100k tokens of a 10M-token corpus, about what the trainer's evaluation reads
(tens of batches × micro-batch × seq_len), so eval windows rarely repeat, while training keeps
99%. nanoGPT's 0.05% suits billions of tokens, not the corpora small sweeps use."""

# --- writing shards ----------------------------------------------------------------------------


class _Encoder(Protocol):
    name: str
    vocab_size: int
    eot_id: int | None

    def encode(self, texts: list[str]) -> list[np.ndarray]: ...


@dataclass
class _ByteEncoder:
    name: str = BYTE_TOKENIZER
    vocab_size: int = BYTE_VOCAB_SIZE
    eot_id: int | None = BYTE_EOT

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return [encode_bytes(text) for text in texts]


class _HFEncoder:
    """A local HF `tokenizer.json`, through the optional `tokenizers` package."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise UserError(
                f"tokenizer: {path!r} is neither {BYTE_TOKENIZER!r} nor an existing "
                "tokenizer.json file"
            )
        try:
            from tokenizers import Tokenizer
        except ImportError as error:
            raise UserError(
                f"tokenizer {path!r} needs the `tokenizers` package: "
                "pip install scalesweep[tokenizers]"
            ) from error
        try:
            self.tokenizer = Tokenizer.from_file(path)
        except Exception as error:  # the Rust side raises a bare Exception
            raise UserError(
                f"tokenizer: cannot load {path} as a tokenizer.json: {error}"
            ) from error
        # Absolute, because Ray trials run in another working directory.
        self.name = str(Path(path).resolve())
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        found = (self.tokenizer.token_to_id(token) for token in EOT_CANDIDATES)
        self.eot_id = next((token_id for token_id in found if token_id is not None), None)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(encoding.ids, dtype=np.int64) for encoding in encodings]


def _encoder(tokenizer: str) -> _Encoder:
    return _ByteEncoder() if tokenizer == BYTE_TOKENIZER else _HFEncoder(tokenizer)


def split_documents(
    lengths: np.ndarray, *, val_fraction: float, seed: int
) -> list[tuple[int, int, int]]:
    """Choose the validation tokens: `[(document, start, stop), ...]` offsets within documents.

    The budget is round(val_fraction · total) tokens, at least 1 and leaving at least 1 for
    training. Documents are visited in a seeded random order (so validation is not just the last
    input file), and each one that fits in what is left of the budget goes to validation whole.
    If whole documents cannot fill the budget exactly, the first visited document that did not fit
    gives its contiguous tail for the rest. So validation is whole documents plus at most one tail,
    never a scatter of fragments; with a single document it is that document's tail.
    """
    total = int(lengths.sum())
    remaining = min(max(1, round(val_fraction * total)), total - 1)
    chosen: list[tuple[int, int, int]] = []
    first_skipped: int | None = None
    for document in np.random.default_rng(seed).permutation(len(lengths)):
        if remaining == 0:
            break
        length = int(lengths[document])
        if 0 < length <= remaining:
            chosen.append((int(document), 0, length))
            remaining -= length
        elif length > remaining and first_skipped is None:
            first_skipped = int(document)
    if remaining > 0 and first_skipped is not None:
        # Every skipped document was longer than the budget left when it was visited.
        length = int(lengths[first_skipped])
        chosen.append((first_skipped, length - remaining, length))
    return chosen


def write_shards(
    documents: Iterable[str],
    out_dir: Path,
    *,
    tokenizer: str = BYTE_TOKENIZER,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    sources: Sequence[str] = (),
    chunk_documents: int = 256,
) -> dict[str, Any]:
    """Tokenize `documents` into `out_dir` (train.bin, val.bin, meta.json); return the meta.

    Tokens stream into a scratch file first, so memory stays O(number of documents); the split
    then copies ranges of it into the two shards. Empty documents are skipped.
    """
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must be in (0, 1), but got {val_fraction}")
    encoder = _encoder(tokenizer)
    dtype = np.dtype(np.uint16 if encoder.vocab_size <= 2**16 else np.uint32)
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "meta.json").unlink(missing_ok=True)  # no meta.json means "incomplete"
    try:
        return _write_shards(
            documents,
            out_dir,
            encoder,
            dtype,
            val_fraction=val_fraction,
            seed=seed,
            sources=sources,
            chunk_documents=chunk_documents,
        )
    except BaseException:
        # Inputs are read lazily, so a bad one can surface after out_dir exists; do not leave
        # behind an empty directory we made (one that existed before is left as it was).
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _tokenize(
    documents: Iterable[str], scratch: Path, encoder: _Encoder, dtype: np.dtype[Any], chunk: int
) -> np.ndarray:
    """Stream every non-empty document's tokens (plus end-of-text) into `scratch`; return the
    length of each document. Memory stays O(number of documents)."""
    lengths = array.array("q")  # 8 bytes per document, not a Python int object each
    with scratch.open("wb") as sink:
        for texts in _chunks((d for d in documents if d), chunk):
            for ids in encoder.encode(texts):
                if encoder.eot_id is not None:
                    ids = np.append(ids, encoder.eot_id)
                if ids.size and int(ids.max()) >= encoder.vocab_size:
                    raise UserError(
                        f"tokenizer {encoder.name} produced id {int(ids.max())} >= its "
                        f"vocab size {encoder.vocab_size}"
                    )
                sink.write(ids.astype(dtype).tobytes())
                lengths.append(len(ids))
    return np.frombuffer(lengths, dtype=np.int64)


def _complement(ranges: Sequence[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """The ranges of [0, total) not covered by the sorted, disjoint `ranges`."""
    out, cursor = [], 0
    for start, stop in ranges:
        if cursor < start:
            out.append((cursor, start))
        cursor = stop
    if cursor < total:
        out.append((cursor, total))
    return out


def _write_shards(
    documents: Iterable[str],
    out_dir: Path,
    encoder: _Encoder,
    dtype: np.dtype[Any],
    *,
    val_fraction: float,
    seed: int,
    sources: Sequence[str],
    chunk_documents: int,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".prepare-") as scratch_dir:
        scratch = Path(scratch_dir) / "all.bin"
        lengths = _tokenize(documents, scratch, encoder, dtype, chunk_documents)
        total = int(lengths.sum())
        if total < 2:
            raise UserError(
                f"the inputs hold {total} tokens; need at least 2 for a train and a val split"
            )
        val_parts = split_documents(lengths, val_fraction=val_fraction, seed=seed)
        all_tokens = np.memmap(scratch, dtype=dtype, mode="r", shape=(total,))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        # Validation keeps the seeded visiting order; training keeps the input order.
        val_ranges = [(int(offsets[d]) + a, int(offsets[d]) + b) for d, a, b in val_parts]
        train_ranges = _complement(sorted(val_ranges), total)
        train_tokens = _copy_ranges(all_tokens, train_ranges, out_dir / "train.bin")
        val_tokens = _copy_ranges(all_tokens, val_ranges, out_dir / "val.bin")
        del all_tokens
    whole = sum(1 for _, start, _ in val_parts if start == 0)
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "tokenizer": encoder.name,
        "vocab_size": encoder.vocab_size,
        "dtype": dtype.name,
        "eot_id": encoder.eot_id,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "documents": len(lengths),
        "val_documents": whole,
        "val_tail_documents": len(val_parts) - whole,
        "val_fraction": val_fraction,
        "seed": seed,
        "split": "whole documents in seeded random order, plus at most one document's tail",
        "sources": list(sources),
    }
    _write_text_atomic(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta


def prepare_shards(
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    tokenizer: str = BYTE_TOKENIZER,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    text_field: str = "text",
    seed: int = 0,
) -> dict[str, Any]:
    """Tokenize text, JSONL or Parquet files into shards in `out_dir`; return the meta written.

    What a document is in each kind of file: `scalesweep.documents`. An input that is missing,
    unreadable, or holds no text raises `UserError` naming it.
    """
    if not inputs:
        raise UserError("data prepare: no input files given")
    paths = [Path(path) for path in inputs]
    for path in paths:
        if path.is_dir():
            raise UserError(f"input {path} is a directory; pass its files (e.g. {path}/*.txt)")
        if not path.is_file():
            raise UserError(f"input {path} does not exist")
    return write_shards(
        (text for path in paths for text in read_documents(path, text_field)),
        out_dir,
        tokenizer=tokenizer,
        val_fraction=val_fraction,
        seed=seed,
        sources=[str(path) for path in paths],
    )


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _copy_ranges(tokens: np.ndarray, ranges: Sequence[tuple[int, int]], out: Path) -> int:
    tmp = out.with_name(out.name + ".tmp")
    count = 0
    with tmp.open("wb") as sink:
        for start, stop in ranges:
            for block in range(start, stop, 1 << 24):  # 16M tokens at a time
                sink.write(np.asarray(tokens[block : min(stop, block + (1 << 24))]).tobytes())
            count += stop - start
    os.replace(tmp, out)
    return count


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- the built-in corpus -----------------------------------------------------------------------

BUILTIN_VAL_FRACTION = 0.02
"""The built-in corpus has 6.4M tokens; 2% is about 128k tokens, roughly one play."""
BUILTIN_CORPUS = "shakespeare_milton.txt.xz"
BUILTIN_DOCUMENT_SEPARATOR = "\x1e"
"""How the shipped corpus file separates its documents (see corpus/build_corpus.py)."""


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
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        text = lzma.decompress(compressed).decode("utf-8")
        write_shards(
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
