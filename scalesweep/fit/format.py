"""The one way numbers are written in fit summaries and reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def num(value: Any, digits: int = 4) -> str:
    """A number in `digits` significant digits; None (a fit that had no value) as n/a.

    Example:
        >>> num(0.123456), num(None), num(3)
        ('0.1235', 'n/a', '3')
    """
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def interval(pair: Sequence[Any] | None) -> str:
    """`[low, high]`, or n/a when the fit has no interval.

    Example:
        >>> interval([0.1, 0.25]), interval([None, None])
        ('[0.1, 0.25]', 'n/a')
    """
    if not pair or pair[0] is None:
        return "n/a"
    return f"[{num(pair[0])}, {num(pair[1])}]"


def basis(fit: Mapping[str, Any]) -> str:
    """The line that says what an answer used: which N, which C convention, which runs.

    Example:
        >>> basis({"basis": {"n": "`params`", "flop_counting": "6N", "runs": "all 9 runs"}})
        '  N = `params`; C counted as 6N; runs: all 9 runs'
    """
    used = fit.get("basis") or {}
    if not used:
        return "  (no basis recorded)"
    convention = used.get("flop_counting") or "unknown (no train.flop_counting column)"
    return f"  N = {used['n']}; C counted as {convention}; runs: {used['runs']}"


def short(column: str) -> str:
    """`model.qk_norm` -> `qk_norm`: a sweep key as a table or a legend says it."""
    return column.split(".")[-1]


def group_label(key: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> str:
    """A group's key as notes and legends say it: `width=64, qk_norm=False`; `all runs` for
    the empty key (never a raw dict: `{'model.qk_norm': False}`).

    Example:
        >>> group_label({"model.width": 64, "model.qk_norm": False}), group_label({})
        ('width=64, qk_norm=False', 'all runs')
    """
    items = key.items() if isinstance(key, Mapping) else key
    return ", ".join(f"{short(k)}={num(v)}" for k, v in items) or "all runs"


def constant_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """The `columns` with one value in every row (`z_loss` in a sweep that never turned it on):
    a table names them once instead of in every row.

    Example:
        >>> constant_columns([{"w": 64, "z": 0}, {"w": 128, "z": 0}], ["w", "z"])
        ['z']
    """
    return [c for c in columns if len({repr(row.get(c)) for row in rows}) <= 1]
