"""Weight averaging (SWA, EMA): evaluated beside the trained weights, exact on resume."""

from __future__ import annotations

import shutil

import pytest
import torch

from scalesweep.averaging import WeightAverage
from scalesweep.callbacks import Callback
from scalesweep.config import AveragingConfig
from scalesweep.experiment import parse_experiment
from scalesweep.train import train

PULSE = {
    "model": {"width": 32, "depth": 1, "head_dim": 16, "seq_len": 32},
    "optim": {"lr": 0.01},
    "schedule": {"type": "constant"},
    "train": {"steps": 40, "batch_size": 4, "eval_every": 20, "eval_batches": 1},
}


def config(**sections):
    raw = {key: {**PULSE.get(key, {}), **sections.get(key, {})} for key in {*PULSE, *sections}}
    return parse_experiment(raw).resolve()


def weights_at(values: list[float]) -> list[torch.nn.Linear]:
    models = []
    for value in values:
        model = torch.nn.Linear(2, 1, bias=False)
        torch.nn.init.constant_(model.weight, value)
        models.append(model)
    return models


def test_swa_is_the_mean_of_the_snapshots_in_the_window():
    # Rule: with every=1, window=3, after weights 1..5 the average is mean(3, 4, 5) = 4.
    average = WeightAverage(AveragingConfig(kind="swa", every=1, window=3))
    for step, model in enumerate(weights_at([1, 2, 3, 4, 5]), start=1):
        average.update(model, step)
    shadow = average.model(model)
    assert torch.allclose(shadow.weight, torch.full((1, 2), 4.0))
    assert torch.allclose(model.weight, torch.full((1, 2), 5.0))  # the trained model untouched


def test_swa_takes_snapshots_every_k_steps_only():
    # Rule: every=2 takes steps 2 and 4 of 1..5: mean(2, 4) = 3.
    average = WeightAverage(AveragingConfig(kind="swa", every=2, window=10))
    for step, model in enumerate(weights_at([1, 2, 3, 4, 5]), start=1):
        average.update(model, step)
    assert torch.allclose(average.model(model).weight, torch.full((1, 2), 3.0))


def test_ema_follows_its_recursion():
    # Rule: decay 1 − every/window = 0.5: 1, then 0.5·1 + 0.5·3 = 2, then 0.5·2 + 0.5·6 = 4.
    average = WeightAverage(AveragingConfig(kind="ema", every=1, window=2))
    for step, model in enumerate(weights_at([1, 3, 6]), start=1):
        average.update(model, step)
    assert torch.allclose(average.model(model).weight, torch.full((1, 2), 4.0))


def test_averaging_config_caps_the_snapshots():
    # Rule: SWA keeps window/every copies of the weights: more than 32 is refused, naming both.
    with pytest.raises(ValueError, match=r"averaging\.window // averaging\.every"):
        AveragingConfig(every=1, window=1000)


def test_averaging_logs_at_each_evaluation_and_leaves_training_alone():
    # Rule: with averaging, each evaluation also logs val/loss_avg and the summary carries
    # final_val_loss_avg; the trained run is exactly the run without averaging. (That the
    # number is the averaged weights' loss: the next test.)
    from tests.test_train import Recorder

    plain = train(config())
    recorder = Recorder()
    averaged = train(config(averaging={"kind": "swa", "every": 5, "window": 20}),
                     callbacks=[recorder])  # fmt: skip
    assert averaged.final_val_loss == plain.final_val_loss
    assert averaged.final_val_loss_avg is not None
    steps = [step for step, metrics in recorder.logs if "val/loss_avg" in metrics]
    assert steps == [20, 40]


class KeepCheckpoints(Callback):
    """Copies the checkpoint reported at each of `steps` to `folder`/<step>."""

    def __init__(self, steps, folder):
        self.steps, self.folder = set(steps), folder

    def on_report(self, step, metrics, checkpoint):
        if step in self.steps and checkpoint is not None:
            shutil.copytree(checkpoint, self.folder / str(step))


def test_the_logged_average_is_the_loss_of_the_mean_of_the_snapshots(tmp_path):
    # Rule: final_val_loss_avg is the validation loss of the SWA weights: with every = 5 and
    # window = 20 over 40 steps, the mean of the weights after steps 25, 30, 35 and 40. The
    # weights are read back from checkpoints of the same run, averaged here, and evaluated on
    # the same validation windows: equal to float precision (rel 1e-6). Before, the test only
    # checked that the averaged loss differed from the trained one.
    from scalesweep import checkpoint
    from scalesweep.engine import Engine

    cfg = config(averaging={"kind": "swa", "every": 5, "window": 20},
                 train={"checkpoint_every": 5})  # fmt: skip
    keep = KeepCheckpoints((25, 30, 35, 40), tmp_path / "kept")
    summary = train(cfg, checkpoint_dir=tmp_path / "ckpt", callbacks=[keep])
    states = [
        checkpoint.load(tmp_path / "kept" / str(step), torch.device("cpu"))["model"]
        for step in (25, 30, 35, 40)
    ]
    mean = {k: sum(s[k].double() for s in states) / 4 for k in states[0]}
    engine = Engine(cfg)
    engine.model.load_state_dict({k: v.to(states[0][k].dtype) for k, v in mean.items()})
    assert summary.final_val_loss_avg == pytest.approx(engine.evaluate(), rel=1e-6)
    engine.model.load_state_dict(states[-1])  # and the trained weights give the trained loss
    assert summary.final_val_loss == pytest.approx(engine.evaluate(), rel=1e-6)
    assert abs(summary.final_val_loss_avg - summary.final_val_loss) > 1e-4


def test_resume_restores_the_average(tmp_path):
    # Rule: the average is part of the checkpoint: resumed at step 20, the run ends with the
    # same final_val_loss_avg as the uninterrupted one.
    section = {"averaging": {"kind": "swa", "every": 5, "window": 30},
               "train": {"checkpoint_every": 20}}  # fmt: skip
    straight = train(config(**section), checkpoint_dir=tmp_path / "a")
    train(config(**{**section, "train": {"steps": 20, "checkpoint_every": 20}}),
          checkpoint_dir=tmp_path / "b")  # fmt: skip
    resumed = train(config(**section), resume_from=tmp_path / "b" / "latest")
    assert resumed.final_val_loss_avg == pytest.approx(straight.final_val_loss_avg, rel=1e-6)
