"""LR transfer across widths: the best LR of each width's group against the width,
LR_opt = c·width^k (k ≈ 0: the LR transfers), per combination of the other group columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from scalesweep.fit.numerics.regression import loglog_ols
from scalesweep.fit.runs import finite_or_none


class ScoredGroup(Protocol):
    """What the transfer fit reads of a group's LR-sensitivity result."""

    @property
    def key(self) -> dict[str, Any]: ...

    @property
    def best_lr(self) -> float | None: ...


@dataclass(frozen=True)
class TransferFit:
    """LR_opt = c·width^k for one combination of the other group columns."""

    key: dict[str, Any]
    """The group columns that split the transfer fits (those not fixed by the width)."""
    k: float
    """Exponent (0: the LR transfers across widths)."""
    coef: float
    """c."""
    se: float | None
    """Standard error of k (None with 2 widths)."""
    ci: tuple[float | None, float | None]
    """Confidence interval of k (None with 2 widths: a line through 2 points has none)."""
    n_widths: int
    """Widths fitted."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: finite_or_none(v) for k, v in self.key.items()},
            "k": finite_or_none(self.k),
            "coef": finite_or_none(self.coef),
            "se": finite_or_none(self.se),
            "ci": [finite_or_none(x) for x in self.ci],
            "n_widths": self.n_widths,
        }


def transfer_fits(
    frame: pd.DataFrame,
    results: Sequence[ScoredGroup],
    width: str | None,
    groups: tuple[str, ...],
    *,
    level: float,
    notes: list[str],
) -> tuple[TransferFit, ...]:
    """LR_opt ∝ width^k per combination of the group columns that the width does not fix
    (a depth that grows with the width belongs to the width axis, not to a split)."""
    if width is None:
        notes.append("no width column among the group columns: no LR transfer fit")
        return ()
    spread = {c: frame.groupby(width, dropna=False)[c].nunique(dropna=False).max() for c in groups}
    others = [c for c in groups if c != width and spread[c] > 1]
    by_other: dict[tuple[Any, ...], list[ScoredGroup]] = {}
    for result in results:
        by_other.setdefault(tuple((k, result.key[k]) for k in others), []).append(result)
    fits = []
    for other, members in by_other.items():
        usable = [g for g in members if g.best_lr is not None and g.key[width] is not None]
        widths = np.array([float(g.key[width]) for g in usable])
        if np.unique(widths).size < 2:
            notes.append(
                f"{dict(other) or 'all runs'}: fewer than 2 widths with a best LR; no transfer fit"
            )
            continue
        best = np.array([g.best_lr for g in usable])
        law = loglog_ols(widths, best, level=level)
        if law.se is None:
            notes.append(
                f"{dict(other) or 'all runs'}: transfer exponent from 2 widths, a line "
                "through 2 points: no interval"
            )
        k, se, ci = law.exponent, law.se, law.ci
        if np.unique(best).size == 1:  # k = 0 exactly, not OLS round-off of 1e-15
            k, se, ci = 0.0, None if se is None else 0.0, (None, None) if se is None else (0.0, 0.0)
            notes.append(
                f"{dict(other) or 'all runs'}: the same best LR ({best[0]:g}) at every "
                "width: k = 0, known only to the LR grid's spacing"
            )
        fits.append(TransferFit(dict(other), k, law.coef, se, ci, len(usable)))
    return tuple(fits)
