"""Wortsman LR sensitivity and LR transfer recover a known truth through MLflow.

Truth: an LR sweep over width {64, 256, 1024} × weight decay {0, 0.1} × parameterization
{standard, mup} on the grid geomspace(3e-4, 3e-1, 8), each run with its own seed. Final loss
3.2 − 0.1·log2(width/64) − 0.05·[wd = 0.1] + 0.05·ln²(η/η*), η* = 1e-2·64/width for standard
and 3e-3 for muP; a run diverges above η_div = 0.2·(64/width)^0.5 (standard) or 0.2 (muP),
and is written as the sweep writes it: status `diverged`, no final loss. ℓ0 = 9.0. Noise:
none, so the score must match the hand computation to 1e-9. One failed run and one run still
running are added to a group; neither may change its score.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

WIDTHS = (64, 256, 1024)
LRS = np.geomspace(3e-4, 3e-1, 8)
ELL0 = 9.0


def best_lr(width: int, parameterization: str) -> float:
    return 1e-2 * 64 / width if parameterization == "standard" else 3e-3


def diverges_above(width: int, parameterization: str) -> float:
    return 0.2 * (64 / width) ** 0.5 if parameterization == "standard" else 0.2


def final_loss(width: int, wd: float, parameterization: str, lr: float) -> float:
    base = 3.2 - 0.1 * math.log2(width / 64) - (0.05 if wd else 0.0)
    return base + 0.05 * math.log(lr / best_lr(width, parameterization)) ** 2


def lr_trials() -> list[dict]:
    trials, seed = [], 0
    for width in WIDTHS:
        for wd in (0.0, 0.1):
            for parameterization in ("standard", "mup"):
                for lr in LRS:
                    diverged = lr > diverges_above(width, parameterization)
                    loss = None if diverged else final_loss(width, wd, parameterization, lr)
                    trials.append(lr_trial(width, wd, parameterization, lr, seed, loss, diverged))
                    seed += 1
    # A crash and an unfinished run in the (256, 0.1, mup) group: left out, counted.
    trials.append(lr_trial(256, 0.1, "mup", LRS[-1], seed, None, False, status="failed"))
    trials.append(lr_trial(256, 0.1, "mup", LRS[0], seed + 1, None, False, status="running"))
    return trials


def lr_trial(width, wd, parameterization, lr, seed, loss, diverged, status=None) -> dict:
    return {
        "params": {
            "model.width": width,
            "model.depth": 2,
            "model.parameterization": parameterization,
            "model.qk_norm": False,
            "optim.lr": float(lr),
            "optim.weight_decay": wd,
            "optim.decay_mode": "independent",
            "train.seed": seed,
            "train.flop_counting": "6N",
        },
        "summary": {"init_loss": ELL0, "final_val_loss": loss, "params": 1e5 * width},
        "status": status or ("diverged" if diverged else "completed"),
    }


def hand_score(width: int, wd: float, parameterization: str) -> float:
    """Wortsman et al.: mean over the grid of min(ℓ, ℓ0) − ℓ*, a diverged run at ℓ0."""
    values = [
        ELL0
        if lr > diverges_above(width, parameterization)
        else min(final_loss(width, wd, parameterization, lr), ELL0)
        for lr in LRS
    ]
    return float(np.mean(values) - np.min(values))


@pytest.fixture(scope="module")
def lr_fit(store):
    store.write("wortsman-truth", lr_trials())
    return "wortsman-truth"


def test_every_group_matches_the_hand_computation(lr_fit, fit_json):
    # Tolerance 1e-9 (no noise). The default groups are exactly what the sweep varied (width,
    # parameterization, weight decay): never the LR, the seed or the constant params.
    fit = fit_json(lr_fit, "--kind", "lr-sensitivity")
    assert fit["group_by"] == ["model.width", "model.parameterization", "optim.weight_decay"]
    assert len(fit["groups"]) == 12
    for group in fit["groups"]:
        key = (group["model.width"], group["optim.weight_decay"], group["model.parameterization"])
        assert group["sensitivity"] == pytest.approx(hand_score(*key), abs=1e-9), key
        assert group["coverage"] == "grid" and group["n_lr"] == 8
        assert group["scored_range"] == pytest.approx([3e-4, 3e-1])
        expected_diverged = sum(lr > diverges_above(key[0], key[2]) for lr in LRS)
        assert group["n_diverged"] == expected_diverged
    odd = next(g for g in fit["groups"] if (g["model.width"], g["optim.weight_decay"],
               g["model.parameterization"]) == (256, 0.1, "mup"))  # fmt: skip
    assert (odd["n_failed"], odd["n_unfinished"], odd["n_runs"]) == (1, 1, 10)
    assert fit["scored_range"] == pytest.approx([3e-4, 3e-1])


def test_transfer_exponent_is_minus_one_for_sp_and_zero_for_mup(lr_fit, fit_json):
    # Truth: k = −1 for standard parameterization, 0 for muP, per weight decay. The best LR
    # is read off the grid (steps ×2.7), so k is within 0.15 of −1 (inside its 95 % interval)
    # and within 0.05 of 0. muP's best LR is the same grid point at every width: its interval
    # is the grid's, half a step (ln(1000)/14) per width over ln(1024/64), ±0.356, which
    # excludes −1 (resolved).
    fit = fit_json(lr_fit, "--kind", "lr-sensitivity")
    transfers = fit["transfer_exponent"]
    assert len(transfers) == 4
    for t in transfers:
        assert t["n_widths"] == 3
        if t["model.parameterization"] == "standard":
            assert t["k"] == pytest.approx(-1.0, abs=0.15)
            assert t["ci"][0] < -1.0 < t["ci"][1]
        else:
            assert t["k"] == pytest.approx(0.0, abs=0.05)
            half = math.log(1000) / 7 / math.log(16)
            assert t["ci"] == pytest.approx([-half, half]) and t["resolved"]
