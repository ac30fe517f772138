"""How groups of runs are drawn, the same way in every plot of an LR sweep: colour = width, one
panel (or line style) per intervention (qk-layernorm, z-loss), so "with and without
qk-layernorm" sits side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scalesweep.fit.format import constant_columns, short
from scalesweep.fit.laws.diagnostics import sort_key
from scalesweep.fit.laws.lr.groups import WIDTH_COLUMNS


def label(key: dict[str, Any]) -> str:
    """`width=64, qk_norm=True`; `all runs` for the empty key."""
    return ", ".join(f"{short(k)}={v}" for k, v in key.items()) or "all runs"


def varying(keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The keys without the columns that are the same in all of them (z_loss=0.0 in a sweep
    that never turned z-loss on), so labels name only what the sweep varied; width stays."""
    columns = sorted({c for key in keys for c in key})
    same = set(constant_columns(keys, columns)) - set(WIDTH_COLUMNS)
    return [{k: v for k, v in key.items() if k not in same} for key in keys]


def split_width(key: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(width or None, the other group columns)."""
    width = next((v for k, v in key.items() if k in WIDTH_COLUMNS), None)
    return width, {k: v for k, v in key.items() if k not in WIDTH_COLUMNS}


def intervention_panels(keys: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The intervention combinations, one panel each, in order."""
    found = {tuple(split_width(k)[1].items()) for k in keys}
    return sorted(found, key=lambda items: sort_key([v for _, v in items]))


def width_colors(widths: Sequence[Any]) -> dict[Any, Any]:
    from matplotlib import colormaps

    ordered = sorted(set(widths), key=lambda w: sort_key([w]))
    shades = colormaps["viridis"](np.linspace(0.0, 0.85, max(len(ordered), 1)))
    return dict(zip(ordered, shades, strict=True))
