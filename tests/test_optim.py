"""Optimizers: param groups, coupled vs independent decay, our AdamW path vs torch's."""

import pytest
import torch

from scalesweep.config import ModelConfig, OptimConfig
from scalesweep.model import GPT
from scalesweep.optim import LionW, build_optimizer, param_groups, set_lr


def tiny_model(**overrides) -> GPT:
    torch.manual_seed(0)
    fields = {"width": 32, "depth": 1, "head_dim": 8, "seq_len": 8, "vocab_size": 20}
    return GPT(ModelConfig(**{**fields, **overrides}))


def one_step(model: GPT, config: OptimConfig, lr_now: float) -> dict[str, torch.Tensor]:
    optimizer = build_optimizer(model, config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: the step is decay alone (Adam update is 0)
    set_lr(optimizer, lr_now)
    optimizer.step()
    return before


@pytest.mark.parametrize(
    ("mode", "expected_factor"),
    [
        # coupled: θ ← θ(1 − η_t λ) = θ(1 − 0.005·0.1)
        ("coupled", 1 - 0.005 * 0.1),
        # independent: θ ← θ(1 − s_t λ), s_t = η_t/η = 0.5  ->  θ(1 − 0.05)
        ("independent", 1 - 0.5 * 0.1),
    ],
)
def test_decay_modes_single_step_by_hand(mode, expected_factor):
    # Rule: coupled decay multiplies by the current LR, independent decay by the schedule only.
    model = tiny_model()
    config = OptimConfig(lr=0.01, weight_decay=0.1, decay_mode=mode)
    before = one_step(model, config, lr_now=0.005)
    up = "blocks.0.mlp.up.weight"
    torch.testing.assert_close(dict(model.named_parameters())[up], before[up] * expected_factor)
    # embeddings and gains are not decayed by default
    torch.testing.assert_close(model.embed.weight, before["embed.weight"])
    torch.testing.assert_close(model.final_norm.weight, before["final_norm.weight"])


def test_independent_decay_ignores_mup_lr_multiplier():
    # Rule: under muP the hidden LR is scaled by base/width, but independent decay stays s_t·λ.
    model = tiny_model(parameterization="mup", mup_base_width=8)
    config = OptimConfig(lr=0.01, weight_decay=0.1, decay_mode="independent")
    before = one_step(model, config, lr_now=0.01)
    up = "blocks.0.mlp.up.weight"
    torch.testing.assert_close(dict(model.named_parameters())[up], before[up] * (1 - 0.1))


def test_our_adamw_matches_torch_adamw():
    # Rule: with standard parameterization and coupled decay on every matrix, our optimizer is
    # torch.optim.AdamW with the same groups, step for step.
    ours, ref = tiny_model(), tiny_model()
    config = OptimConfig(lr=3e-3, weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8)
    optimizer = build_optimizer(ours, config)
    groups = param_groups(ref, config)
    reference = torch.optim.AdamW(
        [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in groups],
        lr=3e-3,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    idx = torch.randint(0, 20, (4, 8))
    for _step in range(5):
        for model, opt in ((ours, optimizer), (ref, reference)):
            opt.zero_grad()
            model(idx, idx.roll(1, dims=1)).loss.backward()
            if opt is optimizer:
                set_lr(opt, 3e-3)
            opt.step()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_groups_split_by_kind_and_decay():
    # Rule: hidden and output matrices decay; embedding and norms do not, unless configured.
    model = tiny_model()
    decay = {
        g["kind"]: g["weight_decay"] for g in param_groups(model, OptimConfig(weight_decay=0.1))
    }
    assert decay == {"embedding": 0.0, "hidden": 0.1, "output": 0.1, "norm": 0.0}
    config = OptimConfig(weight_decay=0.1, decay_embeddings=True, decay_norms=True)
    assert all(g["weight_decay"] == 0.1 for g in param_groups(model, config))


def test_mup_scales_hidden_lr_only():
    # Rule: muP (Adam) divides the hidden-matrix LR by width/base_width (Yang et al. Table 8).
    model = tiny_model(parameterization="mup", mup_base_width=8)
    mults = {g["kind"]: g["lr_mult"] for g in param_groups(model, OptimConfig())}
    assert mults == {"embedding": 1.0, "hidden": 8 / 32, "output": 1.0, "norm": 1.0}


def test_lion_update_by_hand():
    # Rule: θ ← θ(1 − lr·wd) − lr·sign(β1·m + (1−β1)·g); m ← β2·m + (1−β2)·g (Chen et al. 2023).
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = LionW([param], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    param.grad = torch.tensor([0.3, -0.1, 0.0])
    optimizer.step()
    expected = torch.tensor([1.0, -2.0, 3.0]) * (1 - 0.05) - 0.1 * torch.tensor([1.0, -1.0, 0.0])
    torch.testing.assert_close(param.detach(), expected)
    torch.testing.assert_close(
        optimizer.state[param]["exp_avg"], 0.01 * torch.tensor([0.3, -0.1, 0.0])
    )
