"""Loss curves from known laws, for the known-truth tests of the batch-size and Kaplan fits.

Truth (Kaplan et al. 2020, Table 3 and eq. 5.3): L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S,
and a run at batch B (tokens per step) needs S = S_min·(1 + B_crit(L)/B) steps to reach L
(McCandlish et al. 2018), with B_crit(L) = B*·L^(−1/α_B). A run's loss at step S is the L that
solves that equation (monotone in L: brentq). A run at a worse LR needs `LR_PENALTY` times the
steps; the fits must pick the best LR at each batch size. Evaluation noise: the loss is
multiplied by exp(σ·ε), ε ~ N(0, 1), independently at every logged step.

L(N, D) (Kaplan et al.'s eq. 1.5 with their published constants, `ND_TRUTH`): one run per
point of a 6 × 6 grid of N in [1e6, 1e9] and D in [1e7, 1e10], loss noise σ = 0.5% (`nd_runs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from scalesweep import metrics as m


@dataclass(frozen=True)
class Truth:
    n_c: float = 6.5e13
    alpha_n: float = 0.077
    s_c: float = 2.1e3
    alpha_s: float = 0.76
    b_star: float = 2.0e8
    alpha_b: float = 0.21

    def floor(self, n: float) -> float:
        return (self.n_c / n) ** self.alpha_n

    def b_crit(self, loss: float) -> float:
        return self.b_star * loss ** (-1 / self.alpha_b)

    def steps(self, n: float, batch: float, loss: float) -> float:
        """S(L) at batch B: S_min(L)·(1 + B_crit(L)/B)."""
        s_min = self.s_c * (loss - self.floor(n)) ** (-1 / self.alpha_s)
        return s_min * (1 + self.b_crit(loss) / batch)

    def loss(self, n: float, batch: float, step: float) -> float:
        """The L a run at batch B has reached after `step` steps."""
        floor = self.floor(n)
        return brentq(lambda x: self.steps(n, batch, x) - step, floor + 1e-9, floor + 1e4)


KAPLAN = Truth()
SIZES = (1e6, 1e7, 1e8)
"""Non-embedding parameters of the three model sizes."""
BATCH_SEQUENCES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
SEQ_LEN = 1024
LR_PENALTY = 1.5
LRS = (1e-3, 3e-3)
"""3e-3 is the best LR; 1e-3 needs LR_PENALTY × the steps."""
EVALS = 30
INIT_LOSS = 11.0
"""ℓ0 (≈ ln 50257); the law's loss before the first steps is capped there."""
"""Logged evaluations per run, log-spaced in steps (plus step 0)."""


def trials(
    truth: Truth = KAPLAN,
    *,
    sigma: float = 0.003,
    seed: int = 0,
    reach_above_floor: float = 0.25,
) -> list[dict]:
    """`write_sweep` trials: every size × batch × LR, each trained until the largest batch
    reaches floor(N) + `reach_above_floor` (the same tokens for every batch of a size)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in SIZES:
        target = truth.floor(n) + reach_above_floor
        tokens = truth.steps(n, BATCH_SEQUENCES[-1] * SEQ_LEN, target) * BATCH_SEQUENCES[-1]
        for sequences in BATCH_SEQUENCES:
            batch = sequences * SEQ_LEN
            total = math.ceil(tokens * SEQ_LEN / batch)
            for lr in LRS:
                slow = LR_PENALTY if lr != LRS[-1] else 1.0
                steps = np.unique(np.geomspace(1, total, EVALS).round())
                losses = [min(truth.loss(n, batch, s / slow), INIT_LOSS) for s in steps]
                noisy = np.array(losses) * np.exp(sigma * rng.standard_normal(len(steps)))
                curve = [(0, {m.VAL_LOSS: INIT_LOSS})]
                curve += [
                    (int(s), {m.VAL_LOSS: float(v)}) for s, v in zip(steps, noisy, strict=True)
                ]
                out.append(
                    {
                        "name": f"n{n:.0e}-b{sequences}-lr{lr:g}",
                        "params": {
                            "train.batch_size": sequences,
                            "model.seq_len": SEQ_LEN,
                            "optim.lr": lr,
                            "train.tokens": int(total * batch),
                        },
                        "summary": {
                            m.FINAL_VAL_LOSS: float(noisy[-1]),
                            m.PARAMS_NONEMBED: n,
                            m.PARAMS: 1.2 * n,
                            m.TRAINED_TOKENS: total * batch,
                            m.STEPS: total,
                        },
                        "curve": curve,
                    }
                )
    return out


def frames(trial_list: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, curves) of `trials` as the fitter reads them from MLflow, without MLflow."""
    runs, curves = [], []
    for trial in trial_list:
        run_id = trial["name"]
        runs.append(
            {
                "run_id": run_id,
                "trial_id": run_id,
                m.STATUS: trial.get("status", m.COMPLETED),
                **trial["params"],
                **trial["summary"],
            }
        )
        curves += [{"run_id": run_id, "step": step, **values} for step, values in trial["curve"]]
    return pd.DataFrame(runs), pd.DataFrame(curves)


ND_TRUTH = {"N_c": 6.4e13, "alpha_N": 0.076, "D_c": 1.8e13, "alpha_D": 0.095}


def nd_loss(n: Any, d: Any) -> Any:
    t = ND_TRUTH
    return ((t["N_c"] / n) ** (t["alpha_N"] / t["alpha_D"]) + t["D_c"] / d) ** t["alpha_D"]


def nd_runs(seed: int = 0, sigma: float = 0.005) -> pd.DataFrame:
    """The runs table of L(N, D)'s known truth (see the module docstring)."""
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e9, 6), np.geomspace(1e7, 1e10, 6)))
    noise = np.exp(sigma * np.random.default_rng(seed).standard_normal(n.size))
    return pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(n.size)],
            m.STATUS: m.COMPLETED,
            m.PARAMS_NONEMBED: n,
            m.TRAINED_TOKENS: d,
            m.FINAL_VAL_LOSS: nd_loss(n, d) * noise,
        }
    )


@pytest.fixture(scope="session")
def truth_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(tracking URI, sweep name): `trials()` (seed 0, σ = 0.3%) written to a SQLite MLflow
    store exactly as a sweep writes them; shared by the critical-batch and kaplan-ns tests."""
    from tests.sweep_runs import write_sweep

    folder = tmp_path_factory.mktemp("truth")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # MLflow puts a SQLite store's artifacts under ./mlruns
        write_sweep(uri, "batch", trials(), spool_dir=folder / "spool")
    return uri, "batch"
