"""Fitting a schedule law to loss curves: least squares on the relative error over the shape
parameters, the scale parameters solved exactly at each shape (variable projection, as the
parametric fit does for Approach 3), from a few starts; the best start wins.

Relative errors because the laws are judged by them (Luo et al. report mean relative errors)
and a curve's early, high losses would otherwise outweigh the end of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from scalesweep.errors import UserError
from scalesweep.fit.laws.schedule.laws import Curve, Law, predict


@dataclass(frozen=True)
class LawFit:
    """One law fitted to some curves."""

    law: Law
    shapes: np.ndarray
    scales: np.ndarray
    rmse: float
    """Root-mean-square relative error over the fitted points."""

    @property
    def params(self) -> dict[str, float]:
        scales = {name: float(v) for name, v in zip(self.law.scales, self.scales, strict=True)}
        return {**scales, **self.law.to_params(self.shapes)}

    def predict(self, curve: Curve) -> np.ndarray:
        return predict(self.law, self.shapes, self.scales, curve)


def _scales(law: Law, q: np.ndarray, curves: Sequence[Curve], y: np.ndarray) -> np.ndarray:
    """The scale parameters minimising the relative error at shape `q`."""
    design = np.vstack([law.basis(q, c) for c in curves]) / y[:, None]
    solution, *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
    return solution


def _residuals(law: Law, q: np.ndarray, curves: Sequence[Curve], y: np.ndarray) -> np.ndarray:
    design = np.vstack([law.basis(q, c) for c in curves])
    if not np.all(np.isfinite(design)):
        return np.full_like(y, 1e3)
    fitted = design @ _scales(law, q, curves, y)
    return fitted / y - 1.0


def _prior(law: Law, q: np.ndarray, noise: float) -> np.ndarray:
    """The prior's residuals, in units of the data's noise: a shape one prior width from its
    centre costs as much as one point off by the noise."""
    if law.prior is None:
        return np.empty(0)
    centres, widths = (np.array(v) for v in zip(*law.prior, strict=True))
    return noise * (q - centres) / widths


def _search(law: Law, curves: Sequence[Curve], y: np.ndarray, noise: float) -> np.ndarray:
    """The best shape over `law.starts`, with the prior weighted by `noise` (0: none)."""
    lo, hi = (np.array(b, dtype=float) for b in law.bounds)
    best = None
    for start in law.starts:
        result = least_squares(
            lambda q: np.concatenate([_residuals(law, q, curves, y), _prior(law, q, noise)]),
            np.clip(np.array(start, dtype=float), lo, hi),
            bounds=(lo, hi),
            x_scale="jac",
        )
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    return best.x


def fit_law(law: Law, curves: Sequence[Curve], losses: Sequence[np.ndarray]) -> LawFit:
    """`law` fitted to the `losses` observed at each curve's steps: least squares, then, for a
    law with a prior, again with the prior weighted by the noise the first fit left."""
    y = np.concatenate(losses)
    n_params = len(law.shapes) + len(law.scales)
    if y.size <= n_params:
        raise UserError(
            f"{law.name}: the fit needs more loss points than its {n_params} parameters, but "
            f"the fit runs have {y.size} after warmup"
        )
    shapes = _search(law, curves, y, 0.0)
    if law.prior is not None:
        noise = float(np.sqrt(np.mean(_residuals(law, shapes, curves, y) ** 2)))
        shapes = _search(law, curves, y, noise)
    scales = _scales(law, shapes, curves, y)
    rmse = float(np.sqrt(np.mean(_residuals(law, shapes, curves, y) ** 2)))
    return LawFit(law=law, shapes=shapes, scales=scales, rmse=rmse)
