"""The two schedule-aware loss laws, each linear in its scale parameters once its shape
parameters are fixed (so a fit searches only the shape; `fitting.py` solves the rest).

η_k is the LR of optimizer step k (in units of a reference LR, the group's largest peak), and
the loss at step t is measured after steps 0 … t-1:

- S1(t) = Σ_{k<t} η_k, the forward area (warmup included: Luo et al.'s S1 + S_W);
- LR-annealing law (Tissue et al. 2024, eq. 1): L(t) = L0 + A·S1^-α - C·S2, with the
  annealing area S2(t) = Σ_{i<t} m_i, m_i = λ·m_{i-1} + (η_{i-1} - η_i) and λ = 0.999 (their
  recommended decay: each LR drop keeps lowering the loss for ~1/(1-λ) steps);
- multi-power law (Luo et al. 2025, eq. 5): L(t) = L0 + A·S1^-α - B·Σ_{k<t} (η_{k-1} - η_k)·
  G(η_k^-γ·S_k(t)), G(x) = 1 - (C·x + 1)^-β, S_k(t) = Σ_{k<=τ<t} η_τ: each LR drop's loss drop
  grows with the area trained since, saturating at B·(drop).

LR rises (warmup) are no annealing: both laws count only the drops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.signal import lfilter

ANNEALING_DECAY = 0.999
"""λ of the LR-annealing law, fixed at the value Tissue et al. 2024 recommend."""


@dataclass(frozen=True)
class Curve:
    """One run's LRs and the steps its loss is known (or wanted) at, with the areas both laws
    read, computed once with cumulative sums."""

    lrs: np.ndarray = field(repr=False)
    """η_0 … η_{T-1}, in units of the reference LR."""
    steps: np.ndarray
    """Steps t (1 <= t <= T) where the loss is modelled."""

    @cached_property
    def area(self) -> np.ndarray:
        """P[t] = Σ_{k<t} η_k for t = 0 … T."""
        return np.concatenate([[0.0], np.cumsum(self.lrs)])

    @cached_property
    def drops(self) -> np.ndarray:
        """d_k = max(η_{k-1} - η_k, 0) for k = 0 … T-1 (d_0 = 0)."""
        return np.concatenate([[0.0], np.maximum(-np.diff(self.lrs), 0.0)])

    @cached_property
    def s1(self) -> np.ndarray:
        return self.area[self.steps]

    @cached_property
    def s2(self) -> np.ndarray:
        """Tissue et al.'s annealing area at each step t: Σ_{i<t} m_i."""
        momentum = lfilter([1.0], [1.0, -ANNEALING_DECAY], self.drops)
        return np.concatenate([[0.0], np.cumsum(momentum)])[self.steps]

    @cached_property
    def decay_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(d_k, η_k, S_k(t)) over the steps k with a drop: S_k(t) is (steps × drops), 0 where
        k >= t (a drop after t does not count)."""
        k = np.flatnonzero(self.drops > 0)
        areas = self.area[self.steps][:, None] - self.area[k][None, :]
        areas = np.where(k[None, :] < self.steps[:, None], areas, 0.0)
        return self.drops[k], self.lrs[k], areas


Basis = Callable[[np.ndarray, Curve], np.ndarray]
"""(shape parameters, curve) -> (steps × scale parameters): loss = basis @ scales."""


@dataclass(frozen=True)
class Law:
    """A law whose loss is linear in `scales` for fixed `shapes`."""

    name: str
    """Its `--schedule-law` name and key in fit.json."""
    title: str
    shapes: tuple[str, ...]
    """Shape parameters, searched by least squares within `bounds`, from each of `starts`."""
    scales: tuple[str, ...]
    """Scale parameters, solved exactly for each shape."""
    basis: Basis
    bounds: tuple[tuple[float, ...], tuple[float, ...]]
    starts: tuple[tuple[float, ...], ...]
    to_params: Callable[[np.ndarray], dict[str, float]]
    """Shape vector -> named parameters (e.g. log10 C -> C)."""
    prior: tuple[tuple[float, float], ...] | None = None
    """(centre, width) per shape parameter as searched: a weak prior for the shapes two runs
    leave undetermined (`fitting.fit_law`)."""


def _annealing_basis(q: np.ndarray, c: Curve) -> np.ndarray:
    (alpha,) = q
    return np.column_stack([np.ones_like(c.s1), c.s1**-alpha, -c.s2])


def _multi_power_basis(q: np.ndarray, c: Curve) -> np.ndarray:
    alpha, beta, gamma, log_c = q[0], 10.0 ** q[1], 10.0 ** q[2], q[3]
    drops, lrs, areas = c.decay_terms
    with np.errstate(divide="ignore", over="ignore"):
        x = 10.0**log_c * np.maximum(lrs, 1e-12) ** -gamma * areas
        g = 1.0 - (x + 1.0) ** -beta
    return np.column_stack([np.ones_like(c.s1), c.s1**-alpha, -(g @ drops)])


ANNEALING = Law(
    name="lr-annealing",
    title="LR-annealing law (Tissue et al. 2024)",
    shapes=("alpha",),
    scales=("L0", "A", "C"),
    basis=_annealing_basis,
    bounds=((0.01,), (3.0,)),
    starts=((0.1,), (0.5,), (1.0,)),
    to_params=lambda q: {"alpha": float(q[0]), "lambda": ANNEALING_DECAY},
)

MULTI_POWER = Law(
    name="multi-power",
    title="multi-power law (Luo et al. 2025)",
    shapes=("alpha", "beta", "gamma", "C"),
    scales=("L0", "A", "B"),
    basis=_multi_power_basis,
    # searched as (α, log10 β, log10 γ, log10 C)
    bounds=((0.01, -2.0, -2.0, -3.0), (3.0, 0.7, 0.2, 4.0)),
    starts=((0.5, -0.3, -0.3, 0.0), (0.3, 0.0, -0.5, 1.0), (1.0, -0.5, -0.1, -1.0)),
    # β, γ near 0.5 and C near 1 (η in units of the peak LR), each within a factor of ~3:
    # a constant and a cosine run pin L0, A, α and B but hardly how fast a loss drop follows
    # a sharp LR drop (C, β, γ); unpinned, the fit ran to the bounds and mispredicted short
    # cooldowns by 2 % on synthetic curves with 0.2 % noise (docs/cooldown.md).
    prior=((0.5, 10.0), (-0.3, 0.5), (-0.3, 0.5), (0.0, 0.5)),
    to_params=lambda q: {
        "alpha": float(q[0]),
        "beta": float(10.0 ** q[1]),
        "gamma": float(10.0 ** q[2]),
        "C": float(10.0 ** q[3]),
    },
)

LAWS = {law.name: law for law in (MULTI_POWER, ANNEALING)}
"""The laws by name, the default first when the backtest cannot choose."""


def predict(law: Law, shapes: np.ndarray, scales: np.ndarray, curve: Curve) -> np.ndarray:
    """The law's loss at `curve.steps`."""
    return law.basis(shapes, curve) @ scales
