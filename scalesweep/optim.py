"""Optimizers: AdamW and LionW with coupled or independent weight decay, and muP LR groups.

Weight decay, per `optim.decay_mode`:
- coupled (torch's AdamW): θ ← θ − η_t·λ·θ, so decay grows with the LR.
- independent (Wortsman et al. 2023, §3.2.2): θ ← θ − s_t·λ·θ, with s_t = η_t/η the schedule
  multiplier, so λ alone is the decay per step at the peak.

Both are the same decoupled update with a different per-group coefficient: torch applies
θ ← θ − lr_g·wd_g·θ, and with lr_g = η_t·m_g (m_g the group's muP LR multiplier) setting
wd_g = λ/(η·m_g) gives exactly s_t·λ. So both modes run on torch's own (fused) AdamW.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from scalesweep.config import ModelConfig, OptimConfig
from scalesweep.model import GPT


class LionW(Optimizer):
    """Lion (Chen et al. 2023, Algorithm 2) with decoupled weight decay:
    c = β1·m + (1−β1)·g;  θ ← θ − lr·(sign(c) + wd·θ);  m ← β2·m + (1−β2)·g."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"`lr > 0` must hold, but got ({lr=})")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            moments = []
            for p in params:
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                moments.append(state["exp_avg"])
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            update = torch._foreach_lerp(moments, grads, 1 - beta1)
            torch._foreach_add_(params, torch._foreach_sign(update), alpha=-lr)
            torch._foreach_lerp_(moments, grads, 1 - beta2)
        return loss


def lr_multipliers(model_config: ModelConfig) -> dict[str, float]:
    """Per-kind LR multiplier m_g. muP with Adam scales hidden matrices by 1/width_mult and leaves
    embeddings, the (multiplier-scaled) output head and gains alone (Yang et al. 2022, Table 8)."""
    width_mult = model_config.width / model_config.mup_base_width
    hidden = 1.0 / width_mult if model_config.parameterization == "mup" else 1.0
    return {"embedding": 1.0, "hidden": hidden, "output": 1.0, "norm": 1.0}


def param_groups(model: GPT, config: OptimConfig) -> list[dict[str, Any]]:
    """One group per (kind, decayed?) with `lr_mult` and the torch `weight_decay` coefficient."""
    multipliers = lr_multipliers(model.config)
    decayed_kinds: set[str] = {"hidden", "output"}
    if config.decay_embeddings:
        decayed_kinds.add("embedding")
    if config.decay_norms:
        decayed_kinds.add("norm")
    by_kind: dict[str, list[torch.nn.Parameter]] = {}
    named = dict(model.named_parameters())
    for name, kind in model.parameter_kinds().items():
        by_kind.setdefault(kind, []).append(named[name])
    groups = []
    for group_kind, params in by_kind.items():
        mult = multipliers[group_kind]
        decay = config.weight_decay if group_kind in decayed_kinds else 0.0
        if config.decay_mode == "independent":
            decay = decay / (config.lr * mult)
        groups.append(
            {"params": params, "lr_mult": mult, "weight_decay": decay, "kind": group_kind}
        )
    return groups


def build_optimizer(model: GPT, config: OptimConfig, *, fused: bool = False) -> Optimizer:
    """AdamW (torch's, fused on CUDA) or LionW over `param_groups`. Call `set_lr` every step."""
    groups = param_groups(model, config)
    betas = (config.beta1, config.beta2)
    if config.name == "lion":
        return LionW(groups, lr=config.lr, betas=betas)
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=betas, eps=config.eps, fused=fused, foreach=not fused
    )


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set every group's LR to `lr` times its muP multiplier."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
