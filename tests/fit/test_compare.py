"""The compare kind on tables built here: bad input refused with the flag and the value, the
baseline chosen and named, fewer than 3 budgets answered per budget only, a variant that
changes N noted, and the sweep's own report finding the key to compare."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalesweep.errors import UserError
from scalesweep.fit.laws.compare.fit import fit_compare
from scalesweep.fit.laws.compare.frontier import sweep_variant


def runs(
    budgets=(1e14, 1e15, 1e16),
    values=(False, True),
    multiplier=1.5,
    column="model.qk_norm",
    params=lambda value: 1e6,
    seeds=(0, 1),
    noise=1e-3,
) -> pd.DataFrame:
    """A sweep's runs table: the variant (any value but the first) at C·multiplier; every
    value's run of a (budget, seed) has the same noise."""
    rng = np.random.default_rng(0)
    rows = []
    for c in budgets:
        draws = 1 + noise * rng.standard_normal(len(seeds))
        for i, value in enumerate(values):
            for seed, draw in zip(seeds, draws, strict=True):
                loss = (1.7 + 3 * (c * (multiplier if i else 1) / 1e14) ** -0.3) * draw
                rows.append(
                    {
                        column: value,
                        "train.seed": seed,
                        "model.width": 64,
                        "flops": c,
                        "params": params(value),
                        "loss": loss,
                        "status": "completed",
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("table", "variant", "message"),
    [
        (runs(), None, "--kind compare needs --variant COLUMN"),
        (runs(), "model.qk_nrom", "did you mean 'model.qk_norm'"),
        (runs(values=(True,)), "model.qk_norm", "at least 2 values of `model.qk_norm`"),
        (runs(budgets=(1e15,)), "model.qk_norm", "at 2 or more budgets"),
    ],
    ids=["no --variant", "typo", "one value", "one budget"],
)
def test_bad_input_names_the_flag_and_the_value(table, variant, message):
    # Rule: nothing is fitted to garbage: each refusal names --variant and what was wrong.
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        fit_compare(table, variant=variant)


def test_a_value_missing_at_a_budget_leaves_that_budget_out_saying_so():
    # Rule: a budget without a completed run of some value is not compared there (a named
    # note); the other budgets still are.
    table = runs(budgets=(1e14, 1e15, 1e16, 1e17))
    table.loc[(table["flops"] == 1e17) & table["model.qk_norm"], "status"] = "diverged"
    fit = fit_compare(table, variant="model.qk_norm")
    assert list(fit.cells.budgets) == pytest.approx([1e14, 1e15, 1e16])
    assert any("1e+17 left out: no completed run of True" in n for n in fit.notes)


def test_baseline_named_and_chosen():
    # Rule: the baseline is --baseline, else the switched-off value, else the most common;
    # an unknown --baseline is refused listing the values.
    assert fit_compare(runs(), variant="model.qk_norm").baseline == "False"
    table = runs(values=("cosine", "wsd"), column="schedule.type")
    table = pd.concat([table, table[table["schedule.type"] == "wsd"]], ignore_index=True)
    fit = fit_compare(table, variant="schedule.type")
    assert (fit.baseline, fit.baseline_why) == ("wsd", "the most common value")
    fit = fit_compare(table, variant="schedule.type", baseline="cosine")
    assert fit.baseline == "cosine" and fit.comparisons[0].value == "wsd"
    with pytest.raises(UserError, match=r"--baseline 'linear'.*\['cosine', 'wsd'\]"):
        fit_compare(table, variant="schedule.type", baseline="linear")


def test_two_budgets_give_per_budget_multipliers_only():
    # Rule: fewer than 3 budgets: no law and no extrapolation, the multiplier per budget read
    # off the baseline's local slope, and a note saying so.
    fit = fit_compare(runs(budgets=(1e14, 1e15)), variant="model.qk_norm", target=1e18)
    assert fit.method == "per-budget" and fit.comparisons[0].at_target is None
    assert any("no law L(C) and no extrapolation" in n for n in fit.notes)
    assert any("--predict-flops not answered" in n for n in fit.notes)
    # The baseline's slope between the two budgets is near the law's, so M is near 1.5.
    for point in fit.comparisons[0].at_budgets:
        assert point.value == pytest.approx(1.5, rel=0.15)


def test_a_variant_that_changes_n_says_which_compute_was_used():
    # Rule: a variant with 20 % more parameters at the same shape is compared at the runs' own
    # FLOPs, and a note says so.
    fit = fit_compare(runs(params=lambda value: 1.2e6 if value else 1e6), variant="model.qk_norm")
    assert any("changes the parameter count (up to 1.2×" in n for n in fit.notes)


def test_multipliers_agree_with_the_truth_and_no_difference_is_named():
    # Rule: with 0.1 % noise M = 1.5 is recovered at every budget; runs of two values that
    # differ in nothing are "no resolvable difference" (the coverage of M = 1 under
    # independent noise is tested in tests/validation/test_truth_compare.py).
    fit = fit_compare(runs(), variant="model.qk_norm")
    assert [p.value for p in fit.comparisons[0].at_budgets] == pytest.approx([1.5] * 3, rel=0.05)
    same = fit_compare(runs(multiplier=1.0), variant="model.qk_norm")
    assert any("no resolvable difference" in n for n in same.notes)


def test_sweep_report_finds_the_switched_key():
    # Rule: the sweep's own report compares a boolean or categorical model/optim/schedule key
    # present at 2+ budgets, never a numeric one (the LR) and never at one budget.
    assert sweep_variant(runs()) == "model.qk_norm"
    assert sweep_variant(runs(values=(1e-3, 1e-2), column="optim.lr")) is None
    assert sweep_variant(runs(budgets=(1e15,))) is None
    assert sweep_variant(runs(values=("cosine", "wsd"), column="schedule.type")) == (
        "schedule.type"
    )


def test_a_multiplier_read_outside_the_baselines_budgets_is_noted():
    # Rule: when the baseline reaches the variant's loss only below (or above) its own budgets,
    # M extrapolates the baseline's law, and a note names the budgets where it does.
    fit = fit_compare(runs(multiplier=0.05), variant="model.qk_norm")
    assert fit.comparisons[0].at_budgets[0].value == pytest.approx(0.05, rel=0.1)
    assert any("only outside its budgets" in n and "1e+14" in n for n in fit.notes)
