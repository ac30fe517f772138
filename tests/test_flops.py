"""Parameter and FLOP counts against hand calculations."""

import pytest

from scalesweep.config import ModelConfig
from scalesweep.flops import count_params, flops_per_token
from scalesweep.model import GPT

# Two shapes worked out by hand below.
SMALL = ModelConfig(width=64, depth=2, head_dim=16, seq_len=128, vocab_size=256)
GPT2ISH = ModelConfig(width=768, depth=12, head_dim=64, seq_len=1024, vocab_size=50304)


def test_small_parameter_count_by_hand():
    # Rule: per layer 4d² (qkv + proj) + 8d² (MLP at ratio 4) + 2d (gains); + d final gain;
    # + 2Vd for the untied embedding and head.
    # d=64, L=2, V=256: 12·64² = 49152; +128 -> 49280 per layer; ×2 = 98560; +64 = 98624.
    counts = count_params(SMALL)
    assert counts.nonembed == 98_624
    assert counts.embedding == counts.head == 256 * 64 == 16_384
    assert counts.total == 98_624 + 2 * 16_384 == 131_392


def test_gpt2_shape_parameter_count_by_hand():
    # Rule: d=768, L=12: 12·768² = 7,077,888 (+1536 gains) per layer; ×12 = 84,953,088; +768.
    # Embedding and head: 50304 · 768 = 38,633,472 each.
    counts = count_params(GPT2ISH)
    assert counts.nonembed == 84_953_856
    assert counts.total == 84_953_856 + 2 * 38_633_472


@pytest.mark.parametrize("config", [SMALL, SMALL.model_copy(update={"qk_norm": True})])
def test_model_counts_itself_like_flops_py(config):
    # Rule: the model's own count equals sum(p.numel()) and the shape formula (qk-norm adds
    # two head_dim gains per layer).
    model = GPT(config)
    assert model.num_params()["total"] == sum(p.numel() for p in model.parameters())
    assert model.num_params()["total"] == count_params(config).total
    assert model.num_params()["nonembed"] == count_params(config).nonembed


def test_chinchilla_flops_by_hand_small():
    # Rule: Hoffmann et al. Appendix F term by term, per sequence of T=128, then ×3 and /T.
    t, d, v, f, heads = 128, 64, 256, 256, 4
    embeddings = 2 * t * v * d  # 4,194,304
    attention = (
        2 * 3 * t * d * d  # qkv: 3,145,728
        + 2 * t * t * d  # logits: 2,097,152
        + 3 * heads * t * t  # softmax: 196,608
        + 2 * t * t * d  # reductions: 2,097,152
        + 2 * t * d * d  # output: 1,048,576
    )
    dense = 2 * t * (2 * d * f)  # 8,388,608
    logits = 2 * t * d * v  # 4,194,304
    forward = embeddings + 2 * (attention + dense) + logits
    assert forward == 42_336_256
    assert flops_per_token(SMALL, "chinchilla") == pytest.approx(3 * forward / t)


def test_chinchilla_close_to_6n_for_gpt2_shape():
    # Rule: at GPT-2 scale the Appendix F count and 6N agree to within ~15% (Hoffmann et al.
    # Table A4 shows ratios near 1 for large models); attention at T=1024 adds the most.
    ratio = flops_per_token(GPT2ISH, "chinchilla") / flops_per_token(GPT2ISH, "6N")
    assert 1.0 < ratio < 1.15


def test_conventions_by_hand():
    # Rule: 6N = 6·total; kaplan = 6·nonembed; palm = 6·(total − embedding) + 12·L·d·T.
    counts = count_params(SMALL)
    assert flops_per_token(SMALL, "6N") == 6 * 131_392
    assert flops_per_token(SMALL, "kaplan") == 6 * 98_624
    assert flops_per_token(SMALL, "palm") == 6 * (131_392 - 16_384) + 12 * 2 * 64 * 128
    assert counts.total - counts.embedding == 115_008
