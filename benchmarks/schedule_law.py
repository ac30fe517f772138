"""How well the schedule laws predict held-out schedules from two runs, over noise seeds.

Curves from tests/fit/schedule_truth.py (600 steps, val/loss every 10 steps, 0.2 % noise; the
six schedules constant, cosine, linear decay, WSD 10 % linear, 20 % and 50 % 1-sqrt), each law
in turn as the truth; fitted on two runs (constant + cosine, the default pair, or cosine + WSD
10 %), the other four predicted. Per row: which law the backtest chose (how often it was the
truth's), and the chosen law's held-out final-loss errors against the noise-free truth (mean
|error| and worst, over seeds) and curve errors. Printed as Markdown (docs/cooldown.md).

    python benchmarks/schedule_law.py [SEEDS]       # 20 seeds: ~2 min on 2 cores
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' generators

from scalesweep.fit.laws.schedule.fit import fit_schedule_law
from tests.fit import schedule_truth as truth

FIT_ON = {
    "constant + cosine": ({"schedule.type": "constant"}, {"schedule.type": "cosine"}),
    "default pair": (),
    "cosine + WSD 10 %": ({"schedule.type": "cosine"}, {"schedule.cooldown_fraction": "0.1"}),
}


def errors(law: str, fit_on: tuple, seed: int) -> tuple[bool, list[float], list[float]]:
    runs, curves = truth.tables(truth.trials(law, seed=seed))
    fit = fit_schedule_law(runs, curves, fit_on=fit_on)
    group = fit.groups[0]
    finals, curve_errors = [], []
    for run, test in zip(group.held_out, group.backtests[fit.law], strict=True):
        exact = truth.true_curve(law, run.schedule, run.steps)
        finals.append(abs(test.predicted / exact[-1] - 1))
        curve_errors.append(float(np.mean(np.abs(np.array(test.curve) / exact - 1))))
    return fit.law == law, finals, curve_errors


def main(seeds: int) -> None:
    print("| truth | fitted on | chose the truth | final error mean | worst | curve error mean |")
    print("|---|---|---|---|---|---|")
    for law in truth.TRUTH:
        for name, fit_on in FIT_ON.items():
            start = time.process_time()
            found = [errors(law, fit_on, seed) for seed in range(seeds)]
            right = sum(f[0] for f in found)
            finals = np.concatenate([f[1] for f in found])
            curves = np.concatenate([f[2] for f in found])
            print(
                f"| {law} | {name} | {right}/{seeds} | {finals.mean():.2%} | {finals.max():.2%} "
                f"| {curves.mean():.2%} |",
                flush=True,
            )
            print(f"  ({time.process_time() - start:.0f} s CPU)", file=sys.stderr)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
