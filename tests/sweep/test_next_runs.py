"""`scalesweep plan FILE --next K --target-flops C`: the next runs of an isoFLOP ladder, from
runs written to MLflow as a sweep writes them; and its refusals of bad input (exit 2)."""

import math

import pytest
import yaml

from scalesweep import metrics as m
from scalesweep.cli import main
from scalesweep.experiment import load_experiment
from scalesweep.flops import count_params
from scalesweep.sweep.plan import plan
from tests.sweep_runs import write_sweep

BUDGETS = [1e13, 3e13, 1e14, 3e14]
LADDER = {
    "name": "iso-next",
    "model": {"seq_len": 64, "head_dim": 16, "vocab_size": 256},
    "train": {"batch_size": 8, "flop_counting": "kaplan", "device": "cpu"},
    "optim": {"lr": 3e-3},
    "budget": {
        "flops": BUDGETS,
        "shapes": [{"width": w, "depth": d} for w, d in
                   [(32, 2), (48, 2), (64, 2), (64, 4), (96, 4), (128, 4), (160, 6), (192, 6)]],
        "min_tokens_per_param": 2,
        "max_tokens_per_param": 2000,
    },
}  # fmt: skip


def law(n: float, d: float) -> float:
    return 1.9 + 60.0 * n**-0.34 + 900.0 * d**-0.37


def _file(tmp_path, uri, **changes):
    tree = {**LADDER, "tracking": {"uri": uri}, **changes}
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _written_runs(path):
    """3 sizes at each of the ladder's 3 smallest budgets, as a finished sweep's child runs
    (few: writing MLflow runs is this test's cost)."""
    experiment = load_experiment(path)
    trials = []
    chosen = [
        t for c in BUDGETS[:3] for t in [t for t in plan(experiment).trials if t.budget == c][1:4]
    ]
    for index, t in enumerate(chosen):
        counts = count_params(t.config.model, 256)
        loss = law(counts.nonembed, t.tokens) * math.exp(0.005 * math.sin(7 * index))
        summary = {m.FINAL_VAL_LOSS: loss, m.PARAMS: counts.total, m.TRAINED_TOKENS: t.tokens}
        summary |= {m.PARAMS_NONEMBED: counts.nonembed, m.TRAINED_FLOPS: t.flops}
        params = {**t.cell, "planned.flops": t.budget, "train.flop_counting": "kaplan"}
        trials.append({"name": t.name, "params": params, "summary": summary})
    return trials


def test_plan_next_proposes_runs_not_yet_done_from_mlflow(tmp_path, capsys):
    # Rule: the proposals come from the file's (shape, budget) pairs that have not run, each
    # with its FLOPs and the interval expected after it, under the interval the runs give now.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = _file(tmp_path, uri)
    trials = _written_runs(path)
    write_sweep(uri, "iso-next", trials, spool_dir=tmp_path / "spool")
    code = main(["plan", str(path), "--next", "3", "--target-flops", "3e16"])
    out = capsys.readouterr().out
    assert code == 0
    assert "interval now" in out and "first round" not in out
    names = [line.strip() for line in out.splitlines() if line.startswith("  w")]
    assert len(names) == 3
    assert not set(names) & {t["name"] for t in trials}


def test_plan_next_without_runs_is_a_stated_first_round(tmp_path, capsys):
    path = _file(tmp_path, f"sqlite:///{tmp_path / 'none.db'}")
    assert main(["plan", str(path), "--next", "2", "--target-flops", "3e16"]) == 0
    out = capsys.readouterr().out
    assert "first round" in out and "space-filling" in out


@pytest.mark.parametrize(
    ("changes", "args", "message"),
    [
        # no model-size key: the file has no budget.shapes to propose from
        ({"budget": None}, ["--next", "2", "--target-flops", "3e16"], "no model-size key"),
        # a forecast below the ladder's largest budget is no forecast
        ({}, ["--next", "2", "--target-flops", "1e14"], "--target-flops: got 1e+14"),
        # more runs asked for than the ladder has
        ({}, ["--next", "500", "--target-flops", "3e16"], "--next: got K=500"),
        ({}, ["--next", "2"], "pass --target-flops"),
    ],
)
def test_bad_input_is_refused_with_exit_2(tmp_path, capsys, changes, args, message):
    path = _file(tmp_path, f"sqlite:///{tmp_path / 'none.db'}", **changes)
    assert main(["plan", str(path), *args]) == 2
    assert message in capsys.readouterr().err
