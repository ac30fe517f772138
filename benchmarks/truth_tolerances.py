"""The spreads behind the known-truth tests' tolerances, measured over many seeds.

A test that checks one seed against a fixed tolerance says nothing unless the tolerance comes
from the noise. Three tables, printed as Markdown, one per test whose comment cites them:
1. tests/fit/test_isoflop.py, `test_recovers_known_exponent_from_noisy_profiles`: per case,
   the standard deviation of the isoFLOP exponent a over seeds 0-199 of `synthetic_runs`
   (0.2 % noise) and how often its 95 % interval held the truth;
2. tests/validation/test_truth_scaling_laws.py, the Step Law test: the standard deviation of
   each exponent over seeds 0-299 of `hparams_trials`, and its interval's coverage;
3. the same file, the Approach 3 test: the bootstrap interval widths (100 resamples) of α, β
   and a on the 24 cells against the widths 0.2 % noise allows least squares there
   (`asymptotic_widths`).
The fits are the library's, on the tables `scalesweep fit` reads (column aliases applied).

    python benchmarks/truth_tolerances.py          # ~2 min on 2 cores
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' generators

from scalesweep.fit.laws.hparams import fit_hparams
from scalesweep.fit.laws.isoflop.approach2 import fit_isoflop
from scalesweep.fit.laws.parametric.approach3 import fit_parametric
from scalesweep.fit.runs import apply_column_map
from tests.fit.test_isoflop import synthetic_runs
from tests.validation import test_truth_scaling_laws as truth


def table(trials: list[dict]) -> pd.DataFrame:
    """The runs table of `tests.sweep_runs` trials, as read back from MLflow (completed)."""
    rows = [{**t["params"], **t["summary"], "status": t["status"]} for t in trials]
    return apply_column_map(pd.DataFrame(rows), {})


def isoflop_spreads(seeds: int = 200) -> None:
    print("| a | method | sd of a | interval holds the truth |\n|---|---|---|---|")
    for a_true, method in ((0.5, "quadratic"), (0.7, "quadratic"), (0.5, "akima")):
        fits = [
            fit_isoflop(synthetic_runs(a_true, noise=2e-3, seed=s), method=method)
            for s in range(seeds)
        ]
        held = np.mean([f.a_ci[0] < a_true < f.a_ci[1] for f in fits])
        print(f"| {a_true} | {method} | {np.std([f.a for f in fits]):.3f} | {held:.1%} |")


def step_law_spreads(seeds: int = 300) -> None:
    checks = [("lr_law", "params", -0.5), ("lr_law", "tokens", 0.2), ("bs_law", "tokens", 0.5)]
    values: dict[tuple[str, str], list[float]] = {(law, v): [] for law, v, _ in checks}
    held = dict.fromkeys(values, 0)
    for seed in range(seeds):
        fit = fit_hparams(table(truth.hparams_trials(seed)))
        for law_name, variable, exponent in checks:
            law = getattr(fit, law_name)
            values[(law_name, variable)].append(law.exponents[variable])
            low, high = law.ci[variable]
            held[(law_name, variable)] += low < exponent < high
    print("\n| law | exponent of | truth | sd | interval holds the truth |\n|---|---|---|---|---|")
    for law_name, variable, exponent in checks:
        spread = np.std(values[(law_name, variable)])
        share = held[(law_name, variable)] / seeds
        print(f"| {law_name} | {variable} | {exponent} | {spread:.3f} | {share:.1%} |")


def approach3_widths() -> None:
    runs = table([t for t in truth.isoflop_trials() if t["status"] == "completed"])
    fit = fit_parametric(runs, n_bootstrap=100, rng=np.random.default_rng(0)).to_dict()
    widths = truth.asymptotic_widths()
    print("\n| parameter | bootstrap width | least-squares width at 0.2 % noise | ratio |")
    print("|---|---|---|---|")
    for name in ("alpha", "beta", "a"):
        width = fit["ci"][name][1] - fit["ci"][name][0]
        print(f"| {name} | {width:.4f} | {widths[name]:.4f} | {width / widths[name]:.2f} |")


if __name__ == "__main__":
    isoflop_spreads()
    step_law_spreads()
    approach3_widths()
