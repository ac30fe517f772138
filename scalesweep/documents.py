"""Input files as documents for `scalesweep data prepare`: UTF-8 text, JSON lines, Parquet.

A text file (any suffix but those below) is one document; each line of a `.jsonl` or `.ndjson`
file is one (its `text_field` string); each row of a `.parquet` file is one (its `text_field`
column). `.json` is refused as ambiguous. Tokenizing and writing them is `scalesweep.shards`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from scalesweep.errors import UserError


def read_documents(path: Path, text_field: str) -> Iterator[str]:
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
