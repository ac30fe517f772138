"""Chinchilla's Approaches 2 and 3 side by side, with which to trust and why.

Approach 2 (isoFLOP profiles) reads each budget's minimum off its sampled sizes; Approach 3
(the parametric L(N, D)) fits every run at once. Czech et al. 2026 ("Problems with Chinchilla
Approach 2") show when Approach 2 is biased: when a budget's sizes are not centred on its
optimum, and when the loss is asymmetric about it in ln N, which Approach 3 measures as α ≠ β.
Both are diagnosed in the fits themselves (`profiles.BudgetFit.centre_offset`, the parametric
fit's `alpha_minus_beta` interval); this module sets the two answers beside each other and
recommends one: with backtests (`--predict-flops`), the one that predicted the held-out largest
budget's N_opt better (a diagnostic says where Approach 2 can be biased, a backtest whether it
was); without, Approach 3 when a diagnostic flags Approach 2, and either when they agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scalesweep.fit.laws.isoflop.approach2 import IsoflopFit
from scalesweep.fit.laws.isoflop.profiles import OFF_CENTRE
from scalesweep.fit.laws.parametric.approach3 import ParametricFit

Bounds = list[Any] | tuple[Any, ...] | None


def _overlap(a: Bounds, b: Bounds) -> bool | None:
    if not a or not b or None in (*a, *b):
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def _backtest_error(backtest: Mapping[str, Any], name: str) -> float | None:
    """|N_opt error| of the backtest that held out the largest budget, one budget ahead."""
    held = backtest.get(name, {}).get("held_out", []) if isinstance(backtest, Mapping) else []
    errors = [abs(t["error"]["n_opt"]) for t in held if t["ahead"] == 1 and t["error"]["n_opt"]]
    return errors[0] if errors else None


def compare_approaches(
    isoflop: IsoflopFit,
    parametric: ParametricFit,
    prediction: Mapping[str, Any] | None,
    backtest: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """fit.json's `approaches`: both answers (a, b; N_opt and D_opt at `--predict-flops`), the
    two diagnostics, whether the answers agree, and the recommendation with its reason."""
    kept = [b for b in isoflop.budgets if not b.excluded]
    off = [
        {"flops": b.flops, "centre_offset": b.centre_offset}
        for b in kept
        if b.centre_offset is not None and abs(b.centre_offset) > OFF_CENTRE
    ]
    difference = parametric.ci.get("alpha_minus_beta")
    asymmetric = _overlap(difference, [0.0, 0.0]) is False
    agree_a = _overlap(list(isoflop.a_ci), parametric.ci.get("a"))
    answers: dict[str, Any] = {
        "approach2": {"a": isoflop.a, "a_ci": list(isoflop.a_ci), "b": isoflop.b},
        "approach3": {"a": parametric.a, "a_ci": parametric.ci.get("a"), "b": parametric.b},
    }
    agree_n = None
    if prediction and "isoflop" in prediction and "parametric" in prediction:
        two, three = prediction["isoflop"], prediction["parametric"]
        for key, answer in (("approach2", two), ("approach3", three)):
            answers[key].update(n_opt=answer["n_opt"], d_opt=answer["d_opt"])
        agree_n = _overlap(two["pi"].get("n_opt"), three["pi"].get("n_opt"))
    recommend, why = _recommend(off, len(kept), asymmetric, agree_a, backtest or {})
    return {
        **answers,
        "agree": {"a": agree_a, "n_opt": agree_n},
        "off_centre": off,
        "alpha_minus_beta": {
            "value": parametric.alpha - parametric.beta,
            "ci": difference,
            "differ": asymmetric,
        },
        "recommend": recommend,
        "why": why,
    }


def _recommend(
    off: list[dict[str, Any]],
    n_budgets: int,
    asymmetric: bool,
    agree: bool | None,
    backtest: Mapping[str, Any],
) -> tuple[str, str]:
    """Which approach to trust: the one that predicted the held-out largest budget's N_opt
    better, when both were backtested (the diagnostics say where Approach 2 can be biased; the
    backtest measures whether it was); else Approach 3 when a diagnostic flags Approach 2;
    else either when they agree."""
    flags = []
    if off:
        flags.append(
            f"{len(off)} of {n_budgets} budgets' sizes are off the centre of their optimum by "
            "more than a third of their span"
        )
    if asymmetric:
        flags.append("α ≠ β: the loss is asymmetric about each budget's optimum")
    flagged = "; ".join(flags)
    errors = {
        name: error
        for name in ("isoflop", "parametric")
        if (error := _backtest_error(backtest, name)) is not None
    }
    if len(errors) == 2:
        best = min(errors, key=errors.__getitem__)
        other = "parametric" if best == "isoflop" else "isoflop"
        said = (
            f"held out, the largest budget's N_opt was predicted within {100 * errors[best]:.0f} "
            f"% by {best} against {100 * errors[other]:.0f} % by {other}"
        )
        caution = f" (Czech et al. 2026's diagnostics: {flagged})" if flagged else ""
        return ("approach2" if best == "isoflop" else "approach3"), said + caution
    if flagged:
        return "approach3", (
            f"{flagged}: Approach 2 is biased there (Czech et al. 2026); no backtest to weigh "
            "it against (give --predict-flops)"
        )
    if agree is not False:
        return "either", (
            "no diagnostic flags Approach 2 and the two agree on a; Approach 3 uses every run, "
            "Approach 2 only each budget's minimum"
        )
    return "neither", (
        "they disagree on a and no diagnostic says why; give --predict-flops for backtests, and "
        "look at the isoFLOP and contour plots"
    )
