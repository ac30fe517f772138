"""Writing token shards: `scalesweep data prepare` and the built-in corpus's first use.

Text, JSONL or Parquet documents are tokenized one at a time (UTF-8 bytes or a local HF
`tokenizer.json`), each followed by the end-of-text id, streamed to disk, then split into
`train.bin` and `val.bin` by whole documents (see `split_documents`); `meta.json` is written
last. Reading them back is `scalesweep.data`.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from scalesweep.data import BYTE_EOT, BYTE_TOKENIZER, BYTE_VOCAB_SIZE, FORMAT_VERSION, encode_bytes
from scalesweep.errors import UserError

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

    A UTF-8 text file (any suffix but those below) is one document; each line of a `.jsonl` or
    `.ndjson` file is one (its `text_field` string); each row of a `.parquet` file is one (its
    `text_field` column). `.json` is refused as ambiguous. An input that is missing, unreadable,
    or holds no text raises `UserError` naming it.
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
        (text for path in paths for text in _read_documents(path, text_field)),
        out_dir,
        tokenizer=tokenizer,
        val_fraction=val_fraction,
        seed=seed,
        sources=[str(path) for path in paths],
    )


def _read_documents(path: Path, text_field: str) -> Iterator[str]:
    """The documents of one input file; raises `UserError` if it yields none."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        raise UserError(
            f"input {path}: .json is ambiguous; name JSON-lines files .jsonl (one object with a "
            f"{text_field!r} field per line)"
        )
    reader = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".parquet": _read_parquet}.get(
        suffix, _read_text
    )
    found = False
    try:
        for text in reader(path, text_field):
            if text:
                found = True
                yield text
    except UnicodeDecodeError as error:
        raise UserError(
            f"input {path} is not UTF-8 text ({error}); convert it, e.g. with iconv"
        ) from error
    except OSError as error:
        raise UserError(f"input {path} cannot be read: {error}") from error
    if not found:
        what = "" if reader is _read_text else f" in field {text_field!r}"
        raise UserError(f"input {path} holds no text{what}")


def _read_text(path: Path, text_field: str) -> Iterator[str]:
    yield path.read_text(encoding="utf-8")


def _read_jsonl(path: Path, text_field: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"input {path} line {number} is not JSON: {error}") from error
            if not isinstance(record, dict) or text_field not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise UserError(
                    f"input {path} line {number} has no field {text_field!r} (found {keys}); "
                    "choose the field with --text-field"
                )
            text = record[text_field]
            if not isinstance(text, str):
                raise UserError(
                    f"input {path} line {number}: field {text_field!r} is "
                    f"{type(text).__name__}, expected a string"
                )
            yield text


def _read_parquet(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except pa.ArrowException as error:
        raise UserError(f"input {path} cannot be read as Parquet: {error}") from error
    columns = file.schema_arrow.names
    if text_field not in columns:
        raise UserError(
            f"input {path} has no column {text_field!r} (found {columns}); "
            "choose the column with --text-field"
        )
    column_type = file.schema_arrow.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise UserError(
            f"input {path}: column {text_field!r} has type {column_type}, expected strings"
        )
    for batch in file.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if text is not None:
                yield text


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
