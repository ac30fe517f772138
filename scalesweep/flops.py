"""Parameter and training-FLOP counting under named conventions.

Scaling-law exponents depend on how compute is counted (Porian et al. 2024 trace most of the
Kaplan-vs-Chinchilla gap to it), so every count here says which convention it is:

- `6N`: 6 · total parameters per token (the Chinchilla paper's approximation, C = 6ND).
- `kaplan`: 6 · N_nonembed, the exact non-embedding count, ≈ 12 · depth · width² at MLP ratio 4
  (Kaplan et al. 2020, §2.1): no embeddings, no output head, no attention-logit FLOPs.
- `chinchilla`: Hoffmann et al. 2022, Appendix F, as their Table A4 counts it: per layer the
  attention (QKV projections, logits, softmax, value reductions, output projection) and the
  dense block, forward × 3 for forward + backward. The input embedding and the final logits are
  *not* counted: Table A4's ratios (1.03, 1.10, 1.08, 1.04, 1.03, 0.99 for its six shapes)
  come out only without them (with them, 1.58 … 1.03; Karpathy's nanoGPT `scaling_laws.ipynb`
  reproduces the table the same way, citing correspondence with the authors). The N that pairs
  with it is Chinchilla's parameter count, which leaves out the input embedding but keeps the
  output head (Table A9). Beware: for a small model with a large vocabulary the head's FLOPs
  (6·vocab·width per token) are a large share of the real compute and this convention omits
  them; `palm` and `6N` count them.
- `palm`: 6 · (every parameter that does a matmul, i.e. all but the input-embedding lookup)
  + 12 · depth · width · seq_len for attention (PaLM, Appendix B). Used for MFU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scalesweep.config import ModelConfig

Convention = Literal["6N", "kaplan", "chinchilla", "palm"]
CONVENTIONS: tuple[Convention, ...] = ("6N", "kaplan", "chinchilla", "palm")


@dataclass(frozen=True)
class ParamCount:
    total: int
    """Every parameter, embeddings and head included."""
    nonembed: int
    """Without the input embedding and the output head (Kaplan's N)."""
    embedding: int
    """Input embedding (vocab · width)."""
    head: int
    """Output head (width · vocab); untied, so counted apart from the embedding."""


def count_params(model: ModelConfig, vocab_size: int | None = None) -> ParamCount:
    """Parameters of `scalesweep.model.GPT` from its shape, by hand. The model checks itself
    against this (tests/test_flops.py)."""
    vocab = vocab_size or model.vocab_size
    if vocab is None:
        raise ValueError("vocab_size is needed to count parameters")
    d, f = model.width, model.mlp_width
    attention = 3 * d * d + d * d + (2 * model.head_dim if model.qk_norm else 0)
    mlp = 2 * d * f
    norms = 2 * d  # two pre-norm LayerNorm gains, no biases
    per_layer = attention + mlp + norms
    nonembed = model.depth * per_layer + d  # + final LayerNorm gain
    embedding = head = vocab * d
    return ParamCount(
        total=nonembed + embedding + head, nonembed=nonembed, embedding=embedding, head=head
    )


def chinchilla_forward_flops_per_sequence(model: ModelConfig) -> float:
    """Forward FLOPs of one sequence, term by term as in Hoffmann et al. 2022, Appendix F, for
    the transformer layers only (Table A4 counts neither the embedding nor the final logits;
    see the module docstring)."""
    t, d, f, n_layers = model.seq_len, model.width, model.mlp_width, model.depth
    kv = model.head_dim * model.n_heads  # key_size × num_heads
    qkv = 2 * 3 * t * d * kv
    logits = 2 * t * t * kv
    softmax = 3 * model.n_heads * t * t
    reductions = 2 * t * t * kv
    attn_out = 2 * t * kv * d
    dense = 2 * t * (d * f + d * f)
    return float(n_layers * (qkv + logits + softmax + reductions + attn_out + dense))


def paired_params(counts: ParamCount, convention: Convention) -> int:
    """The N each convention pairs with (C ≈ 6·N·D): total for `6N`, non-embedding for
    `kaplan`, and every parameter but the input embedding for `chinchilla` (Chinchilla's own
    counts, Table A9) and `palm` (the parameters that do a matmul)."""
    if convention == "6N":
        return counts.total
    if convention == "kaplan":
        return counts.nonembed
    return counts.total - counts.embedding


def flops_per_token(
    model: ModelConfig, convention: Convention, vocab_size: int | None = None
) -> float:
    """Training (forward + backward) FLOPs per token under `convention`."""
    counts = count_params(model, vocab_size)
    if convention in ("6N", "kaplan"):
        return 6.0 * paired_params(counts, convention)
    if convention == "chinchilla":
        return 3.0 * chinchilla_forward_flops_per_sequence(model) / model.seq_len
    if convention == "palm":  # 6·N plus the attention term, 12·L·d·T
        attention = 12.0 * model.depth * model.width * model.seq_len
        return 6.0 * paired_params(counts, convention) + attention
    raise ValueError(f"`convention` must be one of {CONVENTIONS}, but got {convention!r}")
