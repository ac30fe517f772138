"""Parameter and FLOP counts against hand calculations."""

import pytest

from scalesweep.config import ModelConfig
from scalesweep.flops import count_params, flops_per_token, paired_params
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
    # Rule: Hoffmann et al. Appendix F term by term for the layers (Table A4 leaves out the
    # embedding and the final logits), per sequence of T=128, then ×3 and /T.
    t, d, f, heads = 128, 64, 256, 4
    attention = (
        2 * 3 * t * d * d  # qkv: 3,145,728
        + 2 * t * t * d  # logits: 2,097,152
        + 3 * heads * t * t  # softmax: 196,608
        + 2 * t * t * d  # reductions: 2,097,152
        + 2 * t * d * d  # output: 1,048,576
    )
    dense = 2 * t * (2 * d * f)  # 8,388,608
    forward = 2 * (attention + dense)
    assert forward == 33_947_648
    assert flops_per_token(SMALL, "chinchilla") == pytest.approx(3 * forward / t)


# Hoffmann et al. 2022, Table A4: (layers, d_model, ffw_size, heads, k/q size) and the published
# ratio of their FLOP count to 6·N·D; N is the model's parameter count from their Table A9
# (74M, 306M, 552M, 1143M, 1593M, 6796M). Sequence length 2048, vocabulary 32,000.
TABLE_A4 = [
    (10, 640, 2560, 10, 64, 74e6, 1.03),
    (20, 1024, 4096, 16, 64, 306e6, 1.10),
    (24, 1280, 5120, 10, 128, 552e6, 1.08),
    (26, 1792, 7168, 14, 128, 1143e6, 1.04),
    (28, 2048, 8192, 16, 128, 1593e6, 1.03),
    (40, 3584, 14336, 28, 128, 6796e6, 0.99),
]


@pytest.mark.parametrize(("layers", "width", "ffw", "heads", "kq", "params", "ratio"), TABLE_A4)
def test_chinchilla_convention_reproduces_table_a4(layers, width, ffw, heads, kq, params, ratio):
    # Rule: `chinchilla` FLOPs per token / (6·N) equals Table A4's ratio to its 2 decimals
    # (0.01 allows for the rounding of the ratio and of N). Failed before the fix: counting
    # the embedding and the final logits gave 1.58, 1.32, 1.23, 1.14, 1.12, 1.03.
    config = ModelConfig(width=width, depth=layers, head_dim=kq, seq_len=2048, vocab_size=32000,
                         mlp_ratio=ffw / width)  # fmt: skip
    assert config.n_heads == heads
    assert flops_per_token(config, "chinchilla") / (6 * params) == pytest.approx(ratio, abs=0.01)


@pytest.mark.parametrize("layers, width, ffw, heads, kq, params, ratio", TABLE_A4[:1])
def test_chinchilla_paired_n_is_table_a9_count_for_a_chinchilla_shape(
    layers, width, ffw, heads, kq, params, ratio
):
    # Rule: the N `chinchilla` pairs with keeps the output head and leaves out the input
    # embedding; for Table A4's first shape our (bias-free, RoPE) model has 12·L·d² + 2·L·d + d
    # + 32000·d = 69,645,440 such parameters, within 6 % of Table A9's 74M (theirs has biases
    # and relative-position weights).
    config = ModelConfig(width=width, depth=layers, head_dim=kq, seq_len=2048, vocab_size=32000)
    n = paired_params(count_params(config), "chinchilla")
    assert n == 12 * layers * width**2 + 2 * layers * width + width + 32000 * width == 69_645_440
    assert n == pytest.approx(params, rel=0.06)


def test_conventions_by_hand():
    # Rule: 6N = 6·total; kaplan = 6·nonembed; palm = 6·(total − embedding) + 12·L·d·T.
    counts = count_params(SMALL)
    assert flops_per_token(SMALL, "6N") == 6 * 131_392
    assert flops_per_token(SMALL, "kaplan") == 6 * 98_624
    assert flops_per_token(SMALL, "palm") == 6 * (131_392 - 16_384) + 12 * 2 * 64 * 128
    assert counts.total - counts.embedding == 115_008


def test_paired_params_per_convention():
    # Rule: 6N pairs with the total, kaplan with the non-embedding count, chinchilla and palm
    # with everything but the input embedding.
    counts = count_params(SMALL)
    assert paired_params(counts, "6N") == 131_392
    assert paired_params(counts, "kaplan") == 98_624
    assert paired_params(counts, "chinchilla") == paired_params(counts, "palm") == 115_008
