"""The gradient noise scale estimator against linear regression, where B_simple is exact.

Truth: y = x·w* + ε with x ~ N(0, I_d), ε ~ N(0, σ²), loss ½(x·w − y)² at the fixed point
w = w* + δ. The per-example gradient is g = x(x·δ − ε), so G = δ and (Isserlis)
Σ = (|δ|² + σ²)·I + δδᵀ: tr(Σ) = d(|δ|² + σ²) + |δ|², and B_simple = tr(Σ)/|δ|².
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scalesweep.noise_scale import NoiseScaleEMA, NoiseScaleTerms, noise_scale, noise_scale_terms

DIM, SIGMA = 16, 1.0
DELTA = np.full(DIM, 1.0 / math.sqrt(DIM))  # |δ| = 1
TRUE_GRAD_SQ = 1.0
TRUE_TRACE = DIM * (1.0 + SIGMA**2) + 1.0  # 33
TRUE_B_SIMPLE = TRUE_TRACE / TRUE_GRAD_SQ


def regression_norms(rng: np.random.Generator, micro: int, k: int) -> tuple[float, float]:
    """One step of `k` micro-batches of `micro` examples: (mean over micro-batches of
    |G_micro|², |G_all|²), gradients of the mean loss."""
    x = rng.standard_normal((k, micro, DIM))
    eps = SIGMA * rng.standard_normal((k, micro))
    per_example = x * (x @ DELTA - eps)[..., None]
    micro_grads = per_example.mean(axis=1)
    small = float((micro_grads**2).sum(axis=1).mean())
    big = float((micro_grads.mean(axis=0) ** 2).sum())
    return small, big


def test_terms_recover_the_regression_noise_scale_within_5_percent():
    # Rule: averaged over steps (numerator and denominator separately), the unbiased |G|² and
    # tr(Σ) give B_simple within 5% of the closed form. Truth B_simple = 33; micro-batches of
    # 8, 8 per step (B_big = 64), 3000 steps, seed 0.
    rng = np.random.default_rng(0)
    terms = [noise_scale_terms(*regression_norms(rng, 8, 8), 8, 64) for _ in range(3000)]
    grad_sq = np.mean([t.grad_sq for t in terms])
    trace = np.mean([t.trace for t in terms])
    assert grad_sq == pytest.approx(TRUE_GRAD_SQ, rel=0.05)
    assert trace == pytest.approx(TRUE_TRACE, rel=0.05)
    assert noise_scale(grad_sq, trace) == pytest.approx(TRUE_B_SIMPLE, rel=0.05)


def test_ema_tracks_the_regression_noise_scale_within_5_percent():
    # Rule: NoiseScaleEMA (decay 0.999 per update, bias-corrected) ends within 5% of the
    # closed form after 3000 steps at seed 1, whereas the mean of single-step ratios is
    # biased by more than 15% (why the numerator and denominator are averaged separately).
    rng = np.random.default_rng(1)
    ema = NoiseScaleEMA(decay=0.999)
    ratios = []
    for _ in range(3000):
        terms = noise_scale_terms(*regression_norms(rng, 8, 8), 8, 64)
        ratios.append(terms.trace / terms.grad_sq)
        ema.update(terms)
    assert abs(np.mean(ratios) / TRUE_B_SIMPLE - 1) > 0.15
    assert ema.value == pytest.approx(TRUE_B_SIMPLE, rel=0.05)


def test_accumulation_recipe_with_autograd_gives_the_noise_scale():
    # Rule: the trainer's recipe works through torch autograd: each micro-batch's mean loss is
    # divided by k and accumulated into .grad; after the first backward |G_small|² = k²·|grad|²,
    # after the last |G_big|² = |grad|². Averaged over 1500 steps at seed 2: within 5% of 33.
    torch.manual_seed(2)
    k, micro = 4, 8
    w = torch.nn.Parameter(torch.tensor(DELTA, dtype=torch.float64))  # w* = 0, so w − w* = δ
    ema = NoiseScaleEMA(decay=0.999)
    for _ in range(1500):
        w.grad = None
        for i in range(k):
            x = torch.randn(micro, DIM, dtype=torch.float64)
            y = SIGMA * torch.randn(micro, dtype=torch.float64)
            (0.5 * (x @ w - y).pow(2).mean() / k).backward()
            if i == 0:
                small = k**2 * float(w.grad.pow(2).sum())  # type: ignore[union-attr]
        big = float(w.grad.pow(2).sum())  # type: ignore[union-attr]
        ema.update(noise_scale_terms(small, big, micro, k * micro))
    assert ema.value == pytest.approx(TRUE_B_SIMPLE, rel=0.05)


def test_units_follow_the_batch_sizes():
    # Rule: B_simple is in the unit of the batch sizes: the same norms with batch sizes in
    # tokens (× 512 per sequence) give 512 × the noise scale in sequences.
    per_sequence = noise_scale(*noise_scale_terms(5.0, 1.5, 8, 64))
    per_token = noise_scale(*noise_scale_terms(5.0, 1.5, 8 * 512, 64 * 512))
    assert per_token == pytest.approx(512 * per_sequence)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((5.0, 1.5, 64, 8), "small_batch < big_batch"),
        ((5.0, 1.5, 8, 8), "small_batch < big_batch"),
        ((5.0, 1.5, 0, 8), "0 < small_batch"),
        ((math.nan, 1.5, 8, 64), "small_sq_norm"),
        ((5.0, math.inf, 8, 64), "big_sq_norm"),
    ],
)
def test_bad_inputs_raise_naming_the_argument_and_the_rule(args, needle):
    # Rule: sizes out of order or non-finite norms raise ValueError naming them.
    with pytest.raises(ValueError, match="gradient noise scale") as info:
        noise_scale_terms(*args)
    assert needle in str(info.value)


def test_no_value_until_the_averaged_gradient_is_positive():
    # Rule: no noise scale before any update, while the averaged |G|² is ≤ 0, or from
    # non-finite terms (skipped: they leave the averages unchanged).
    ema = NoiseScaleEMA(decay=0.5)
    assert ema.value is None
    assert ema.update(NoiseScaleTerms(-1.0, 30.0)) is None
    assert ema.update(NoiseScaleTerms(3.0, 30.0)) == pytest.approx(30.0 * 1.5 / 2.5)
    before = ema.state_dict()
    assert ema.update(NoiseScaleTerms(math.nan, 1.0)) == pytest.approx(18.0)
    assert ema.state_dict() == before


def test_state_dict_round_trips():
    # Rule: a resumed estimator continues exactly where the saved one was.
    ema = NoiseScaleEMA(decay=0.8)
    for g, t in ((1.0, 20.0), (2.0, 50.0)):
        ema.update(NoiseScaleTerms(g, t))
    resumed = NoiseScaleEMA()
    resumed.load_state_dict(ema.state_dict())
    assert resumed == ema
    assert resumed.update(NoiseScaleTerms(1.5, 40.0)) == ema.update(NoiseScaleTerms(1.5, 40.0))


def test_decay_out_of_range_is_refused():
    # Rule: decay must lie in [0, 1).
    with pytest.raises(ValueError, match="0 <= decay < 1"):
        NoiseScaleEMA(decay=1.0)
