"""Wortsman et al. 2023 LR sensitivity and LR transfer across widths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalesweep.errors import UserError
from scalesweep.fit.lr_sensitivity import default_group_by, fit_lr_sensitivity

NAN = float("nan")


def hand_example() -> pd.DataFrame:
    """Two widths; width 64 has a diverged run, width 128 two seeds at one LR, a run above
    ℓ0 and a failed run."""
    rows = [
        # width, lr, loss, init_loss, status
        (64, 1e-4, 4.0, 5.5, "completed"),  # outside [3e-4, 3e-1]: not averaged
        (64, 1e-3, 3.2, 5.5, "completed"),
        (64, 1e-2, 3.0, 5.5, "completed"),
        (64, 1e-1, NAN, 5.5, "diverged"),  # scores ℓ0 = 5.5
        (128, 1e-3, 3.1, 5.0, "completed"),
        (128, 3e-3, 2.8, 5.0, "completed"),
        (128, 3e-3, 2.9, 5.0, "completed"),  # seeds average to 2.85
        (128, 1e-2, 2.9, 5.0, "completed"),
        (128, 1e-2, NAN, NAN, "failed"),  # left out, counted
        (128, 3e-1, 7.0, 5.0, "completed"),  # capped at ℓ0 = 5.0
    ]
    return pd.DataFrame(rows, columns=["model.width", "optim.lr", "final_val_loss",
                                       "init_loss", "status"])  # fmt: skip


@pytest.fixture(scope="module")
def hand_fit():
    from scalesweep.fit.runs import apply_column_map

    return fit_lr_sensitivity(apply_column_map(hand_example(), {}))


@pytest.mark.parametrize(
    ("width", "sensitivity", "best_lr", "best_loss", "n_lr", "n_diverged", "n_failed"),
    [
        # (0.2 + 0 + 2.5) / 3: lr 1e-4 is outside the range, the diverged run counts as ℓ0
        (64, 0.9, 1e-2, 3.0, 3, 1, 0),
        # (0.25 + 0 + 0.05 + 2.15) / 4: seeds averaged, 7.0 capped at ℓ0, failed run left out
        (128, 0.6125, 3e-3, 2.85, 4, 0, 1),
    ],
)
def test_matches_hand_computed_scores(
    hand_fit, width, sensitivity, best_lr, best_loss, n_lr, n_diverged, n_failed
):
    # Rule: sensitivity = mean over LRs in [a, b] of min(ℓ, ℓ0) − min ℓ, diverged runs as ℓ0.
    group = next(g for g in hand_fit.groups if g.key["model.width"] == width)
    assert group.sensitivity == pytest.approx(sensitivity)
    assert group.best_lr == pytest.approx(best_lr)
    assert group.best_loss == pytest.approx(best_loss)
    assert (group.n_lr, group.n_diverged, group.n_failed) == (n_lr, n_diverged, n_failed)


def test_narrower_range_averages_fewer_points():
    # Rule: --lr-range restricts the averaged LRs (width 64, [1e-3, 1e-2]: (0.2 + 0) / 2).
    fit = fit_lr_sensitivity(hand_example().rename(columns={"optim.lr": "lr",
                                                            "final_val_loss": "loss"}),
                             lr_range=(1e-3, 1e-2))  # fmt: skip
    group = next(g for g in fit.groups if g.key["model.width"] == 64)
    assert group.sensitivity == pytest.approx(0.1) and group.n_lr == 2


def test_constant_init_loss_replaces_the_column():
    # Rule: --init-loss gives ℓ0 when the table has no init_loss column (e.g. ln(vocab)).
    runs = (
        hand_example()
        .drop(columns="init_loss")
        .rename(columns={"optim.lr": "lr", "final_val_loss": "loss"})
    )
    fit = fit_lr_sensitivity(runs, init_loss=6.0)
    group = next(g for g in fit.groups if g.key["model.width"] == 64)
    assert group.sensitivity == pytest.approx((0.2 + 0 + 3.0) / 3)
    with pytest.raises(UserError, match="init_loss"):
        fit_lr_sensitivity(runs)


@pytest.mark.parametrize(("k_true", "qk_norm"), [(-1.0, False), (0.0, True)])
def test_transfer_exponent_per_intervention(k_true, qk_norm):
    # Rule: best LR ∝ width^k is recovered per combination of the other group columns
    # (k = 0: the LR transfers).
    rows = []
    lrs = np.geomspace(1e-4, 1.0, 25)
    for qk in (False, True):
        k = k_true if qk == qk_norm else 0.5
        for width in (64, 128, 256, 512):
            best = 1e-2 * (width / 64) ** k
            for lr in lrs:
                loss = 3.0 + 0.3 * np.log(lr / best) ** 2
                rows.append((width, qk, lr, loss, 6.0))
    runs = pd.DataFrame(rows, columns=["model.width", "model.qk_norm", "lr", "loss", "init_loss"])
    fit = fit_lr_sensitivity(runs)
    assert fit.group_by == ("model.width", "model.qk_norm")
    transfer = next(t for t in fit.transfer if t.key["model.qk_norm"] == qk_norm)
    assert transfer.k == pytest.approx(k_true, abs=0.1)
    assert transfer.n_widths == 4


def test_default_group_by_uses_the_columns_present():
    # Rule: group by whichever of model.width (or width), model.qk_norm, model.z_loss exist.
    assert default_group_by(["width", "model.z_loss", "lr"]) == ("width", "model.z_loss")
    assert default_group_by(["lr", "loss"]) == ()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"group_by": ["model.depth"]}, "model.depth"), ({"lr_range": (1e-1, 1e-3)}, "lo < hi")],
)
def test_bad_options_name_the_problem(kwargs, needle):
    # Rule: unknown group columns and an inverted range raise UserError naming them.
    runs = hand_example().rename(columns={"optim.lr": "lr", "final_val_loss": "loss"})
    with pytest.raises(UserError, match=needle):
        fit_lr_sensitivity(runs, **kwargs)


def test_json_has_the_stable_keys(hand_fit):
    # Rule: to_dict exposes groups (group columns + scores) and transfer_exponent, no NaN.
    import json

    data = json.loads(json.dumps(hand_fit.to_dict(), allow_nan=False))
    assert set(data["groups"][0]) >= {"model.width", "sensitivity", "best_lr", "best_loss",
                                      "n_lr", "n_diverged"}  # fmt: skip
    assert isinstance(data["transfer_exponent"], list)
