"""`scalesweep data prepare INPUT... --out DIR` and `scalesweep data info PATH`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data",
        help="prepare token shards, or show what a shard directory holds",
        description="Token shards: train.bin, val.bin (flat token ids) and meta.json.",
    )
    actions = parser.add_subparsers(
        dest="data_command", required=True, metavar="ACTION", help="prepare or info"
    )

    prepare = actions.add_parser(
        "prepare",
        help="tokenize text, JSONL or Parquet files into a shard directory",
        description=(
            "Tokenize files into OUT/train.bin, OUT/val.bin and OUT/meta.json. A text file is one "
            "document; each .jsonl line and each .parquet row is one document. Validation holds "
            "out whole documents (plus at most one document's tail)."
        ),
    )
    prepare.add_argument(
        "inputs",
        type=Path,
        nargs="+",
        metavar="INPUT",
        help=".txt (or any text), .jsonl or .parquet files",
    )
    prepare.add_argument("--out", type=Path, required=True, help="output directory")
    prepare.add_argument(
        "--tokenizer",
        default="byte",
        help="'byte' (UTF-8 bytes, vocab 256) or a local HF tokenizer.json "
        "(needs: pip install scalesweep[tokenizers]); default: byte",
    )
    prepare.add_argument(
        "--text-field",
        default="text",
        help="JSONL field / Parquet column holding the text (default: text)",
    )
    prepare.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="share of tokens held out for validation (default: 0.01)",
    )
    prepare.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for choosing the validation documents (default: 0)",
    )
    prepare.set_defaults(func=run)

    info = actions.add_parser("info", help="print a shard directory's meta.json")
    info.add_argument("path", help="shard directory, or 'builtin' (prepared on first use)")
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return {"prepare": run_prepare, "info": run_info}[args.data_command](args)


def run_prepare(args: argparse.Namespace) -> int:
    from scalesweep.shards import DEFAULT_VAL_FRACTION, prepare_shards

    meta = prepare_shards(
        args.inputs,
        args.out,
        tokenizer=args.tokenizer,
        val_fraction=DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction,
        text_field=args.text_field,
        seed=args.seed,
    )
    print(
        f"wrote {args.out}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens "
        f"from {meta['documents']:,} documents (tokenizer {meta['tokenizer']}, "
        f"vocab {meta['vocab_size']:,}, {meta['dtype']})"
    )
    if meta["val_tokens"] <= 2048:
        # sample_batch needs seq_len + 1 tokens per window; say so now, not at the first eval.
        print(
            f"note: val holds only {meta['val_tokens']:,} tokens, so model.seq_len must be below "
            "that; raise --val-fraction for longer contexts"
        )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from scalesweep.data import read_meta
    from scalesweep.data_path import shard_dir

    directory = shard_dir(args.path)
    meta = read_meta(directory)
    print(json.dumps({"path": str(directory), **meta}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`scalesweep data ...` on its own, e.g. `main(["data", ...])`: the full CLI's arguments and
    exit codes (a `UserError` prints "error: ..." and returns 2), built from this command alone,
    so tests and scripts do not import the other commands."""
    from scalesweep.cli import main as cli_main

    return cli_main(argv, modules=(__name__,))
