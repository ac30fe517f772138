"""The gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018), from gradient norms
at two batch sizes.

Why two sizes: the squared norm of a minibatch gradient is biased upward by the noise,
E|G_B|² = |G|² + tr(Σ)/B, where G is the true gradient and Σ the per-example covariance of
gradients. Two batch sizes give two equations in the two unknowns, so the trainer can
estimate both from norms it can compute almost for free (McCandlish et al. 2018, Appendix A):

    |G|²  ≈ (B_big·|G_big|² − B_small·|G_small|²) / (B_big − B_small)
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

Both are unbiased, but one step's estimates are noisy (either can be negative), and the ratio
of unbiased estimates is not unbiased; McCandlish et al. therefore average the numerator and the
denominator separately over steps and only then divide. `NoiseScaleEMA` does that with
bias-corrected exponential moving averages.

B_simple approximates the critical batch size B_crit that the `critical-batch` fit measures
from loss curves (McCandlish et al. §2.2; Kaplan et al. 2020 §5.1). Pass both batch sizes in
tokens and B_simple is in tokens too, the unit of B_crit.

This module is pure Python (no torch): the trainer hands it floats.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple


class NoiseScaleTerms(NamedTuple):
    """One step's unbiased estimates (McCandlish et al. 2018, Appendix A, eqs. A.2 and A.3)."""

    grad_sq: float
    """|G|²: squared norm of the true gradient (may be negative on a single step)."""
    trace: float
    """tr(Σ): trace of the per-example gradient covariance, in (batch unit) · |G|² units."""


def noise_scale_terms(
    small_sq_norm: float, big_sq_norm: float, small_batch: float, big_batch: float
) -> NoiseScaleTerms:
    """Unbiased |G|² and tr(Σ) from the squared gradient norms at two batch sizes.

    The contract, for the trainer:
      - `small_sq_norm` = |G_small|²: squared L2 norm, over all trained parameters together,
        of the gradient of the *mean* loss over `small_batch` examples. With several small
        batches at hand (the micro-batches of one step, or the ranks' local gradients), pass
        the mean of their squared norms: still unbiased, and less noisy.
      - `big_sq_norm` = |G_big|²: the same for the mean loss over `big_batch` examples. The big
        batch may contain the small ones (the accumulated or all-reduced gradient): only
        expectations enter, so the estimates stay unbiased.
      - Norms of the raw gradient: before clipping, after unscaling (AMP), accumulated in fp32.
      - `small_batch` and `big_batch` in the same unit (sequences or tokens); `trace`, and the
        noise scale trace/grad_sq, come out in that unit. Use tokens to compare with B_crit.
      - `0 < small_batch < big_batch` and finite norms, else `ValueError`.

    Where the two sizes come from (per log step):
      - Gradient accumulation with k micro-batches on a rank: after the first micro-batch's
        backward, `.grad` holds g_1/k (each micro-batch loss is divided by k), so
        |G_small|² = k²·|grad|² with small_batch = micro_batch_size; after the last one (and
        the all-reduce), |G_big|² = |grad|² with big_batch = batch_size.
      - DDP with one micro-batch per rank: the rank's local gradient (small_batch = its
        batch) against the all-reduced one (big_batch = the global batch); the local norm is
        only visible before the all-reduce (a comm hook, or the first micro-batch under
        `no_sync()`). Average the ranks' |G_small|² with an all-reduce of that one scalar.
      - One rank, no accumulation: there are no two sizes; log no estimate.

    Example (|G|² = 1, tr(Σ) = 32, so E|G_8|² = 5 and E|G_64|² = 1.5):
        >>> noise_scale_terms(5.0, 1.5, 8, 64)
        NoiseScaleTerms(grad_sq=1.0, trace=32.0)
    """
    values = {
        "small_sq_norm": small_sq_norm,
        "big_sq_norm": big_sq_norm,
        "small_batch": small_batch,
        "big_batch": big_batch,
    }
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise ValueError(f"gradient noise scale: inputs must be finite, but got {bad}")
    if not 0 < small_batch < big_batch:
        raise ValueError(
            "gradient noise scale: `0 < small_batch < big_batch` must hold, but got "
            f"({small_batch=}, {big_batch=})"
        )
    grad_sq = (big_batch * big_sq_norm - small_batch * small_sq_norm) / (big_batch - small_batch)
    trace = (small_sq_norm - big_sq_norm) / (1.0 / small_batch - 1.0 / big_batch)
    return NoiseScaleTerms(grad_sq, trace)


def noise_scale(grad_sq: float, trace: float) -> float | None:
    """B_simple = tr(Σ)/|G|², or None when |G|² is not positive (no signal yet, or too noisy).

    Example:
        >>> noise_scale(1.0, 32.0), noise_scale(-0.1, 32.0)
        (32.0, None)
    """
    return trace / grad_sq if grad_sq > 0 and math.isfinite(trace) else None


@dataclass
class NoiseScaleEMA:
    """Bias-corrected exponential moving averages of |G|² and tr(Σ), divided only at the end.

    Call `update` on each step the estimate is taken (the trainer's log steps) and log
    `value` as `train/grad_noise_scale` when it is not None. `decay` is per update: at the
    default 0.9 the average spans about the last 10 updates. The whole state is
    `state_dict()` (three floats), so it checkpoints and resumes with the run.

    Example:
        >>> ema = NoiseScaleEMA(decay=0.5)
        >>> ema.update(NoiseScaleTerms(grad_sq=1.0, trace=30.0))  # the first update itself
        30.0
        >>> ema.update(NoiseScaleTerms(grad_sq=1.0, trace=40.0))  # (.5·30 + 40) / (.5 + 1)
        36.666666666666664
    """

    decay: float = 0.9
    """Weight of the past per update, in [0, 1)."""
    grad_sq: float = 0.0
    """Uncorrected EMA of the |G|² estimates."""
    trace: float = 0.0
    """Uncorrected EMA of the tr(Σ) estimates."""
    weight: float = 0.0
    """1 − decay^updates: divides both EMAs (Adam's bias correction)."""

    def __post_init__(self) -> None:
        if not 0 <= self.decay < 1:
            raise ValueError(f"NoiseScaleEMA: `0 <= decay < 1` must hold, but got ({self.decay=})")

    def update(self, terms: NoiseScaleTerms) -> float | None:
        """Add one step's estimates; returns the current `value`. Non-finite terms are
        skipped (a step whose gradient overflowed says nothing about the noise)."""
        if math.isfinite(terms.grad_sq) and math.isfinite(terms.trace):
            d = self.decay
            self.grad_sq = d * self.grad_sq + (1 - d) * terms.grad_sq
            self.trace = d * self.trace + (1 - d) * terms.trace
            self.weight = d * self.weight + (1 - d)
        return self.value

    @property
    def value(self) -> float | None:
        """B_simple from the averaged terms; None before any update or while the averaged
        |G|² is not positive."""
        if self.weight == 0:
            return None
        return noise_scale(self.grad_sq / self.weight, self.trace / self.weight)

    def state_dict(self) -> dict[str, float]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("decay", "grad_sq", "trace", "weight"):
            setattr(self, key, float(state[key]))
