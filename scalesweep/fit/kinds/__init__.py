"""The registry of fit kinds: `scalesweep fit --kind NAME` runs `KINDS[NAME]`.

Each family's entries live in their own module here (`isoflop`, `parametric`, …), each a
tuple of typed `FitKind`s; this module only gathers them, in the order the report shows them.
Adding a kind is one `FitKind` in its family's module (docs/architecture.md shows the steps).
Like the entries, the registry loads without numpy or pandas.
"""

from __future__ import annotations

from scalesweep.fit.base import FitKind
from scalesweep.fit.kinds import (
    batch,
    compare,
    diagnostics,
    hparams,
    isoflop,
    lr,
    parametric,
    power_law,
    schedule,
)

FAMILIES = (isoflop, parametric, power_law, compare, lr, hparams, diagnostics, batch, schedule)
"""The family modules, in report order."""

KINDS: dict[str, FitKind] = {kind.name: kind for family in FAMILIES for kind in family.KINDS}
"""Every kind by its `--kind` name."""
