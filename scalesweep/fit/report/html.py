"""A self-contained HTML page: no network, no scripts, plots inline as base64 PNG.

The report's text comes from the fit kinds as Markdown lines (`FitKind.section`); `markdown`
turns the subset they use (paragraphs, `- ` lists, pipe tables, `code`) into HTML, so the
Markdown and the HTML report say the same thing. The page reads at laptop width: one column of
at most 1000 px, images scaled to it, wide tables scroll inside their box.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       margin: 0; background: #f6f7f9; }
main { max-width: 1000px; margin: 0 auto; padding: 16px 20px 48px; background: #fff; }
h1 { font-size: 1.55em; margin: 0.4em 0 0.1em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.4em; border-bottom: 1px solid #dde1e7;
     padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
.meta { color: #5b6473; margin: 0 0 1em; }
.answer { background: #f1f6ff; border-left: 4px solid #3b6fd8; padding: 4px 14px 8px;
          margin: 8px 0 14px; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6eb; }
figcaption { color: #5b6473; font-size: 0.85em; }
.table { overflow-x: auto; margin: 6px 0 12px; }
table { border-collapse: collapse; font-size: 0.88em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #dde1e7; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f4f6; }
td:first-child, th:first-child { text-align: left; }
tr.diverged td { background: #fdecec; }
tr.failed td { background: #eeeeee; color: #666; }
tr.running td { background: #fff7e0; }
.badge { display: inline-block; padding: 0 8px; border-radius: 9px; font-size: 0.85em;
         margin-right: 6px; background: #e6f4ea; }
.badge.diverged { background: #fdecec; } .badge.failed { background: #eeeeee; }
code { background: #f3f4f6; padding: 0 3px; border-radius: 3px; font-size: 0.92em; }
details summary { cursor: pointer; color: #3b6fd8; }
"""


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


def table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], row_classes: Sequence[str] = ()
) -> str:
    """An HTML table in a horizontally scrolling box."""
    head = "".join(f"<th>{_inline(str(h))}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>")
    return f'<div class="table"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown(lines: Sequence[str]) -> str:
    """HTML for Markdown lines: paragraphs, `- ` lists, pipe tables (header, |---|, rows)."""
    flat = [part for line in lines for part in line.split("\n")]
    out: list[str] = []
    i = 0
    while i < len(flat):
        line = flat[i].strip()
        if not line:
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(flat) and flat[i].strip().startswith("|"):
                block.append(flat[i])
                i += 1
            rows = [_cells(r) for r in block if not re.fullmatch(r"\|?[\s|:-]+\|?", r.strip())]
            out.append(table(rows[0], rows[1:]) if rows else "")
        elif line.startswith("- "):
            items = []
            while i < len(flat) and flat[i].strip().startswith("- "):
                items.append(f"<li>{_inline(flat[i].strip()[2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        else:
            para = []
            while i < len(flat) and flat[i].strip() and not flat[i].strip().startswith(("|", "- ")):
                para.append(flat[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def image(path: Path, caption: str) -> str:
    """The PNG at `path` inline, as a data URI, with its caption."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(caption, quote=True)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{_inline(caption)}</figcaption></figure>"
    )


def page(title: str, body: Sequence[str]) -> str:
    """The whole document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><main>\n{chr(10).join(body)}\n</main></body></html>\n"
    )


def heading(level: int, text: str, anchor: str | None = None) -> str:
    ident = f' id="{html.escape(anchor, quote=True)}"' if anchor else ""
    return f"<h{level}{ident}>{_inline(text)}</h{level}>"


def paragraph(text: str, css: str | None = None) -> str:
    return f'<p class="{css}">{_inline(text)}</p>' if css else f"<p>{_inline(text)}</p>"


def badges(counts: dict[str, int]) -> str:
    """Status counts as coloured badges: `12 completed` `3 diverged`."""
    return "".join(
        f'<span class="badge {html.escape(str(k), quote=True)}">{v} {html.escape(str(k))}</span>'
        for k, v in counts.items()
    )
