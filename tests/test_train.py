"""The training loop on the built-in corpus: pulse, divergence, accumulation, checkpoint-resume."""

import math
import shutil

import pytest
import torch

from scalesweep.callbacks import Callback
from scalesweep.experiment import parse_experiment
from scalesweep.train import train

PULSE = {
    "model": {"width": 32, "depth": 2, "head_dim": 16, "seq_len": 32},
    "optim": {"lr": 0.01, "weight_decay": 0.1},
    "schedule": {"type": "cosine", "warmup": 0.1},
    "train": {"steps": 60, "batch_size": 8, "eval_every": 30, "eval_batches": 2, "log_every": 10},
}


def config(**sections):
    raw = {key: {**PULSE.get(key, {}), **sections.get(key, {})} for key in {*PULSE, *sections}}
    return parse_experiment(raw).resolve()


class Recorder(Callback):
    """Keeps every log and report; copies the checkpoint reported at `keep_step`."""

    def __init__(self, keep_step=None, keep_to=None):
        self.logs, self.reports = [], []
        self.keep_step, self.keep_to = keep_step, keep_to

    def on_log(self, step, metrics):
        self.logs.append((step, metrics))

    def on_report(self, step, metrics, checkpoint):
        self.reports.append((step, metrics, checkpoint))
        if step == self.keep_step and checkpoint is not None:
            shutil.copytree(checkpoint, self.keep_to)

    def losses(self):
        return {step: m["train/loss"] for step, m in self.logs if "train/loss" in m}


def test_pulse_loss_falls_and_metrics_use_design_names():
    # Rule: a 2-layer run trains (val loss clearly below ℓ0) and logs every DESIGN.md metric name.
    recorder = Recorder()
    summary = train(config(), callbacks=[recorder])
    assert summary.status == "completed"
    assert summary.final_val_loss < summary.init_loss - 0.5
    assert summary.init_loss == pytest.approx(math.log(256) + 0.39, abs=0.3)
    names = set().union(*(m.keys() for _, m in recorder.logs))
    assert {
        "train/loss",
        "val/loss",
        "train/lr",
        "train/tokens",
        "train/flops",
        "train/grad_norm",
        "train/param_norm",
        "train/attn_logit_max",
        "train/output_logz",
        "perf/tokens_per_s",
    } <= names
    assert summary.tokens == 60 * 8 * 32
    # the run-level diagnostics the MLflow trials view shows: the largest attention logit
    # logged and the last log Z
    logits = [m["train/attn_logit_max"] for _, m in recorder.logs if "train/attn_logit_max" in m]
    logz = [m["train/output_logz"] for _, m in recorder.logs if "train/output_logz" in m]
    assert summary.max_attn_logit == max(logits) and summary.final_output_logz == logz[-1]
    assert summary.flops == pytest.approx(6 * summary.params * summary.tokens)
    # reports at step 0 (giving ℓ0) and at each evaluation
    assert [step for step, _, _ in recorder.reports] == [0, 30, 60]


def test_absurd_lr_diverges_and_returns_normally():
    # Rule: a run that blows up stops early with status diverged; train() does not raise.
    summary = train(config(optim={"lr": 50.0}, schedule={"warmup": 0.0}, train={"log_every": 2}))
    assert summary.status == "diverged"
    assert summary.steps < 60
    assert summary.final_val_loss is None
    assert summary.reason and summary.diverged_step == summary.steps


def test_gradient_accumulation_matches_one_batch_of_the_same_windows():
    # Rule: with micro-batches, the step's gradient is the mean over all of the step's windows;
    # one micro-batch of 8 and two of 4 see different windows, so compare the loss level only.
    whole = train(config(train={"steps": 30}))
    accumulated = train(config(train={"steps": 30, "micro_batch_size": 4}))
    assert accumulated.status == "completed"
    assert accumulated.tokens == whole.tokens
    assert accumulated.final_val_loss == pytest.approx(whole.final_val_loss, abs=0.15)


def test_resume_gives_the_same_next_step_loss(tmp_path):
    # Rule: resuming from the step-20 checkpoint of a 40-step run logs exactly the losses of the
    # uninterrupted run from step 21 on (model, optimizer, step and RNG are restored; batches
    # depend only on (seed, step, index)).
    steps = {"steps": 40, "log_every": 1, "eval_every": 20, "checkpoint_every": 20}
    straight = Recorder(keep_step=20, keep_to=tmp_path / "step20")
    train(config(train=steps), checkpoint_dir=tmp_path / "ckpt", callbacks=[straight])
    resumed = Recorder()
    summary = train(config(train=steps), resume_from=tmp_path / "step20", callbacks=[resumed])
    expected = {s: v for s, v in straight.losses().items() if s > 20}
    assert resumed.losses() == expected
    assert summary.steps == 40 and summary.init_loss == straight.reports[0][1]["init_loss"]


# Per rank: one micro-batch of 4 windows a step, every step logged.
DDP_STEPS = {"steps": 6, "micro_batch_size": 4, "log_every": 1, "eval_every": 6}


def _ddp_rank(rank, world_size, port, out_dir, train_overrides=None):
    """One rank of a CPU (gloo) DDP run: rank r trains on micro-batch index r of each step."""
    import json
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        recorder = Recorder()
        summary = train(
            config(train={**DDP_STEPS, **(train_overrides or {})}), callbacks=[recorder]
        )
        noise = [
            m["train/grad_noise_scale"] for _, m in recorder.logs if "train/grad_noise_scale" in m
        ]
        record = {"losses": recorder.losses(), "logs": len(recorder.logs), "noise": noise,
                  **summary.to_dict()}  # fmt: skip
        (out_dir / f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def _spawn_two_ranks(tmp_path, train_overrides=None):
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_rank, args=(2, port, tmp_path, train_overrides), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def _both_micro_batches_noise(monkeypatch) -> None:
    """Make a one-process run measure what 2 DDP ranks measure: the mean of both micro-batches'
    squared gradient norms (not the first's alone) against the step's. With 2 micro-batches the
    accumulated gradient is G = (g0 + g1)/2, so g1 = 2G − g0, from g0 (the gradient after the
    first backward, × 2) and G (before clipping)."""
    from scalesweep.engine import Engine
    from scalesweep.noise_meter import NoiseMeter

    saved: dict[str, list] = {}
    first, clip, record = NoiseMeter.after_first_backward, Engine.clip, NoiseMeter.record

    def grads(model, scale=1.0):
        return [p.grad.detach().double() * scale for p in model.parameters() if p.grad is not None]

    def after_first_backward(self, model, accumulation):
        first(self, model, accumulation)
        if self.measuring:
            saved["g0"] = grads(model, accumulation)

    def clip_saving(self):
        if self.noise is not None and self.noise.measuring:
            saved["G"] = grads(self.model)
        return clip(self)

    def record_both(self, grad_norm):
        if self.measuring and "g0" in saved:
            g0, big = saved.pop("g0"), saved.pop("G")
            g1 = [2 * b - a for a, b in zip(g0, big, strict=True)]
            norms = [sum(float(t.pow(2).sum()) for t in g) for g in (g0, g1)]
            self.small_sq = torch.tensor(sum(norms) / 2)
        return record(self, grad_norm)

    monkeypatch.setattr(NoiseMeter, "after_first_backward", after_first_backward)
    monkeypatch.setattr(Engine, "clip", clip_saving)
    monkeypatch.setattr(NoiseMeter, "record", record_both)


def test_two_ddp_ranks_match_one_process_accumulating_their_micro_batches(tmp_path, monkeypatch):
    # Rule: 2 ranks × 1 micro-batch of 4 see the same windows as 1 process × 2 micro-batches of
    # 4 (index = micro_step · world_size + rank), so their losses agree to float precision; only
    # rank 0 calls on_log. The DDP noise scale is the ranks' local gradients (read by the
    # communication hook) against the all-reduced one: it equals, at every log step, the
    # estimate one process computes from the same two micro-batch gradients and their mean
    # (`_both_micro_batches_noise`), to 1e-4 (float32 gradients; the estimate differences
    # norms of similar size). Before, the test only checked that it was positive and finite.
    ranks = _spawn_two_ranks(tmp_path)
    single = Recorder()
    _both_micro_batches_noise(monkeypatch)
    summary = train(config(train=DDP_STEPS), callbacks=[single])
    expected = {str(step): loss for step, loss in single.losses().items()}
    assert ranks[0]["losses"] == pytest.approx(expected, rel=1e-5)
    assert ranks[0]["final_val_loss"] == pytest.approx(summary.final_val_loss, rel=1e-5)
    assert ranks[0]["tokens"] == summary.tokens and ranks[1]["logs"] == 0
    reference = [
        m["train/grad_noise_scale"] for _, m in single.logs if "train/grad_noise_scale" in m
    ]
    assert len(reference) >= 3 and all(v > 0 and math.isfinite(v) for v in reference)
    assert ranks[0]["noise"] == pytest.approx(reference, rel=1e-4)


@pytest.mark.timeout(120)
def test_ddp_evaluation_with_fewer_windows_than_ranks_does_not_hang(tmp_path):
    # Rule: one validation window for two ranks: rank 1 evaluates nothing, yet the run ends
    # (evaluation never goes through DDP's forward, whose buffer broadcast rank 1 would skip;
    # this hung before) with the validation loss of one process on that window.
    one_window = {"eval_batches": 1, "eval_batch_size": 1}
    ranks = _spawn_two_ranks(tmp_path, one_window)
    single = train(config(train={**DDP_STEPS, **one_window}))
    assert ranks[0]["final_val_loss"] == pytest.approx(single.final_val_loss, rel=1e-5)
    assert ranks[1]["final_val_loss"] == ranks[0]["final_val_loss"]


def test_validation_tokens_do_not_depend_on_micro_batch_or_seed():
    # Rule: every run of a sweep is evaluated on the same tokens. Before, the windows were
    # eval_batches × micro windows seeded by train.seed: micro 4 and 8 evaluated 8 vs 16
    # windows, and two seeds shared almost none. Same model, other micro-batch: same ℓ0.
    from scalesweep.train import Trainer

    base = Trainer(config()).engine.validation.mine
    for train_section in ({"micro_batch_size": 4}, {"seed": 7}, {"batch_size": 16}):
        assert (Trainer(config(train=train_section)).engine.validation.mine == base).all()
    assert len(base) == 2 * 16  # eval_batches × eval_batch_size
    whole = train(config(train={"steps": 1}))
    micro = train(config(train={"steps": 1, "micro_batch_size": 2}))
    assert micro.init_loss == pytest.approx(whole.init_loss, rel=1e-6)


def test_resume_from_the_last_checkpoint_still_evaluates(tmp_path):
    # Rule: a run restarted from the checkpoint written at its last step has nothing left to
    # train, and still completes with its final validation loss (before, it returned
    # `completed` with no final_val_loss, and the searcher was told ℓ0).
    steps = {"steps": 20, "eval_every": 10, "checkpoint_every": 10}
    first = train(config(train=steps), checkpoint_dir=tmp_path)
    again = train(config(train=steps), resume_from=tmp_path / "latest")
    assert again.status == "completed" and again.steps == 20
    assert again.final_val_loss == pytest.approx(first.final_val_loss, rel=1e-6)


def test_noise_scale_needs_two_batch_sizes_and_is_logged_when_there_are():
    # Rule: one process with micro-batches logs train/grad_noise_scale (positive, finite) on
    # log steps once its averages are defined; without accumulation, or switched off, it
    # logs none (there is a single batch size).
    accumulated, plain, off = Recorder(), Recorder(), Recorder()
    train(config(train={"micro_batch_size": 2, "log_every": 5}), callbacks=[accumulated])
    train(config(train={"log_every": 5}), callbacks=[plain])
    train(config(train={"micro_batch_size": 2, "log_every": 5, "grad_noise_scale": False}),
          callbacks=[off])  # fmt: skip
    values = [
        m["train/grad_noise_scale"] for _, m in accumulated.logs if "train/grad_noise_scale" in m
    ]
    assert len(values) >= 6 and all(math.isfinite(v) and v > 0 for v in values)
    for recorder in (plain, off):
        assert not any("train/grad_noise_scale" in m for _, m in recorder.logs)


def test_noise_meter_measures_the_first_micro_batch_gradient():
    # Rule: with k micro-batches, |G_small|² is the squared norm of the first micro-batch's
    # mean-loss gradient (k² times the accumulated gradient after its backward), and |G_big|²
    # the step's; both match gradients computed directly from the same windows.
    import torch

    from scalesweep.train import Trainer

    cfg = config(train={"micro_batch_size": 2, "log_every": 1}, optim={"grad_clip": None})
    engine = Trainer(cfg).engine
    engine.forward_backward(0, diagnose=True)  # a log step: the meter measures
    small = float(engine.noise.small_sq)
    big = sum(float(p.grad.pow(2).sum()) for p in engine.model.parameters())

    fresh = Trainer(cfg).engine
    x, y = fresh.batch(fresh.shards.train, step=0, index=0)
    fresh.model(x, y).loss.backward()
    direct_small = sum(float(p.grad.pow(2).sum()) for p in fresh.model.parameters())
    fresh.model.zero_grad()
    for index in range(fresh.accumulation):
        x, y = fresh.batch(fresh.shards.train, step=0, index=index)
        (fresh.model(x, y).loss / fresh.accumulation).backward()
    direct_big = sum(float(p.grad.pow(2).sum()) for p in fresh.model.parameters())
    assert small == pytest.approx(direct_small, rel=1e-5)
    assert big == pytest.approx(direct_big, rel=1e-5)
    assert engine.noise.small_tokens == 2 * 32 and engine.noise.big_tokens == 8 * 32
    assert torch.is_tensor(engine.noise.small_sq)


def test_last_finite_loss_is_kept_when_the_first_logged_loss_is_already_too_high():
    # Rule: a run that diverges at its first logged step still reports that (finite) loss as
    # last_finite_loss; before, it was only kept while under ℓ0 + margin, so it was missing.
    summary = train(config(optim={"lr": 50.0}, schedule={"warmup": 0.0},
                           train={"log_every": 1, "divergence_margin": 0.0}))  # fmt: skip
    assert summary.status == "diverged" and summary.diverged_step == 1
    assert summary.last_finite_loss is not None and math.isfinite(summary.last_finite_loss)
    assert summary.last_finite_loss > summary.init_loss
