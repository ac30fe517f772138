"""Token shards, the built-in corpus, random-window batches and `scalesweep data`."""

from __future__ import annotations

import json
import lzma
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scalesweep import data, shard_format
from scalesweep import shards as writer
from scalesweep.commands.data import main
from scalesweep.data_path import load_shards
from scalesweep.errors import UserError

SEP = bytes([shard_format.BYTE_EOT])

DOCS = [
    "First document.\nIt has two lines.\n",
    "Zweites Dokument: Grüße, naïve café, 日本語 and an emoji 🙂.\n",
    "Third one, a little longer than the others, so that whole-document selection has to choose "
    "among documents of different sizes. " * 3,
    "4th.",
]


def _bytes(tokens: np.ndarray) -> bytes:
    return np.asarray(tokens, dtype=np.uint8).tobytes()


def assert_documents_recovered(docs: list[str], out: Path) -> None:
    """Every document is in train or val whole, except at most one whose head is in train and
    whose tail ends val; the token counts add up to the UTF-8 bytes plus one separator each."""
    shards = load_shards(out)
    meta = json.loads((out / "meta.json").read_text())
    train, val = _bytes(shards.train), _bytes(shards.val)
    encoded = [doc.encode() for doc in docs]
    assert meta["documents"] == len(docs)
    assert meta["train_tokens"] + meta["val_tokens"] == sum(len(d) + 1 for d in encoded)
    assert (len(shards.train), len(shards.val)) == (meta["train_tokens"], meta["val_tokens"])
    itemsize = np.dtype(meta["dtype"]).itemsize
    assert (out / "train.bin").stat().st_size == meta["train_tokens"] * itemsize
    assert (out / "val.bin").stat().st_size == meta["val_tokens"] * itemsize
    assert val.endswith(SEP)
    val_pieces = val.split(SEP)[:-1]
    tail = val_pieces.pop() if meta["val_tail_documents"] else None
    train_pieces = set(train.split(SEP))
    split_docs = 0
    for doc in encoded:
        if doc in val_pieces:
            assert doc + SEP not in train
        elif doc in train_pieces:
            continue
        else:
            assert tail is not None and doc.endswith(tail), doc
            assert doc[: len(doc) - len(tail)] in train
            split_docs += 1
    assert split_docs == meta["val_tail_documents"] <= 1
    assert len(val_pieces) == meta["val_documents"]


# --- bytes and batches -------------------------------------------------------------------------


def test_byte_codec_round_trips_unicode():
    # Rule: the byte tokenizer is UTF-8 bytes, vocab 256, and decodes back to the same text.
    text = "naïve 日本語 🙂\n"
    tokens = shard_format.encode_bytes(text)
    assert tokens.dtype == np.uint16 and tokens.max() < 256
    assert len(tokens) == len(text.encode())
    assert shard_format.decode_bytes(tokens) == text


def test_sample_batch_is_a_function_of_its_coordinates():
    # Rule: same (seed, step, index) -> same batch, whatever was sampled before (so resuming at
    # step k needs no sampler state); changing any coordinate changes the batch.
    tokens = np.arange(10_000, dtype=np.uint16)
    kwargs = {"batch_size": 8, "seq_len": 32}
    x1, y1 = data.sample_batch(tokens, seed=1, step=5, index=2, **kwargs)
    for step in range(5):
        data.sample_batch(tokens, seed=1, step=step, **kwargs)
    x2, y2 = data.sample_batch(tokens, seed=1, step=5, index=2, **kwargs)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    for other in (
        {"seed": 2, "step": 5, "index": 2},
        {"seed": 1, "step": 6, "index": 2},
        {"seed": 1, "step": 5, "index": 3},
    ):
        x3, _ = data.sample_batch(tokens, **other, **kwargs)
        assert not np.array_equal(x1, x3), other


def test_sample_batch_y_is_x_shifted_by_one_window():
    # Rule: x and y are (batch, seq_len) int64 views of one contiguous window of seq_len + 1
    # tokens, y shifted by one; windows reach the last token but never past it.
    tokens = np.arange(50, dtype=np.uint16)
    x, y = data.sample_batch(tokens, batch_size=256, seq_len=9, seed=0, step=0)
    assert x.shape == y.shape == (256, 9) and x.dtype == y.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])
    assert np.array_equal(y[:, -1], x[:, -1] + 1)  # contiguous in the source array
    assert np.array_equal(x, x[:, :1] + np.arange(9))
    assert x.min() == 0 and y.max() == 49


def test_sample_batch_rejects_an_array_shorter_than_a_window():
    # Rule: a window needs seq_len + 1 tokens; fewer is a ValueError that gives both numbers.
    x, _ = data.sample_batch(np.arange(11), batch_size=2, seq_len=10, seed=0, step=0)
    assert x.shape == (2, 10)
    with pytest.raises(ValueError, match=r"seq_len \+ 1 = 12 tokens.*holds 11"):
        data.sample_batch(np.arange(11), batch_size=2, seq_len=11, seed=0, step=0)


# --- the validation split ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "fraction"),
    [
        ([100], 0.1),
        ([5, 5, 5, 5], 0.5),
        ([1000, 3, 4, 5], 0.01),
        ([2, 0, 7, 1000], 0.3),
        ([1, 1], 0.9),
        ([50] * 100, 0.05),
    ],
)
def test_split_is_whole_documents_plus_at_most_one_tail(lengths, fraction):
    # Rule: validation takes exactly the budget (>= 1 token, leaving >= 1 for training) as whole
    # documents plus at most one contiguous tail, each document at most once.
    lengths = np.asarray(lengths)
    total = int(lengths.sum())
    parts = writer.split_documents(lengths, val_fraction=fraction, seed=0)
    budget = min(max(1, round(fraction * total)), total - 1)
    assert sum(stop - start for _, start, stop in parts) == budget
    assert len({doc for doc, _, _ in parts}) == len(parts)
    assert all(stop == lengths[doc] for doc, _, stop in parts)  # tails or whole documents
    assert sum(start > 0 for _, start, _ in parts) <= 1


def test_a_single_document_gives_its_tail_to_validation(tmp_path):
    # Rule: with one document, val is its contiguous tail and train its head: together, in
    # order, they are the whole document.
    text = "".join(f"line {i}\n" for i in range(300))
    (tmp_path / "one.txt").write_text(text)
    meta = writer.prepare_shards([tmp_path / "one.txt"], tmp_path / "out", val_fraction=0.1)
    shards = load_shards(tmp_path / "out")
    assert _bytes(shards.train) + _bytes(shards.val) == text.encode() + SEP
    assert meta["val_tokens"] == round(0.1 * (len(text) + 1))


# --- data prepare ------------------------------------------------------------------------------


def _write_inputs(tmp_path: Path, kind: str) -> list[Path]:
    if kind == "text":
        paths = [tmp_path / f"doc{i}.txt" for i in range(len(DOCS))]
        for path, doc in zip(paths, DOCS, strict=True):
            path.write_text(doc, encoding="utf-8")
        return paths
    if kind == "jsonl":
        path = tmp_path / "docs.jsonl"
        lines = [json.dumps({"id": i, "text": doc}) for i, doc in enumerate(DOCS)]
        path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
        return [path]
    import pandas as pd

    path = tmp_path / "docs.parquet"
    pd.DataFrame({"id": range(len(DOCS)), "text": DOCS}).to_parquet(path)
    return [path]


@pytest.mark.parametrize("kind", ["text", "jsonl", "parquet"])
def test_prepare_round_trip(tmp_path, capsys, kind):
    # Rule: `data prepare` on text, JSONL or Parquet gives shards that decode back to the input
    # documents, with meta counts that match; `data info` prints that meta.
    out = tmp_path / "shards"
    inputs = [str(path) for path in _write_inputs(tmp_path, kind)]
    assert main(["data", "prepare", *inputs, "--out", str(out), "--val-fraction", "0.3"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tokenizer"] == "byte" and meta["vocab_size"] == 256 and meta["dtype"] == "uint16"
    assert meta["sources"] == inputs
    assert_documents_recovered(DOCS, out)
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["train_tokens"] == meta["train_tokens"]


def test_prepare_with_a_tokenizer_json(tmp_path, monkeypatch):
    # Rule: a local HF tokenizer.json tokenizes the documents: meta records its absolute path
    # (trials run elsewhere) and vocab, documents end with its end-of-text id, and decoding gives
    # back the input words.
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    tokenizer = tokenizers.Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "<|endoftext|>"])
    tokenizer.train_from_iterator(DOCS, trainer=trainer)
    tokenizer_path = tmp_path / "tokenizer.json"
    tokenizer.save(str(tokenizer_path))
    inputs = _write_inputs(tmp_path, "jsonl")
    out = tmp_path / "shards"
    args = [
        "data",
        "prepare",
        *map(str, inputs),
        "--out",
        str(out),
        "--tokenizer",
        "tokenizer.json",  # relative to the working directory
        "--val-fraction",
        "0.2",
    ]
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    meta = json.loads((out / "meta.json").read_text())
    eot = tokenizer.token_to_id("<|endoftext|>")
    assert meta["tokenizer"] == str(tokenizer_path.resolve()) and meta["eot_id"] == eot
    assert meta["vocab_size"] == tokenizer.get_vocab_size()
    shards = load_shards(out)
    assert shards.tokenizer == meta["tokenizer"] and shards.vocab_size == meta["vocab_size"]
    ids = np.concatenate([shards.train, shards.val]).astype(int)
    expected = [tokenizer.encode(doc).ids for doc in DOCS]
    assert len(ids) == sum(len(e) + 1 for e in expected)
    assert (ids == eot).sum() == len(DOCS)  # a split document's EOT ends its tail, in val
    assert sorted(tokenizer.decode(ids.tolist()).split()) == sorted(
        word for e in expected for word in tokenizer.decode(e).split()
    )


def test_tokenizer_json_without_the_package_says_what_to_install(tmp_path, monkeypatch):
    # Rule: without `tokenizers`, a tokenizer.json asks for the optional extra by name.
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    (tmp_path / "a.txt").write_text("some text")
    (tmp_path / "tokenizer.json").write_text("{}")
    tokenizer = str(tmp_path / "tokenizer.json")
    with pytest.raises(UserError, match=r"pip install scalesweep\[tokenizers\]"):
        writer.prepare_shards([tmp_path / "a.txt"], tmp_path / "out", tokenizer=tokenizer)


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (extra CLI args, substrings the error must contain)."""
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "nofield.jsonl").write_text('{"text": "ok"}\n{"body": "no text field"}\n')
    (tmp_path / "notjson.jsonl").write_text('{"text": "ok"}\nnot json\n')
    (tmp_path / "blank.jsonl").write_text('{"text": ""}\n\n')
    import pandas as pd

    pd.DataFrame({"body": ["x"]}).to_parquet(tmp_path / "nocol.parquet")
    (tmp_path / "fake.parquet").write_text("not parquet")
    (tmp_path / "a.json").write_text('{"text": "x"}')
    path = str(tmp_path)
    return {
        "empty file": ([f"{path}/empty.txt"], ["empty.txt", "holds no text"]),
        "missing file": ([f"{path}/nope.txt"], ["nope.txt", "does not exist"]),
        "directory": ([path], [path, "is a directory"]),
        "not UTF-8": ([f"{path}/latin1.txt"], ["latin1.txt", "not UTF-8"]),
        "JSONL without the field": (
            [f"{path}/nofield.jsonl"],
            ["nofield.jsonl", "line 2", "'text'", "--text-field"],
        ),
        "JSONL not JSON": ([f"{path}/notjson.jsonl"], ["notjson.jsonl", "line 2", "not JSON"]),
        "JSONL all empty": ([f"{path}/blank.jsonl"], ["blank.jsonl", "no text in field 'text'"]),
        "Parquet without the column": (
            [f"{path}/nocol.parquet"],
            ["nocol.parquet", "no column 'text'", "body"],
        ),
        ".json": ([f"{path}/a.json"], ["a.json", ".jsonl"]),
        "not Parquet": ([f"{path}/fake.parquet"], ["fake.parquet", "Parquet"]),
        "unknown tokenizer": (
            [f"{path}/latin1.txt", "--tokenizer", "gpt9"],
            ["gpt9", "tokenizer.json"],
        ),
        "bad val fraction": ([f"{path}/latin1.txt", "--val-fraction", "1.5"], ["val_fraction"]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty file",
        "missing file",
        "directory",
        "not UTF-8",
        "JSONL without the field",
        "JSONL not JSON",
        "JSONL all empty",
        "Parquet without the column",
        "not Parquet",
        ".json",
        "unknown tokenizer",
        "bad val fraction",
    ],
)
def test_bad_input_exits_2_naming_the_problem(tmp_path, capsys, case):
    # Rule: unreadable, empty or malformed input -> exit 2 and one message naming the file (and
    # line, field or column), never a traceback; no half-made output directory is left behind.
    args, needles = _bad_inputs(tmp_path)[case]
    code = main(["data", "prepare", *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "out").exists()


# --- loading -----------------------------------------------------------------------------------


def test_load_shards_names_what_is_missing_or_corrupt(tmp_path):
    # Rule: a missing directory, a missing file or a size that disagrees with meta.json is a
    # UserError naming the path and the problem.
    with pytest.raises(UserError, match="nowhere is not a directory"):
        load_shards(tmp_path / "nowhere")
    (tmp_path / "a.txt").write_text("x" * 1000)
    out = tmp_path / "shards"
    writer.prepare_shards([tmp_path / "a.txt"], out)
    (out / "val.bin").unlink()
    with pytest.raises(UserError, match=r"shards is missing val\.bin"):
        load_shards(out)
    writer.prepare_shards([tmp_path / "a.txt"], out)
    with (out / "train.bin").open("r+b") as file:
        file.truncate(100)
    with pytest.raises(UserError, match=r"train\.bin holds 50 tokens but meta\.json says"):
        load_shards(out)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALESWEEP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_builtin_loads_offline_with_a_disjoint_validation_split(cache_dir, monkeypatch):
    # Rule: `builtin` needs no network; it is byte-level (vocab 256); val is non-empty and shares
    # no text with train; together they are the whole shipped corpus; the second load reads the
    # cache instead of preparing again.
    def no_network(*args, **kwargs):
        raise AssertionError("the built-in corpus must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    shards = load_shards(data.BUILTIN)
    assert shards.vocab_size == 256 and shards.tokenizer == "byte"
    assert shards.train.dtype == np.uint16 and len(shards.val) > 10_000
    corpus = (Path(data.__file__).parent / "corpus" / writer.BUILTIN_CORPUS).read_bytes()
    assert len(shards.train) + len(shards.val) == len(lzma.decompress(corpus)) + 1
    train, val = _bytes(shards.train), _bytes(shards.val)
    for start in range(0, len(val) - 400, len(val) // 10):
        assert val[start : start + 400] not in train
    monkeypatch.setattr(writer, "write_shards", no_network)
    assert np.array_equal(load_shards("builtin").val, shards.val)


def test_builtin_cache_survives_losing_the_rename_race(cache_dir, monkeypatch):
    # Rule: when another process renames its finished copy into place first, our rename fails,
    # our copy is discarded, and we read theirs; no temporary directory is left behind.
    real_write = writer.write_shards
    calls = []

    def write_after_a_rival_finishes(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            writer.builtin_dir()  # the rival: prepares and renames first
        return real_write(*args, **kwargs)

    monkeypatch.setattr(writer, "write_shards", write_after_a_rival_finishes)
    shards = load_shards("builtin")
    assert len(calls) == 2 and len(shards.val) > 0
    assert [p.name.startswith("builtin-") for p in cache_dir.iterdir()] == [True]


def test_two_processes_prepare_builtin_at_once(cache_dir):
    # Rule: several trials starting together on one node all load the built-in corpus from a
    # fresh cache; exactly one cache directory results.
    script = textwrap.dedent(
        """
        from scalesweep.data_path import load_shards
        shards = load_shards("builtin")
        print(len(shards.train), len(shards.val))
        """
    )
    env = {**os.environ, "SCALESWEEP_CACHE_DIR": str(cache_dir)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results
    assert results[0][0] == results[1][0] != ""
    assert [p.name.startswith("builtin-") for p in cache_dir.iterdir()] == [True]


def test_reading_shards_never_imports_writing_them():
    # Rule: `data` (reading) and `shards` (writing) do not import each other, not even inside a
    # function; what both need (the byte tokenizer, the format version) is `shard_format`, and
    # only `data_path` (a `data.path` resolved, the built-in corpus prepared) uses both.
    import ast

    def imported(module: str) -> set[str]:
        tree = ast.parse(Path(sys.modules[module].__file__).read_text())  # type: ignore[arg-type]
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        return {name for name in names if name.startswith("scalesweep.")}

    assert not any(name.startswith("scalesweep.shards") for name in imported("scalesweep.data"))
    assert not any(name.startswith("scalesweep.data") for name in imported("scalesweep.shards"))
    code = "import sys, scalesweep.data; print('scalesweep.shards' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
