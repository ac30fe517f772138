"""How often the batch-size fits' 95 % intervals hold a known truth (docs/batch_size.md).

The truths of tests/fit/kaplan_truth.py: Kaplan et al.'s L(N, S_min) and B_crit(L) through the
McCandlish trade-off (3 sizes × 9 batch sizes × 2 LRs, 30 evaluations per run, loss noise
0.3 %), and L(N, D) from their published constants (36 runs, noise 0.5 %). Fitted with the
library on the same tables `scalesweep fit` reads (tests/fit/test_batch_size.py checks that a
curves file and MLflow give the same fit). Three Markdown tables:
1. seed 0: each quantity's truth, fit and 95 % interval;
2. over `--seeds` seeds (default 20): how many of the critical-batch and kaplan-ns intervals
   (the jackknife over batch sizes) hold the truth, and how many the WLS interval of the
   B_crit(L) law would have held (it takes the loss levels as independent; they are not);
3. over `--nd-seeds` seeds (default 40): the same for kaplan-nd's asymptotic intervals.

    python benchmarks/batch_coverage.py            # ~45 s on 2 cores
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fit.kaplan_truth

from scalesweep.fit.laws.batch.critical import CriticalBatchFit, fit_critical_batch
from scalesweep.fit.laws.batch.kaplan import fit_kaplan_nd, fit_kaplan_ns
from scalesweep.fit.numerics.regression import t_quantile
from scalesweep.fit.runs import apply_column_map
from tests.fit.kaplan_truth import KAPLAN, ND_TRUTH, frames, nd_loss, nd_runs, trials

NS_TRUTH = {
    "S_c": KAPLAN.s_c,
    "alpha_S": KAPLAN.alpha_s,
    "N_c": KAPLAN.n_c,
    "alpha_N": KAPLAN.alpha_n,
}
AT_L, AT_NS, AT_ND = 4.0, {"N": 1e9, "S": 1e5}, {"N": 1e10, "D": 1e11}


def wls_intervals(cb: CriticalBatchFit) -> dict[str, tuple[float, float]]:
    """B* and α_B intervals from the WLS covariance of the law alone (levels independent)."""
    (c00, _), (_, c11) = cb.law.cov  # type: ignore[misc]
    t = t_quantile(cb.level, cb.law.n_points - 2)
    b, slope = cb.law.coef, cb.law.exponent
    low, high = slope - t * math.sqrt(c11), slope + t * math.sqrt(c11)
    alpha = (-1 / low, -1 / high) if high < 0 else (math.nan, math.nan)
    return {
        "B*": (b * math.exp(-t * math.sqrt(c00)), b * math.exp(t * math.sqrt(c00))),
        "alpha_B": alpha,
    }


def batch_fits(seed: int) -> tuple[CriticalBatchFit, object]:
    runs, curves = frames(trials(seed=seed))
    cb = fit_critical_batch(runs, curves)
    return cb, fit_kaplan_ns(runs, curves, critical=cb, predict_at=[AT_NS])


def seed0_rows() -> list[tuple[str, float, float, tuple[float, float]]]:
    cb, ns = batch_fits(0)
    at_l = cb.predict(AT_L)
    rows = [
        ("B*", KAPLAN.b_star, cb.b_star, cb.b_star_ci),
        ("α_B", KAPLAN.alpha_b, cb.alpha_b, cb.alpha_b_ci),
        (f"B_crit(L = {AT_L:g})", KAPLAN.b_crit(AT_L), at_l["b_crit"], tuple(at_l["ci"])),
    ]
    values, ci = ns.values(), ns.intervals()  # type: ignore[attr-defined]
    rows += [(k.replace("alpha_", "α_"), v, values[k], ci[k]) for k, v in NS_TRUTH.items()]
    (at,) = ns.predictions  # type: ignore[attr-defined]
    truth = KAPLAN.floor(1e9) + (KAPLAN.s_c / 1e5) ** KAPLAN.alpha_s
    rows.append(("L(N = 1e9, S_min = 1e5)", truth, at["loss"], tuple(at["ci"])))
    nd = fit_kaplan_nd(apply_column_map(nd_runs(0), {}), predict_at=[AT_ND])
    values, ci = nd.values(), nd.intervals()
    rows += [
        (f"kaplan-nd {k.replace('alpha_', 'α_')}", v, values[k], ci[k]) for k, v in ND_TRUTH.items()
    ]
    (at,) = nd.predictions
    rows.append(
        ("kaplan-nd L(N = 1e10, D = 1e11)", nd_loss(1e10, 1e11), at["loss"], tuple(at["ci"]))
    )
    return rows


def holds(band: tuple[float | None, float | None], value: float) -> bool:
    return band[0] is not None and band[1] is not None and band[0] < value < band[1]


def coverage(seeds: int) -> tuple[dict[str, list[int]], dict[str, list[float]]]:
    """(quantity -> [jackknife holds, WLS holds (critical-batch only, else -1)] counts,
    quantity -> per-seed width of the jackknife interval over the WLS one, in log space)."""
    counts: dict[str, list[int]] = {}
    ratios: dict[str, list[float]] = {"B*": [], "alpha_B": []}
    for seed in range(seeds):
        cb, ns = batch_fits(seed)
        wls = wls_intervals(cb)
        for name, truth, band in (
            ("B*", KAPLAN.b_star, cb.b_star_ci),
            ("alpha_B", KAPLAN.alpha_b, cb.alpha_b_ci),
        ):
            tally = counts.setdefault(name, [0, 0])
            tally[0] += holds(band, truth)
            tally[1] += holds(wls[name], truth)
            ratios[name].append(math.log(band[1] / band[0]) / math.log(wls[name][1] / wls[name][0]))
        ci = ns.intervals()  # type: ignore[attr-defined]
        for name, truth in NS_TRUTH.items():
            counts.setdefault(name, [0, -1])[0] += holds(ci[name], truth)
        print(f"  seed {seed}: done", file=sys.stderr)
    return counts, ratios


def nd_coverage(seeds: int) -> dict[str, int]:
    counts = dict.fromkeys(ND_TRUTH, 0)
    for seed in range(seeds):
        ci = fit_kaplan_nd(apply_column_map(nd_runs(seed), {})).intervals()
        for name, truth in ND_TRUTH.items():
            counts[name] += holds(ci[name], truth)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--nd-seeds", type=int, default=40)
    args = parser.parse_args()
    print("| quantity | truth | fitted | 95% interval |\n|---|---|---|---|")
    for name, truth, value, band in seed0_rows():
        print(f"| {name} | {truth:.4g} | {value:.4g} | [{band[0]:.4g}, {band[1]:.4g}] |")
    counts, ratios = coverage(args.seeds)
    print(
        "\n| quantity | jackknife interval holds the truth | WLS interval (levels as "
        "independent) | median width, jackknife / WLS |\n|---|---|---|---|"
    )
    for name, (jack, wls) in counts.items():
        wls_text = "—" if wls < 0 else f"{wls}/{args.seeds}"
        ratio = f"{statistics.median(ratios[name]):.2f}" if name in ratios else "—"
        print(f"| {name} | {jack}/{args.seeds} | {wls_text} | {ratio} |")
    nd = nd_coverage(args.nd_seeds)
    print("\n| kaplan-nd | asymptotic interval holds the truth |\n|---|---|")
    for name, count in nd.items():
        print(f"| {name} | {count}/{args.nd_seeds} |")


if __name__ == "__main__":
    main()
