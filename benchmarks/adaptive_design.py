"""Adaptive rounds (scalesweep.fit.design) against the static isoFLOP grid: training FLOPs spent
to reach the static grid's interval width of N_opt(C_target), C_target = 100× the largest
ladder budget, and whether the truth lies in the final interval. No training: runs are answered
by a known law with noise (table 1), or by recorded runs (table 2, a proposal at a budget is
the recorded run it names: the candidates are the recorded runs).

    python benchmarks/adaptive_design.py [--reps 10] [--configs 4]

Table 1: search_spaces/isoflop.yaml's 11 shapes (N as its chinchilla convention pairs them,
C = 6ND) at its 4 budgets within 2–500 tokens/param (27 runs, the static grid), truths with
α, β ~ U(0.28, 0.45), E ~ U(1.6, 2.2), N_opt(5.5e16) ~ the grid's middle size × e^U(−0.7, 0.7),
log-normal noise σ ∈ {0.5 %, 1 %, 2 %}. Adaptive: the 9-run first round, then K = 3 per round
until the width is at most the static grid's (or the ladder is spent).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scalesweep.experiment import load_experiment
from scalesweep.fit.design.candidates import Candidate, Shape, candidates
from scalesweep.fit.design.recommend import forecast, recommend
from scalesweep.fit.laws.parametric.allocation import SIX_ND, optimal_arrays
from scalesweep.fit.runs import group_budgets
from scalesweep.sweep.design import design_space

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"


def _points(done: Sequence[tuple[Candidate, float]]) -> pd.DataFrame:
    rows = [(c.params, c.tokens, loss, c.flops) for c, loss in done]
    return pd.DataFrame(rows, columns=["params", "tokens", "loss", "flops"])


def adaptive(
    pool: list[Candidate], answer: Callable[[Candidate], float], target: float, width: float, k: int
) -> tuple[float, float, object, int]:
    """(FLOPs spent, width reached, final interval, rounds) when the width reaches `width`."""
    done: list[tuple[Candidate, float]] = []
    rounds, now = 0, None
    while True:
        left = [c for c in pool if c not in {d for d, _ in done}]
        if not left:
            break
        rec = recommend(_points(done), left, target_flops=target, k=min(k, len(left)))
        if rec.now is not None and rec.now.width <= width:
            now = rec.now
            break
        done += [(r.candidate, answer(r.candidate)) for r in rec.proposals]
        rounds += 1
    now = now or forecast(_points(done), target_flops=target)
    return sum(c.flops for c, _ in done), now.width, now, rounds


def static(pool: list[Candidate], answer: Callable[[Candidate], float], target: float):
    done = [(c, answer(c)) for c in pool]
    return sum(c.flops for c in pool), forecast(_points(done), target_flops=target)


def ladder() -> tuple[list[Shape], list[float]]:
    space = design_space(load_experiment(ROOT / "search_spaces" / "isoflop.yaml"), 3e19)
    return [Shape(s.label, s.params, 6.0 * s.params) for s in space.shapes], space.budgets


def truth_table(reps: int) -> pd.DataFrame:
    shapes, budgets = ladder()
    pool = candidates(shapes, budgets, min_tokens_per_param=2, max_tokens_per_param=500)
    target = 100 * max(budgets)
    middle = float(np.exp(np.mean(np.log([s.params for s in shapes]))))
    rows = []
    for sigma in (0.005, 0.01, 0.02):
        for rep in range(reps):
            rng = np.random.default_rng([rep, int(sigma * 1000)])
            alpha, beta = rng.uniform(0.28, 0.45, 2)
            e, a = math.log(rng.uniform(1.6, 2.2)), math.log(400.0)
            c_mid = math.sqrt(budgets[0] * budgets[-1])
            g = middle * math.exp(rng.uniform(-0.7, 0.7)) / (c_mid / 6) ** (beta / (alpha + beta))
            b = math.log(alpha * math.exp(a) / (beta * g ** (alpha + beta)))
            theta = np.array([e, a, b, alpha, beta])
            noise = {c.key: math.exp(sigma * rng.standard_normal()) for c in pool}

            def answer(c: Candidate, theta=theta, noise=noise) -> float:
                law = math.exp(theta[0]) + math.exp(theta[1]) * c.params ** -theta[3]
                return (law + math.exp(theta[2]) * c.tokens ** -theta[4]) * noise[c.key]

            true = optimal_arrays(theta, target, SIX_ND)["n_opt"][0]
            grid_flops, grid = static(pool, answer, target)
            spent, width, final, rounds = adaptive(pool, answer, target, grid.width, 3)
            rows.append({
                "sigma": sigma, "ratio": spent / grid_flops, "reached": width <= grid.width,
                "grid_width": grid.width, "rounds": rounds,
                "grid_covers": grid.low <= true <= grid.high,
                "adaptive_covers": final.low <= true <= final.high,
            })  # fmt: skip
    return pd.DataFrame(rows)


def recorded_pool(frame: pd.DataFrame) -> tuple[list[Candidate], dict]:
    budgets = group_budgets(frame["flops"].to_numpy(float))
    pool, losses = [], {}
    for i, (row, c) in enumerate(zip(frame.itertuples(index=False), budgets, strict=True)):
        shape = Shape(f"run{i}", float(row.params), float(row.flops) / float(row.tokens))
        candidate = Candidate(shape, float(c), float(row.tokens))
        pool.append(candidate)
        losses[candidate.key] = float(row.loss)
    return pool, losses


def replay_table(n_configs: int) -> pd.DataFrame:
    sets = []
    porian = pd.read_csv(DATA / "porian2024_isoflop_runs.csv")
    for config in sorted(porian["config"].unique())[:n_configs]:
        sets.append((f"Porian {config}", porian[porian["config"] == config]))
    epoch = pd.read_csv(DATA / "chinchilla_fig4_epoch_extracted.csv")
    epoch = epoch.rename(columns={"Model Size": "params", "Training FLOP": "flops"})
    epoch = epoch.nsmallest(len(epoch) - 5, "loss")  # Epoch's refit drops the 5 highest losses
    epoch["tokens"] = epoch["flops"] / (6 * epoch["params"])
    sets.append(("Epoch's Chinchilla points", epoch))
    rows = []
    for name, frame in sets:
        pool, losses = recorded_pool(frame)
        target = 100 * max(c.budget for c in pool)

        def answer(c: Candidate, losses=losses) -> float:
            return losses[c.key]

        grid_flops, grid = static(pool, answer, target)
        spent, width, final, rounds = adaptive(pool, answer, target, grid.width, 5)
        rows.append({
            "set": name, "runs": len(pool), "grid_width": grid.width, "ratio": spent / grid_flops,
            "reached": width <= grid.width, "rounds": rounds,
            "grid N_opt": grid.point, "adaptive N_opt": final.point,
            "grid point in final": final.low <= grid.point <= final.high,
        })  # fmt: skip
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--configs", type=int, default=4)
    args = parser.parse_args()
    start = time.perf_counter()
    truths = truth_table(args.reps)
    summary = truths.groupby("sigma").agg(
        reps=("ratio", "size"),
        median_ratio=("ratio", "median"),
        max_ratio=("ratio", "max"),
        reached=("reached", "mean"),
        rounds=("rounds", "median"),
        grid_covers=("grid_covers", "mean"),
        adaptive_covers=("adaptive_covers", "mean"),
    )
    print("## known truths: adaptive FLOPs / static grid FLOPs at the static grid's width\n")
    print(markdown(summary.reset_index()))
    covered = truths["adaptive_covers"].mean(), truths["grid_covers"].mean()
    print(f"\nall: median ratio {truths['ratio'].median():.3g}, truth covered: adaptive "
          f"{covered[0]:.0%}, static grid {covered[1]:.0%}")  # fmt: skip
    print("\n## recorded runs replayed\n")
    print(markdown(replay_table(args.configs)))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
