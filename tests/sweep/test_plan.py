"""isoFLOP plans and grid expansion (pure, no Ray)."""

from pathlib import Path

import pytest

from scalesweep.cli import main
from scalesweep.experiment import load_experiment, parse_experiment
from scalesweep.flops import flops_per_token
from scalesweep.sweep.plan import plan, trial_name

REPO = Path(__file__).resolve().parents[2]

ISOFLOP = {
    "name": "iso",
    "model": {"seq_len": 64, "head_dim": 16, "vocab_size": 256},
    "train": {"batch_size": 8, "flop_counting": "chinchilla"},
    "optim": {"lr": 3e-3},
    "budget": {
        "flops": [1e13, 3e13],
        "shapes": [
            {"width": 32, "depth": 2},
            {"width": 64, "depth": 2},
            {"width": 128, "depth": 4},
        ],
        "min_tokens_per_param": 4,
        "max_tokens_per_param": 2000,
    },
}


def test_isoflop_tokens_times_flops_per_token_is_the_budget():
    # Rule: for each (C, shape), tokens × FLOPs-per-token = C within 1% (whole steps round it).
    experiment = parse_experiment(ISOFLOP)
    result = plan(experiment)
    assert result.trials, "every trial was left out"
    for trial in result.trials:
        model = experiment.resolve(trial.cell).model
        assert trial.tokens * flops_per_token(model, "chinchilla") == pytest.approx(
            trial.budget, rel=0.01
        )
        assert trial.flops == pytest.approx(trial.budget, rel=0.01)


def test_isoflop_leaves_out_shapes_outside_the_token_ratio_with_a_note():
    # Rule: width 128 × depth 4 at C=1e13 gets ~2.1 tokens/param (< 4) and width 32 at C=3e13
    # gets ~2450 (> 2000): both are left out and said so; the other four pairs are kept.
    result = plan(parse_experiment(ISOFLOP))
    kept = {(t.budget, t.cell["model.width"]) for t in result.trials}
    assert kept == {(1e13, 32), (1e13, 64), (3e13, 64), (3e13, 128)}
    assert any("width=128" in note and "C=1e+13" in note for note in result.notes)
    assert any("width=32" in note and "C=3e+13" in note for note in result.notes)


def test_grid_cells_are_the_cartesian_product_with_stable_names():
    # Rule: 2 widths × 3 LRs = 6 cells; names are deterministic and distinct.
    experiment = parse_experiment(
        {
            "model": {"width": {"grid": [32, 64]}, "head_dim": 16},
            "optim": {"lr": {"logspace": [1e-3, 1e-1, 3]}},
            "train": {"steps": 10},
        }
    )
    result = plan(experiment)
    assert len(result.trials) == 6 and result.n_trials == 6
    names = [t.name for t in result.trials]
    assert len(set(names)) == 6
    assert names == [t.name for t in plan(experiment).trials]
    assert trial_name({"model.width": 32, "optim.lr": 0.01}).startswith("w32-lr0.01-")


def test_grid_repeats_differ_by_seed():
    # Rule: num_samples > 1 with the grid algorithm repeats the grid with successive seeds.
    experiment = parse_experiment(
        {
            "model": {"width": 32, "head_dim": 16},
            "optim": {"lr": {"grid": [0.1, 0.01]}},
            "search": {"num_samples": 3},
            "train": {"steps": 10, "seed": 5},
        }
    )
    seeds = sorted({t.cell["train.seed"] for t in plan(experiment).trials})
    assert seeds == [5, 6, 7] and len(plan(experiment).trials) == 6


def test_plan_command_prints_the_table(capsys, tmp_path):
    path = tmp_path / "iso.yaml"
    import yaml

    path.write_text(yaml.safe_dump(ISOFLOP))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "total:" in out and "FLOPs" in out and "left out" in out
    assert load_experiment(path).config.budget is not None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("optim:\n  lrr: 0.1\n", "optim.lrr"),
        ("search:\n  algorithm: annealing\n", "search.algorithm"),
        ("resources:\n  gpus_per_worker: -1\n", "resources.gpus_per_worker"),
    ],
)
def test_bad_sweep_file_exits_2_naming_the_key_before_ray(tmp_path, capsys, text, needle):
    # Rule: a bad key is an error with exit code 2 before Ray starts.
    import ray

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    was_running = ray.is_initialized()
    assert main(["sweep", str(path)]) == 2
    assert needle in capsys.readouterr().err
    assert ray.is_initialized() == was_running


@pytest.mark.parametrize(
    "path", sorted((REPO / "search_spaces").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_sweep_plans_and_says_what_it_costs(path):
    # Rule: a ready sweep validates and expands without error, and its header comment says
    # what it answers and what it costs.
    header = path.read_text().split("\nname:")[0]
    assert header.startswith("# ") and "Cost" in header
    result = plan(load_experiment(path))
    assert result.n_trials >= 2 and result.total_flops > 0
