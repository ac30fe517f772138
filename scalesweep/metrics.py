"""The names that cross module borders: per-step metrics, the per-trial summary, run statuses.

The trainer writes them, the sweep logs them to MLflow, the runs table carries them and the
fitter reads them; the MLflow UI lines runs up by them. Every module uses these constants, and
tests/test_architecture.py fails if one of the names appears as a literal anywhere else.
No heavy imports here: the CLI, the fitter and the trainer all load this module.
"""

from __future__ import annotations

from typing import Final, Literal

# Per-step metrics (logged from rank 0 at `train.log_every` and at evaluations).
TRAIN_LOSS: Final = "train/loss"
VAL_LOSS: Final = "val/loss"
VAL_LOSS_AVG: Final = "val/loss_avg"
"""Validation loss of the averaged weights (SWA/EMA), when `averaging` is on."""
LR: Final = "train/lr"
TOKENS: Final = "train/tokens"
FLOPS: Final = "train/flops"
GRAD_NORM: Final = "train/grad_norm"
PARAM_NORM: Final = "train/param_norm"
ATTN_LOGIT_MAX: Final = "train/attn_logit_max"
"""The largest pre-softmax attention logit (Wortsman et al. 2023, attention-logit growth)."""
OUTPUT_LOGZ: Final = "train/output_logz"
"""Mean log Z of the output softmax (Wortsman et al. 2023, output-logit divergence)."""
GRAD_NOISE_SCALE: Final = "train/grad_noise_scale"
"""B_simple = tr(Σ)/|G|² (McCandlish et al. 2018), from gradients at two batch sizes."""
TOKENS_PER_S: Final = "perf/tokens_per_s"
MFU: Final = "perf/mfu"

STEP_METRICS: Final = (
    TRAIN_LOSS,
    VAL_LOSS,
    VAL_LOSS_AVG,
    LR,
    TOKENS,
    FLOPS,
    GRAD_NORM,
    PARAM_NORM,
    ATTN_LOGIT_MAX,
    OUTPUT_LOGZ,
    GRAD_NOISE_SCALE,
    TOKENS_PER_S,
    MFU,
)

# Per-trial summary: the fields of `summary.TrainSummary` that are logged as MLflow metrics.
INIT_LOSS: Final = "init_loss"
"""ℓ0: the validation loss at step 0."""
FINAL_VAL_LOSS: Final = "final_val_loss"
FINAL_VAL_LOSS_AVG: Final = "final_val_loss_avg"
LAST_FINITE_LOSS: Final = "last_finite_loss"
PARAMS: Final = "params"
PARAMS_NONEMBED: Final = "params_nonembed"
TRAINED_TOKENS: Final = "tokens"
"""Tokens actually trained: whole steps of batch_size · seq_len."""
TRAINED_FLOPS: Final = "flops"
STEPS: Final = "steps"
SUMMARY_TOKENS_PER_S: Final = "tokens_per_s"
WALL_S: Final = "wall_s"
MAX_ATTN_LOGIT: Final = "max_attn_logit"
"""The largest `train/attn_logit_max` the run logged: a column of the MLflow trials view."""
FINAL_OUTPUT_LOGZ: Final = "final_output_logz"
"""The last finite `train/output_logz` the run logged (a diverged run's, before it stopped)."""

SUMMARY_METRICS: Final = (
    INIT_LOSS,
    FINAL_VAL_LOSS,
    FINAL_VAL_LOSS_AVG,
    LAST_FINITE_LOSS,
    PARAMS,
    PARAMS_NONEMBED,
    TRAINED_TOKENS,
    TRAINED_FLOPS,
    STEPS,
    SUMMARY_TOKENS_PER_S,
    WALL_S,
    MAX_ATTN_LOGIT,
    FINAL_OUTPUT_LOGZ,
)
"""Every numeric summary field, in the order the runs table shows them."""

# Params a sweep logs beside the config's dotted keys: what the plan meant, not what whole
# steps gave (a planned 2e6 tokens trains 2,002,944 at batch 16 and 2,031,616 at batch 128).
PLANNED_TOKENS: Final = "planned.tokens"
"""The trial's planned token budget D: `train.tokens` when set, else steps × batch × seq_len."""
PLANNED_FLOPS: Final = "planned.flops"
"""The isoFLOP budget C the trial belongs to (only for trials of a `budget` section)."""

BRANCH_OF: Final = "branch.of"
"""A cooldown branch's trunk (its trial name); absent on a trunk or a run trained alone."""
BRANCH_TOKENS: Final = "branch.tokens"
"""The token budget D_i a cooldown branch stands for."""
BRANCH_FORK_STEP: Final = "branch.fork_step"
"""The trunk step a cooldown branch forked from."""

# Trial statuses (the `status` tag of a child run and the `status` column of the runs table).
STATUS: Final = "status"
Status = Literal["completed", "diverged", "failed"]
COMPLETED: Final = "completed"
DIVERGED: Final = "diverged"
FAILED: Final = "failed"
RUNNING: Final = "running"
"""A child run that has started and not finished (or whose driver died before marking it)."""
INTERRUPTED: Final = "interrupted"
"""A child run whose sweep was stopped by Ctrl-C mid-trial (MLflow status KILLED); --resume
trains it on from its checkpoint."""
FINISHED_STATUSES: Final = (COMPLETED, DIVERGED)
"""Statuses of a trial that ran to its end: never trained again on --resume."""
ENDED_STATUSES: Final = (COMPLETED, DIVERGED, FAILED)
"""Statuses of a trial that will not run again in this sweep invocation."""

SearchMetric = Literal["final_val_loss", "final_val_loss_avg"]
"""What a searcher may minimize: the final validation loss, or that of the averaged weights."""
