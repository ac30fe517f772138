"""The GPT proxy model of Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer
training instabilities"): a pre-norm decoder with RoPE, no biases, untied input and output
embeddings, optional qk-layernorm and z-loss, in standard or muP parameterization.

The model owns its counting (`num_params`, checked against `scalesweep.flops`) and its
diagnostics: on steps where `diagnostics=True` it also returns the largest pre-softmax attention
logit and the mean log Z of the output softmax, the two quantities whose growth Wortsman et al.
tie to attention-logit collapse and output-logit divergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from scalesweep.config import ModelConfig

ParamKind = Literal["embedding", "hidden", "output", "norm"]


@dataclass
class ModelOutput:
    loss: torch.Tensor
    """Training objective: cross-entropy plus z_loss · mean(log² Z)."""
    ce_loss: torch.Tensor
    """Cross-entropy alone, the number comparable across runs."""
    attn_logit_max: torch.Tensor | None = None
    """Largest pre-softmax attention logit over layers, heads and causal positions."""
    output_logz: torch.Tensor | None = None
    """Mean over tokens of log Z = logsumexp of the output logits."""


# A normal truncated at ±2σ keeps 0.8796σ of its std; variance-scaling initializers (JAX's, as
# in Wortsman et al.) divide by this so the weights really have the std they are given.
TRUNCATED_STD = 0.87962566103423978


def _trunc_normal_(weight: torch.Tensor, std: float) -> None:
    """Truncated at ±2 of its own σ, with σ chosen so that the std after truncation is `std`."""
    sigma = std / TRUNCATED_STD
    nn.init.trunc_normal_(weight, mean=0.0, std=sigma, a=-2 * sigma, b=2 * sigma)


def rope_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """(seq_len, head_dim/2) rotation angles of rotary position embeddings (Su et al. 2021)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    positions = torch.arange(seq_len, dtype=torch.float32)
    return torch.outer(positions, inv_freq)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :h/2], x[..., h/2:]) of a (B, H, T, h) tensor by the position angles."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.width, 3 * config.width, bias=False)
        self.proj = nn.Linear(config.width, config.width, bias=False)
        self.q_norm = nn.LayerNorm(config.head_dim, bias=False) if config.qk_norm else None
        self.k_norm = nn.LayerNorm(config.head_dim, bias=False) if config.qk_norm else None
        # muP scales attention by 1/d_head instead of 1/sqrt(d_head): with aligned q and k the
        # dot product grows like d_head (Yang et al. 2022, §4).
        mup = config.parameterization == "mup"
        self.scale = 1.0 / config.head_dim if mup else 1.0 / math.sqrt(config.head_dim)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, diagnostics: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.n_heads, self.head_dim).unbind(dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, h)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        logit_max = None
        if diagnostics:
            # An explicit QK^T on logged steps only; every other step stays on fused SDPA.
            with torch.no_grad():
                logits = (q @ k.transpose(-2, -1)) * self.scale
                causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()
                logit_max = logits.masked_fill(~causal, float("-inf")).amax().float()
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        y = y.transpose(1, 2).reshape(batch, seq, width)
        return self.proj(y), logit_max


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.width, config.mlp_width, bias=False)
        self.down = nn.Linear(config.mlp_width, config.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.width, bias=False)
        self.attn = Attention(config)
        self.mlp_norm = nn.LayerNorm(config.width, bias=False)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, diagnostics: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, logit_max = self.attn(self.attn_norm(x), cos, sin, diagnostics)
        x = x + attn_out
        x = x + self.mlp(self.mlp_norm(x))
        return x, logit_max


class GPT(nn.Module):
    """Decoder-only transformer; `config.vocab_size` must be set (the trainer reads the data's)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("model.vocab_size must be set before building the model")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(config.width, bias=False)
        self.head = nn.Linear(config.width, config.vocab_size, bias=False)
        width_mult = config.width / config.mup_base_width
        mup = config.parameterization == "mup"
        # muP's output multiplier: logits scale like 1/width_mult so they stay O(1) as width grows.
        self.output_scale = config.output_mult / width_mult if mup else config.output_mult
        angles = rope_tables(config.seq_len, config.head_dim)
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated normal, std 1/sqrt(fan_in) for every matrix and 1/sqrt(d) for the embedding."""
        _trunc_normal_(self.embed.weight, std=1.0 / math.sqrt(self.config.width))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _trunc_normal_(module.weight, std=1.0 / math.sqrt(module.in_features))
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)

    def parameter_kinds(self) -> dict[str, ParamKind]:
        """Each parameter's role, which decides its weight decay and its muP LR scaling."""
        kinds: dict[str, ParamKind] = {}
        for name, param in self.named_parameters():
            if name == "embed.weight":
                kinds[name] = "embedding"
            elif name == "head.weight":
                kinds[name] = "output"
            elif param.ndim == 1:
                kinds[name] = "norm"
            else:
                kinds[name] = "hidden"
        return kinds

    def num_params(self) -> dict[str, int]:
        """Parameter counts: `total`; `nonembed` excludes the input embedding and the output head
        (Kaplan et al.'s N, ≈ 12·depth·width²)."""
        total = sum(p.numel() for p in self.parameters())
        embedding = self.embed.weight.numel()
        head = self.head.weight.numel()
        return {"total": total, "nonembed": total - embedding - head, "embedding": embedding}

    def logits(
        self, idx: torch.Tensor, *, diagnostics: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, vocab) output logits, and the largest attention logit when `diagnostics`."""
        seq = idx.shape[1]
        if seq > self.config.seq_len:
            raise ValueError(
                f"sequence of {seq} tokens exceeds model.seq_len={self.config.seq_len}"
            )
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]  # type: ignore[index]
        x = self.embed(idx)
        logit_maxes = []
        for block in self.blocks:
            x, logit_max = block(x, cos, sin, diagnostics)
            if logit_max is not None:
                logit_maxes.append(logit_max)
        attn_logit_max = torch.stack(logit_maxes).amax() if logit_maxes else None
        return self.head(self.final_norm(x)) * self.output_scale, attn_logit_max

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor, *, diagnostics: bool = False
    ) -> ModelOutput:
        logits, attn_logit_max = self.logits(idx, diagnostics=diagnostics)
        logits = logits.float().view(-1, logits.shape[-1])
        targets = targets.reshape(-1)
        z_loss = self.config.z_loss
        if z_loss > 0 or diagnostics:
            # One logsumexp serves both the cross-entropy and the z-loss (Wortsman et al. §3.1.2:
            # z-loss = mean(log² Z) keeps log Z near 0 and stops output-logit divergence).
            log_z = torch.logsumexp(logits, dim=-1)
            ce = (log_z - logits.gather(1, targets[:, None]).squeeze(1)).mean()
            loss = ce + z_loss * log_z.square().mean() if z_loss > 0 else ce
            output_logz = log_z.detach().mean() if diagnostics else None
        else:
            ce = F.cross_entropy(logits, targets)
            loss, output_logz = ce, None
        return ModelOutput(
            loss=loss, ce_loss=ce, attn_logit_max=attn_logit_max, output_logz=output_logz
        )
