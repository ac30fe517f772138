"""Wortsman et al. 2023 LR sensitivity and LR transfer across widths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalesweep.errors import UserError
from scalesweep.fit.laws.lr.sensitivity import default_group_by, fit_lr_sensitivity

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
        # LRs 1e-3, 3e-3, 1e-2, 3e-1 are not a grid (no 3e-2, 1e-1): the capped loss minus ℓ*
        # (0.25, 0, 0.05, 2.15; seeds averaged, 7.0 capped at ℓ0, failed run left out) is
        # integrated over ln η across the LRs' span [1e-3, 3e-1]: 0.125·ln 3 + 0.025·ln(10/3)
        # + 1.1·ln 30 = 3.90874, divided by ln(300).
        (128, 3.90874 / 5.70378, 3e-3, 2.85, 4, 0, 1),
    ],
)
def test_matches_hand_computed_scores(
    hand_fit, width, sensitivity, best_lr, best_loss, n_lr, n_diverged, n_failed
):
    # Rule: sensitivity = mean over a grid of LRs in [a, b] of min(ℓ, ℓ0) − ℓ*, diverged runs
    # as ℓ0; LRs that are not a grid are integrated over ln η across the part of [a, b] they
    # span.
    group = next(g for g in hand_fit.groups if g.key["model.width"] == width)
    assert group.sensitivity == pytest.approx(sensitivity, rel=1e-5)
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


def test_default_group_by_is_every_varying_run_parameter_but_lr_and_seed():
    # Rule: the default groups are the dotted run parameters that vary, except the LR and the
    # seed (width first); constant ones are not keys; a table without dotted columns falls
    # back to width / qk_norm / z_loss. Failed before the fix (finding 3): the default was
    # width, qk_norm and z_loss whatever the sweep varied.
    runs = pd.DataFrame(
        {
            "model.depth": [2, 4, 2, 4],
            "model.width": [64, 64, 128, 128],
            "optim.lr": [1e-3, 1e-2, 1e-3, 1e-2],
            "train.seed": [0, 1, 2, 3],
            "model.qk_norm": True,
            "optim.weight_decay": [0.0, 0.0, 0.1, 0.1],
        }
    )
    groups, why = default_group_by(runs)
    assert groups == ("model.width", "model.depth", "optim.weight_decay")
    assert "varies" in why
    fallback, _ = default_group_by(pd.DataFrame(columns=["width", "z_loss", "lr"]))
    assert fallback == ("width", "z_loss")


def test_branch_lineage_is_not_a_group_and_single_lr_groups_are_refused():
    # Rule: cooldown branches' lineage (`branch.of`, `branch.fork_step`, `branch.tokens`) says
    # where a run was forked, not how it was set up: it is no default group column. A sweep
    # with one LR per group (an isoFLOP grid) has no sensitivity: a UserError saying so, not
    # a score of 0 per run.
    runs = pd.DataFrame(
        {
            "model.width": [64, 64, 128, 128],
            "train.tokens": [1e6, 2e6, 1e6, 2e6],
            "branch.of": ["t0", None, "t1", None],
            "branch.fork_step": [80.0, None, 40.0, None],
            "optim.lr": 1e-2,
            "lr": 1e-2,
            "loss": [3.0, 2.9, 2.8, 2.7],
            "init_loss": 5.0,
        }
    )
    groups, _ = default_group_by(runs)
    assert groups == ("model.width", "train.tokens")
    with pytest.raises(UserError, match=r"2 or more LRs per group.*each of the 4 group"):
        fit_lr_sensitivity(runs)


def sp_mup_sweep() -> pd.DataFrame:
    """Standard parameterization (best LR ∝ 1/width) and muP (best LR 3e-3 at every width) on
    one LR grid (factors of 2 around 3e-3), as one sweep records them."""
    rows = []
    for parameterization in ("standard", "mup"):
        for width in (64, 128, 256, 512):
            best = 3e-3 * (256 / width if parameterization == "standard" else 1.0)
            for lr in 3e-3 * 2.0 ** np.arange(-5, 6):
                loss = 3.0 + 0.1 * np.log(lr / best) ** 2
                rows.append((parameterization, width, lr, min(loss, 6.0), 6.0))
    return pd.DataFrame(rows, columns=["model.parameterization", "model.width", "lr", "loss",
                                       "init_loss"])  # fmt: skip


def test_parameterizations_are_not_pooled_by_default():
    # Rule: runs that differ in a swept parameter (here SP vs muP) are separate groups by
    # default, with their own transfer exponents: ≈ −1 for SP, ≈ 0 for muP. Failed before the
    # fix (finding 3): both were averaged per LR into "k = 0 at every width".
    fit = fit_lr_sensitivity(sp_mup_sweep())
    assert fit.group_by == ("model.width", "model.parameterization")
    k = {t.key["model.parameterization"]: t.k for t in fit.transfer}
    assert k["standard"] == pytest.approx(-1.0, abs=0.1)
    assert k["mup"] == pytest.approx(0.0, abs=0.05)


def test_baseline_is_the_best_loss_inside_the_range():
    # Rule: ℓ* = min over η in [a, b] (Wortsman et al.): LRs (1e-4, 3e-4, 1e-3, 3e-3) with
    # losses (2.0, 2.5, 2.6, 2.7) and range [3e-4, 3e-3] score mean(0, 0.1, 0.2) = 0.10.
    # Failed before the fix (finding 2): ℓ* = 2.0, from the LR outside the range, gave 0.60.
    runs = pd.DataFrame({"lr": [1e-4, 3e-4, 1e-3, 3e-3], "loss": [2.0, 2.5, 2.6, 2.7],
                         "init_loss": 5.0})  # fmt: skip
    group = fit_lr_sensitivity(runs, group_by=(), lr_range=(3e-4, 3e-3)).groups[0]
    assert group.sensitivity == pytest.approx(0.10)
    assert group.ell_star == 2.5 and group.best_loss == 2.0 and group.coverage == "grid"


def test_only_finished_runs_are_scored():
    # Rule: a completed run with a non-finite loss and a still-running run are left out and
    # named in the notes; only a run marked diverged scores ℓ0. Failed before the fix
    # (finding 4): both were scored ℓ0 = 5.0, giving (0 + 0.5 + 3 + 3) / 4 = 1.625.
    runs = pd.DataFrame({
        "trial_id": ["a", "b", "c", "d"], "lr": [1e-3, 1e-2, 1e-1, 3e-1],
        "loss": [2.0, 2.5, NAN, NAN], "init_loss": 5.0,
        "status": ["completed", "completed", "completed", "running"],
    })  # fmt: skip
    fit = fit_lr_sensitivity(runs, group_by=(), lr_range=(1e-3, 1e-2))
    group = fit.groups[0]
    assert group.sensitivity == pytest.approx(0.25) and group.n_unfinished == 2
    assert group.n_diverged == 0
    assert any("2 run(s) not scored" in n and "c, d" in n for n in fit.notes)


def test_sampled_lrs_are_integrated_over_log_lr():
    # Rule: with LRs sampled mostly near the optimum (as TPE does), the score integrates the
    # capped loss over ln η across the span of the LRs, [3e-4, 2.5e-1] here, which matches the
    # expectation of the true curve over that span within 15 %, where the plain mean over the
    # samples (the code before the fix, finding 12) is 47 % too low; the group says it was
    # `sampled`, how much of [a, b] it covered and which range it scored.
    # Truth: ℓ(η) = 3 + 0.15·ln²(η/3e-3) capped at ℓ0 = 5, on [3e-4, 3e-1]; no noise.
    def curve(lr):
        return np.minimum(3.0 + 0.15 * np.log(lr / 3e-3) ** 2, 5.0)

    lrs = np.array([3e-4, 1.5e-3, 2e-3, 2.5e-3, 3e-3, 3.5e-3, 4.5e-3, 6e-3, 3e-2, 2.5e-1])
    runs = pd.DataFrame({"lr": lrs, "loss": curve(lrs), "init_loss": 5.0})
    group = fit_lr_sensitivity(runs, group_by=()).groups[0]
    x = np.linspace(np.log(3e-4), np.log(2.5e-1), 20001)
    truth = float(np.mean(curve(np.exp(x)))) - 3.0
    plain_mean = float(np.mean(curve(lrs))) - 3.0
    assert group.coverage == "sampled" and group.covered > 0.9
    assert group.scored_range == (3e-4, 2.5e-1)
    assert group.sensitivity == pytest.approx(truth, rel=0.15)
    assert plain_mean < 0.6 * truth


def test_a_grid_that_misses_part_of_the_range_is_scored_over_the_part_it_spans():
    # Rule: the quickstart's LRs (3e-3, 3e-2, 3e-1, 1.0) leave [3e-4, 3e-3] of Wortsman's
    # [3e-4, 0.3] unsampled: the score is the grid's plain mean over the 3 LRs inside the range,
    # and the fit, each group and a note say it is over [3e-3, 0.3], not [3e-4, 0.3]. Failed
    # before the fix: the group claimed a full `grid` over [a, b] and nothing said otherwise.
    runs = pd.DataFrame({"lr": [3e-3, 3e-2, 3e-1, 1.0], "loss": [2.2, 2.1, 2.6, 4.0],
                         "init_loss": 5.5})  # fmt: skip
    fit = fit_lr_sensitivity(runs, group_by=())
    group = fit.groups[0]
    assert group.sensitivity == pytest.approx((0.1 + 0 + 0.5) / 3)
    assert group.coverage == "grid" and group.scored_range == (3e-3, 3e-1)
    assert fit.lr_range == (3e-4, 3e-1) and fit.scored_range == (3e-3, 3e-1)
    assert fit.to_dict()["scored_range"] == [3e-3, 3e-1]
    assert any("scored over [0.003, 0.3], the part of [0.0003, 0.3]" in n for n in fit.notes)


def test_groups_scored_over_different_ranges_are_named():
    # Rule: when the groups' LRs span different parts of [a, b], each is scored over its own,
    # the fit has no common scored range and a note says the scores are not comparable; a
    # group with a single LR inside [a, b] has no score (an expectation over one point is 0).
    runs = pd.DataFrame({
        "width": [64, 64, 64, 128, 128, 256, 256],
        "lr": [1e-3, 1e-2, 1e-1, 1e-2, 1e-1, 1e-2, 1.0],
        "loss": [2.5, 2.2, 2.4, 2.1, 2.3, 2.0, 2.9], "init_loss": 5.0,
    })  # fmt: skip
    fit = fit_lr_sensitivity(runs, group_by=("width",))
    ranges = {g.key["width"]: g.scored_range for g in fit.groups}
    assert ranges == {64: (1e-3, 1e-1), 128: (1e-2, 1e-1), 256: None}
    assert fit.groups[2].sensitivity is None and fit.scored_range is None
    assert any("not comparable" in n and "[0.001, 0.1], [0.01, 0.1]" in n for n in fit.notes)
    assert any("group width=256: a single LR inside" in n for n in fit.notes)
    from scalesweep.fit.kinds import KINDS

    lines = KINDS["lr-sensitivity"].summary(fit.to_dict())
    assert (
        "  sensitivity over the LRs each group spans inside [0.0003, 0.3] (ranges differ: "
        "see the notes)" in lines
    )
    full = fit_lr_sensitivity(runs.assign(lr=runs["lr"] * 1.0000000001), lr_range=(1e-3, 1e-1),
                              group_by=())  # fmt: skip
    assert "  sensitivity over LRs in [0.001, 0.1]" in KINDS["lr-sensitivity"].summary(
        full.to_dict()
    )


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


def test_one_best_lr_at_every_width_is_k_zero_known_to_the_grid_spacing():
    # Rule: when every width's best LR is the same grid point, k is 0 (not OLS round-off such
    # as -2e-15), and its interval is what the grid allows, not [0, 0]: each optimum may lie
    # half a grid step (×√10 on this 10× grid) either side of 0.03, so the OLS slope over
    # widths 64–256 may be ±ln(10)/ln(4) = ±1.661. That holds k = 0 and k = −1: not resolved.
    # The summary names the group each transfer line belongs to. Failed before the fix: the
    # interval was [0, 0].
    from scalesweep.fit.kinds import KINDS

    grid = [(w, qk, lr) for w in (64, 128, 256) for qk in (False, True) for lr in (3e-3, 3e-2, 0.3)]
    rows = [(w, qk, lr, 3.0 + (lr != 3e-2) * 0.1 + (not qk) * 0.05, 5.0) for w, qk, lr in grid]
    runs = pd.DataFrame(rows, columns=["model.width", "model.qk_norm", "lr", "loss", "init_loss"])
    fit = fit_lr_sensitivity(runs)
    half = np.log(10) / np.log(4)
    for t in fit.transfer:
        assert t.k == 0.0 and t.ci == pytest.approx((-half, half)) and not t.resolved
    assert any("is not resolved" in note for note in fit.notes)
    lines = [x for x in KINDS["lr-sensitivity"].summary(fit.to_dict()) if "transfer" in x]
    assert lines[0] == (
        "lr transfer qk_norm=False: k=0 CI [-1.661, 1.661] (3 widths; not resolved: "
        "the interval the LR grid allows holds both k = 0 and k = -1)"
    )


def test_two_widths_on_a_coarse_grid_give_the_interval_the_grid_allows(tmp_path):
    # Rule: the quickstart's case, 2 widths (64, 128) with the same best LR on a 10× grid: k = 0
    # with the interval ±ln(10)/ln(2) = ±3.32 (each optimum within ×√10 of 0.03), not k = 0 with
    # [0, 0] or no interval; the answer and the plot's title say it is not resolved. A best LR
    # at the grid's edge leaves its side open (the optimum may lie beyond the grid). With a
    # finer grid and widths 16× apart, k = −1 is resolved. Failed before the fix: [0, 0] and a
    # plot titled "the LR transfers".
    from scalesweep.fit.kinds import KINDS
    from scalesweep.fit.laws.lr.transfer import grid_interval
    from scalesweep.fit.plots.lr import lr_transfer, transfer_title

    lrs = (3e-3, 3e-2, 0.3, 1.0)
    rows = [(w, lr, 2.0 + (lr != 3e-2) * 0.2, 5.0) for w in (64, 128) for lr in lrs]
    fit = fit_lr_sensitivity(pd.DataFrame(rows, columns=["model.width", "lr", "loss",
                                                        "init_loss"]))  # fmt: skip
    (t,) = fit.transfer
    assert t.k == 0.0 and t.ci == pytest.approx((-np.log(10) / np.log(2), np.log(10) / np.log(2)))
    assert not t.resolved and t.se is None
    answer = "\n".join(KINDS["lr-sensitivity"].answer(fit.to_dict()))  # type: ignore[misc]
    assert "not resolved: k = 0 in [-3.322, 3.322] over 2 widths" in answer
    assert "not resolved" in transfer_title(fit)
    assert lr_transfer(fit, tmp_path).exists()
    # the best LR at the grid's smallest LR: open below; the middle of 3 log-even widths has no
    # weight in the slope, so its open side does not open the interval
    assert grid_interval(np.array([64, 128]), [(-np.inf, 0.0), (-1.0, 1.0)])[1] is None
    spans = [(-1.0, 1.0), (-np.inf, 1.0), (-1.0, 1.0)]
    assert grid_interval(np.array([64, 256, 1024]), spans) == pytest.approx(
        (-2 / np.log(16), 2 / np.log(16))
    )
    fine = [(w, lr, 2.0 + 0.3 * np.log(lr * w / 0.64) ** 2, 5.0)
            for w in (64, 1024) for lr in 1e-2 * 2.0 ** np.arange(-6, 3)]  # fmt: skip
    fine_fit = fit_lr_sensitivity(pd.DataFrame(fine, columns=["model.width", "lr", "loss",
                                                             "init_loss"]))  # fmt: skip
    (k_fine,) = fine_fit.transfer  # ±ln 2/2 per width over ln 16: k in [−1.25, −0.75]
    assert k_fine.k == pytest.approx(-1.0) and k_fine.ci == pytest.approx((-1.25, -0.75))
    assert k_fine.resolved and "not resolved" not in transfer_title(fine_fit)


def test_many_groups_print_one_line_with_the_extremes():
    # Rule: `scalesweep fit --kind all` stays readable at sweep scale: up to MAX_GROUP_LINES
    # groups print a line each; more print one line naming the least and the most sensitive
    # group and the best LRs' range (a sweep of 80 groups printed 80 lines before).
    from scalesweep.fit.kinds import KINDS
    from scalesweep.fit.kinds.lr import MAX_GROUP_LINES

    def summary(n_groups):
        rows = [(seed, lr, 3.0 + abs(np.log10(lr / 0.03)) * (1 + seed / 100), 5.0)
                for seed in range(n_groups) for lr in (3e-3, 3e-2, 0.3)]  # fmt: skip
        runs = pd.DataFrame(rows, columns=["train.seed", "lr", "loss", "init_loss"])
        fit = fit_lr_sensitivity(runs, group_by=["train.seed"])
        return [x for x in KINDS["lr-sensitivity"].summary(fit.to_dict()) if "sensitivity" in x]

    few = summary(MAX_GROUP_LINES)
    assert sum(x.startswith("lr-sensitivity seed=") for x in few) == MAX_GROUP_LINES
    many = [x for x in summary(80) if x.startswith("lr-sensitivity")]
    assert len(many) == 1
    assert many[0].startswith("lr-sensitivity: 80 groups by ['train.seed']: sensitivity ")
    assert "(seed=0) to " in many[0] and "(seed=79)" in many[0]
    assert "best_lr 0.03 to 0.03" in many[0]


def test_sensitivity_curves_draw_at_most_max_panels_and_say_so(tmp_path):
    # Rule: one panel per intervention up to MAX_PANELS (8); 12 batch sizes draw 8 panels
    # (8 × 500 px wide at 100 dpi, not 12 × 500: a 10,000-run sweep had 100 such panels).
    from matplotlib.image import imread

    from scalesweep.fit.plots import lr as plots

    rows = [
        {"lr": lr, "loss": 3.0 + (np.log10(lr) + 2.5) ** 2, "init_loss": 9.0, "bs": bs, "width": w}
        for bs in 2 ** np.arange(12)
        for w in (64, 128)
        for lr in (1e-3, 3e-3, 1e-2)
    ]
    fit = fit_lr_sensitivity(pd.DataFrame(rows), group_by=("bs", "width"))
    path = plots.lr_sensitivity_curves(fit, tmp_path)
    assert imread(path).shape[1] == plots.MAX_PANELS * 500
    assert plots.MAX_PANELS == 8


def test_combinations_without_two_widths_are_one_note():
    # Rule: on an isoFLOP grid each width has its own token count, so no (tokens, bs)
    # combination holds 2 widths: one note counts the 8 combinations, not 8 notes.
    rows = [
        {
            "lr": lr,
            "loss": 3.0 + (np.log10(lr) + 2.5) ** 2,
            "init_loss": 9.0,
            "bs": bs,
            "width": w,
            "tokens": budget * 1e6 / w,
        }
        for budget in (1, 3)
        for bs in (16, 32)
        for w in (64, 128)
        for lr in (1e-3, 3e-3, 1e-2)
    ]
    fit = fit_lr_sensitivity(pd.DataFrame(rows), group_by=("bs", "tokens", "width"))
    narrow = [n for n in fit.notes if "fewer than 2 widths" in n]
    assert len(narrow) == 1 and narrow[0].startswith("8 combinations (")
