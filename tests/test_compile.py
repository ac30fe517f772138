"""The GPU code paths on CPU: `torch.compile` (inductor's C++ backend), bf16 autocast, DDP with
compile. Compiling takes tens of seconds on 2 cores, so one session fixture compiles once and
every test reads its runs. SCALESWEEP_TEST_DEVICE=cuda runs the same checks on a GPU
(benchmarks/gpu_check.sh does)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
from dataclasses import dataclass

import pytest

from scalesweep.callbacks import Callback
from scalesweep.summary import TrainSummary
from scalesweep.train import train
from tests.test_train import config

DEVICE = os.environ.get("SCALESWEEP_TEST_DEVICE", "cpu")

# 50 steps of 2 micro-batches of 4 (so the noise meter has two batch sizes), every step logged
# with its diagnostics (one training graph), validation batches the micro-batch's shape (no
# dynamic-shape recompile), an EMA and a checkpoint half-way.
STEPS = 50
RUN = {
    "train": {
        "steps": STEPS,
        "micro_batch_size": 4,
        "log_every": 1,
        "eval_every": 25,
        "eval_batches": 2,
        "eval_batch_size": 4,
        "checkpoint_every": 25,
        "device": DEVICE,
    },
    "averaging": {"kind": "ema", "every": 5, "window": 25},
}
DIAGNOSTICS = ("train/attn_logit_max", "train/output_logz", "train/grad_noise_scale")

# Compiled against eager: inductor fuses and reorders float32 arithmetic, so the two runs drift
# apart by rounding only. Measured on 2 CPU cores (2026-12-06), over 50 steps: max |Δ| of
# train/loss 1e-6, attn_logit_max 1e-5, output_logz 1e-6; the noise scale within 0.5% (a ratio
# of differences of norms). The bound leaves room for other CPUs' vector widths and for CUDA.
COMPILE_ABS = 2e-3
# bf16 autocast against float32 (bf16 keeps 8 bits of mantissa): measured max |Δ train/loss|
# over the 50 steps on CPU 1.5e-3 (2026-12-06); the bound is 13× that.
BF16_ABS = 0.02


class Recorder(Callback):
    """Every log (metrics as floats) and the dynamo counters after each logged step; copies the
    checkpoint reported at `keep_step`."""

    def __init__(self, keep_step: int | None = None, keep_to: object = None) -> None:
        self.logs: dict[int, dict[str, float]] = {}
        self.graphs: dict[int, tuple[int, int]] = {}
        self.reports: dict[int, dict[str, float]] = {}
        self.keep_step, self.keep_to = keep_step, keep_to

    def on_log(self, step, metrics):
        from torch._dynamo.utils import counters

        # a step's training metrics and its evaluation are two calls: keep both
        self.logs.setdefault(step, {}).update({k: float(v) for k, v in metrics.items()})
        self.graphs[step] = (counters["frames"]["ok"], counters["stats"]["unique_graphs"])

    def on_report(self, step, metrics, checkpoint):
        self.reports[step] = dict(metrics)
        if step == self.keep_step and checkpoint is not None:
            shutil.copytree(checkpoint, self.keep_to)

    def series(self, name: str) -> dict[int, float]:
        return {step: m[name] for step, m in self.logs.items() if name in m}


@dataclass
class Runs:
    eager: Recorder
    compiled: Recorder
    resumed: Recorder
    eager_summary: TrainSummary
    compiled_summary: TrainSummary


def _ddp_rank(rank, port, out_dir):
    """One gloo rank of the compiled run; both ranks' windows are the single process's two
    micro-batches (index = micro_step · world_size + rank)."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        recorder = Recorder()
        ddp_train = {**RUN["train"], "compile": True, "device": "cpu", "checkpoint_every": None}
        summary = train(config(train=ddp_train, averaging=RUN["averaging"]), callbacks=[recorder])
        record = {"losses": recorder.series("train/loss"), "graphs": recorder.graphs,
                  "final_val_loss": summary.final_val_loss}  # fmt: skip
        (out_dir / f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Runs:
    """Eager, compiled (checkpoint at step 25) and compiled resumed from it: the one compile of
    the session (the resume and the DDP ranks find inductor's on-disk cache)."""
    import torch._dynamo

    tmp = tmp_path_factory.mktemp("compile")
    eager = Recorder()
    eager_summary = train(config(**RUN), callbacks=[eager], checkpoint_dir=tmp / "eager")
    compiled_config = config(train={**RUN["train"], "compile": True}, averaging=RUN["averaging"])
    torch._dynamo.reset()
    compiled = Recorder(keep_step=25, keep_to=tmp / "step25")
    compiled_summary = train(compiled_config, callbacks=[compiled], checkpoint_dir=tmp / "c")
    resumed = Recorder()
    train(compiled_config, callbacks=[resumed], resume_from=tmp / "step25")
    return Runs(eager, compiled, resumed, eager_summary, compiled_summary)


pytestmark = pytest.mark.timeout(1200)


def test_compiled_run_matches_eager_with_every_feature_on(runs):
    # Rule: the compiled model computes what the eager one does: per-step training loss,
    # diagnostics, noise scale, validation loss and the averaged weights' loss agree to
    # COMPILE_ABS over 50 steps (rounding only), and every one of them is finite.
    for name in ("train/loss", *DIAGNOSTICS):
        eager, compiled = runs.eager.series(name), runs.compiled.series(name)
        assert len(compiled) >= (STEPS // 2 if name.endswith("noise_scale") else STEPS), name
        assert compiled.keys() == eager.keys(), name
        assert all(math.isfinite(v) for v in compiled.values()), name
        # the noise scale is a ratio of differences of norms: compare it relatively
        tolerance = {"rel": 1e-2} if name.endswith("noise_scale") else {"abs": COMPILE_ABS}
        assert compiled == pytest.approx(eager, **tolerance), name
    for step in (25, 50):
        for name in ("val/loss", "val/loss_avg"):
            got, want = runs.compiled.logs[step][name], runs.eager.logs[step][name]
            assert got == pytest.approx(want, abs=COMPILE_ABS), (step, name)
    want = runs.eager_summary.final_val_loss
    assert runs.compiled_summary.final_val_loss == pytest.approx(want, abs=COMPILE_ABS)


def test_compiled_run_does_not_recompile_after_its_first_steps(runs):
    # Rule: the training graph and the evaluation graph are compiled by the end of step 1 (step
    # 0's evaluation, then step 1); steps 2–50, two more evaluations and the averaged weights'
    # evaluations add no frame and no graph (a guard failing each step would add one per step).
    first, last = runs.compiled.graphs[1], runs.compiled.graphs[STEPS]
    assert first[0] >= 1 and first[1] >= 1
    assert last == first, f"recompiled after step 1: (frames, graphs) {first} -> {last}"


def test_compiled_run_resumes_from_its_checkpoint(runs):
    # Rule: resumed from the step-25 checkpoint, the compiled run logs the uninterrupted compiled
    # run's losses and diagnostics from step 26 on (same graphs, same state: to float rounding).
    for name in ("train/loss", *DIAGNOSTICS):
        expected = {s: v for s, v in runs.compiled.series(name).items() if s > 25}
        assert runs.resumed.series(name) == pytest.approx(expected, rel=1e-5), name
    assert runs.resumed.logs[50]["val/loss_avg"] == pytest.approx(
        runs.compiled.logs[50]["val/loss_avg"], rel=1e-5
    )


@pytest.mark.skipif(DEVICE != "cpu", reason="gloo ranks on CPU; NCCL is gpu_check.sh's")
def test_compiled_ddp_ranks_match_the_compiled_single_process(runs, tmp_path):
    # Rule: 2 compiled gloo ranks × 1 micro-batch of 4 see the single compiled process's 2
    # micro-batches, so rank 0's losses equal its losses to float rounding (DDP's all-reduce
    # sums in another order), and DDP around the compiled model recompiles nothing after step 1.
    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_rank, args=(port, tmp_path), nprocs=2, join=True)
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    expected = {str(s): v for s, v in runs.compiled.series("train/loss").items()}
    assert rank0["losses"] == pytest.approx(expected, abs=1e-4)
    want = runs.compiled_summary.final_val_loss
    assert rank0["final_val_loss"] == pytest.approx(want, abs=1e-4)
    assert rank0["graphs"][str(STEPS)] == rank0["graphs"]["1"]


def test_bf16_autocast_tracks_fp32_with_finite_diagnostics():
    # Rule: `train.precision: bf16` autocasts on CPU too (the forward runs in bf16: its loss
    # differs from fp32's), yet the run tracks the fp32 run's loss to BF16_ABS at every step
    # and its diagnostics stay finite.
    fp32, bf16 = Recorder(), Recorder()
    shared = {**RUN["train"], "checkpoint_every": None}
    for precision, recorder in (("fp32", fp32), ("bf16", bf16)):
        run = config(train={**shared, "precision": precision}, averaging=RUN["averaging"])
        train(run, callbacks=[recorder])
    want, got = fp32.series("train/loss"), bf16.series("train/loss")
    assert got.keys() == want.keys() and len(got) == STEPS
    assert got != want, "bf16 gave fp32's losses exactly: autocast did not run"
    assert got == pytest.approx(want, abs=BF16_ABS)
    assert bf16.series("train/loss")[STEPS] < bf16.series("train/loss")[1] - 0.5
    for name in DIAGNOSTICS:
        values = bf16.series(name)
        assert values and all(math.isfinite(v) for v in values.values()), name
