"""End-to-end sweeps on a real local Ray (one shared instance), tiny trials, MLflow on SQLite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from scalesweep.cli import main

pytestmark = pytest.mark.ray

TINY = {
    "model": {"width": 16, "depth": 1, "head_dim": 16, "seq_len": 32},
    "optim": {"lr": 0.01},
    "schedule": {"type": "constant"},
    "train": {"steps": 20, "batch_size": 4, "eval_every": 10, "eval_batches": 1, "log_every": 5},
    "resources": {"cpus_per_worker": 1, "max_concurrent_trials": 2},
}


def write_sweep(tmp_path: Path, name: str, **sections) -> tuple[Path, str]:
    raw = {key: {**TINY.get(key, {}), **sections.get(key, {})} for key in {*TINY, *sections}}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw.update(
        name=name, storage_path=str(tmp_path / "runs"), tracking={"uri": uri, "log_every_s": 0.5}
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, uri


def runs_of(uri: str, name: str, role: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`scalesweep.role` = '{role}'"
    )


def test_grid_sweep_gives_one_parent_four_children_and_a_four_row_export(
    ray_address, tmp_path, capsys
):
    # Rule: a 2×2 grid is one parent run and four child runs with dotted params, summary
    # metrics and per-step metrics; export writes one row per trial.
    path, uri = write_sweep(
        tmp_path,
        "grid2x2",
        model={"width": {"grid": [16, 32]}},
        optim={"lr": {"grid": [0.01, 0.003]}},
    )
    assert main(["sweep", str(path)]) == 0
    assert "best learning rate per width" in capsys.readouterr().out
    parents = runs_of(uri, "grid2x2", "sweep")
    children = runs_of(uri, "grid2x2", "trial")
    assert len(parents) == 1 and len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    combos = {(c.data.params["model.width"], c.data.params["optim.lr"]) for c in children}
    assert combos == {("16", "0.01"), ("16", "0.003"), ("32", "0.01"), ("32", "0.003")}
    for child in children:
        assert child.data.tags["status"] == "completed"
        for key in ("init_loss", "final_val_loss", "params", "tokens", "flops"):
            assert key in child.data.metrics
        history = MlflowClient(uri).get_metric_history(child.info.run_id, "train/loss")
        assert [m.step for m in history] == [5, 10, 15, 20]
        # the run-level diagnostics of the MLflow trials view, from the per-step curves
        client, run_id = MlflowClient(uri), child.info.run_id
        logits = client.get_metric_history(run_id, "train/attn_logit_max")
        logz = sorted(client.get_metric_history(run_id, "train/output_logz"), key=lambda m: m.step)
        assert child.data.metrics["max_attn_logit"] == max(m.value for m in logits)
        assert child.data.metrics["final_output_logz"] == logz[-1].value
    out = tmp_path / "runs.csv"
    assert main(["export", "grid2x2", "--tracking-uri", uri, "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert len(table) == 4 and {"model.width", "optim.lr", "final_val_loss"} <= set(table.columns)


def test_absurd_lr_trial_is_recorded_diverged_and_the_sweep_goes_on(ray_address, tmp_path):
    # Rule: a trial at an absurd LR ends `diverged` (with ℓ0 and its last finite loss) while the
    # others complete; the sweep itself succeeds.
    path, uri = write_sweep(
        tmp_path, "diverge", optim={"lr": {"grid": [0.01, 1000.0]}}, train={"log_every": 2}
    )
    assert main(["sweep", str(path)]) == 0
    status = {c.data.params["optim.lr"]: c.data for c in runs_of(uri, "diverge", "trial")}
    assert status["0.01"].tags["status"] == "completed"
    assert status["1000.0"].tags["status"] == "diverged"
    assert "init_loss" in status["1000.0"].metrics
    assert "final_val_loss" not in status["1000.0"].metrics


def test_tpe_sweep_of_three_samples_runs(ray_address, tmp_path):
    # Rule: Optuna TPE (seeded sampler) runs num_samples trials over the sampled LR.
    path, uri = write_sweep(
        tmp_path,
        "tpe",
        optim={"lr": {"loguniform": [1e-3, 1e-1]}},
        search={"algorithm": "tpe", "num_samples": 3, "seed": 1},
    )
    assert main(["sweep", str(path)]) == 0
    children = runs_of(uri, "tpe", "trial")
    assert len(children) == 3
    lrs = {float(c.data.params["optim.lr"]) for c in children}
    assert len(lrs) == 3 and all(1e-3 <= lr <= 1e-1 for lr in lrs)


def test_branched_isoflop_sweep_logs_every_branch_as_a_run_the_fitter_reads(ray_address, tmp_path):
    # Rule: with `branches: {budgets_from: isoflop}`, 3 shapes × 3 budgets run as 3 trunks
    # whose branches are child runs of their own: params branch.of (the trunk), branch.tokens
    # and planned.tokens/planned.flops of their (budget, shape); the runs table marks them, and
    # the fitter groups trunks and branches into 3 budgets of 3 sizes each.
    from scalesweep import tracking
    from scalesweep.fit.runs import group_budgets

    path, uri = write_sweep(
        tmp_path,
        "branched",
        model={"width": 16, "seq_len": 32, "vocab_size": 256},
        schedule={"type": "wsd", "warmup": 0.05, "cooldown_fraction": 0.2},
        train={"steps": None, "eval_every": 50, "log_every": 25, "flop_counting": "6N"},
        budget={
            "flops": [5e9, 7e9, 1e10],
            "shapes": [
                {"width": 16, "depth": 1},
                {"width": 24, "depth": 1, "head_dim": 8},
                {"width": 32, "depth": 1},
            ],
        },
        branches={"budgets_from": "isoflop"},
    )
    assert main(["sweep", str(path)]) == 0
    children = runs_of(uri, "branched", "trial")
    branches = [c for c in children if "branch.of" in c.data.params]
    trunks = [c for c in children if "branch.of" not in c.data.params]
    assert len(trunks) == 3 and len(branches) == 6
    trunk_names = {t.data.tags["scalesweep.trial_id"] for t in trunks}
    for run in children:
        assert run.data.tags["status"] == "completed" and run.info.status == "FINISHED"
    for branch in branches:
        assert branch.data.params["branch.of"] in trunk_names
        assert branch.data.params["planned.tokens"] == branch.data.params["branch.tokens"]
        assert float(branch.data.params["planned.flops"]) in (5e9, 7e9)
    table = tracking.runs_table("branched", uri)
    assert table["branch.of"].notna().sum() == 6
    labels = group_budgets(table["flops"].to_numpy(float))
    assert sorted(np.unique(labels, return_counts=True)[1]) == [3, 3, 3]
