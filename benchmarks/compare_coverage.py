"""How often the compare kind's 95 % interval holds the true multiplier, and how often it
resolves one, over seeded repetitions of the known-truth test's runs (the pure fit, no MLflow).

    .venv/bin/python benchmarks/compare_coverage.py [REPS]

Prints a table: truth, E, in the interval at the largest budget, at every budget, resolved.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from scalesweep.fit.laws.compare.fit import fit_compare
from tests.validation.test_truth_compare import table, trials


def row(multiplier: float, shared: bool | None, reps: int) -> str:
    last = every = resolved = 0
    for rep in range(reps):
        fit = fit_compare(
            table(trials(multiplier, seed=100 + rep)),
            variant="model.qk_norm",
            shared_e=shared,
            rng=np.random.default_rng(rep),
        )
        points = fit.comparisons[0].at_budgets
        held = [p.ci[0] <= multiplier <= p.ci[1] for p in points]
        last, every = last + held[-1], every + all(held)
        resolved += fit.comparisons[0].resolvable
    e = "shared" if shared else "own (default at 4 budgets)"
    return f"| {multiplier} | {e} | {last}/{reps} | {every}/{reps} | {resolved}/{reps} |"


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    start = time.perf_counter()
    print("| M | E | M in CI, largest budget | M in CI, every budget | resolved |")
    print("|---|---|---|---|---|")
    for multiplier, shared in ((1.0, None), (1.0, True), (1.3, None), (1.05, True), (1.05, None)):
        print(row(multiplier, shared, reps), flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
