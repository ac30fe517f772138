"""Where a training run is (`RunState`, saved in checkpoints) and what it produced
(`TrainSummary`, the per-trial summary of `scalesweep.metrics`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from scalesweep import metrics as m


@dataclass(frozen=True)
class TrainSummary:
    """What one run produced; the per-trial summary names of `scalesweep.metrics`."""

    status: m.Status
    init_loss: float
    """ℓ0: validation loss at step 0."""
    final_val_loss: float | None
    """Validation loss after the last step; None when the run diverged."""
    last_finite_loss: float | None
    """Last finite training loss seen, for diverged runs."""
    steps: int
    """Optimizer steps taken."""
    total_steps: int
    params: int
    params_nonembed: int
    tokens: int
    """Training tokens consumed (steps · batch_size · seq_len)."""
    flops: float
    """Training FLOPs under train.flop_counting."""
    tokens_per_s: float
    """Tokens trained in this process over `wall_s` (a branch's from its fork)."""
    wall_s: float
    """Seconds this run trained in this process; a trunk's leave out its branches' time."""
    diverged_step: int | None = None
    reason: str | None = None
    final_val_loss_avg: float | None = None
    """Validation loss of the averaged weights after the last step (with `averaging`)."""
    max_attn_logit: float | None = None
    """The largest attention logit logged (Wortsman et al. 2023's attention-logit growth)."""
    final_output_logz: float | None = None
    """The last finite output log Z logged (output-logit divergence drifts it)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunState:
    """Where a run is; saved in checkpoints and copied into forks."""

    step: int = 0
    init_loss: float = math.nan
    last_finite_loss: float | None = None
    final_val_loss: float | None = None
    """The validation loss at step `n_steps`, once evaluated."""
    final_val_loss_avg: float | None = None
    """The same for the averaged weights (with `averaging`)."""
    status: m.Status = m.COMPLETED
    reason: str | None = None
    diverged_step: int | None = None
    max_attn_logit: float | None = None
    """The largest finite `train/attn_logit_max` logged so far."""
    final_output_logz: float | None = None
    """The last finite `train/output_logz` logged so far."""
    branches_done: list[str] = field(default_factory=list)
    """Cooldown branches that have run from this trunk (see scalesweep/branches.py)."""


def track_diagnostics(state: RunState, metrics: dict[str, float]) -> None:
    """Carry a log step's diagnostics into the run-level summary: the largest attention logit
    and the last log Z, finite values only (a diverging run's last step may log inf or nan)."""
    logit = metrics.get(m.ATTN_LOGIT_MAX)
    if logit is not None and math.isfinite(logit):
        known = state.max_attn_logit
        state.max_attn_logit = logit if known is None else max(known, logit)
    logz = metrics.get(m.OUTPUT_LOGZ)
    if logz is not None and math.isfinite(logz):
        state.final_output_logz = logz


def divergence_reason(loss: float, init_loss: float, margin: float) -> str | None:
    """Why a run with this training loss has diverged (non-finite, or above ℓ0 + margin), or
    None while it has not."""
    if not math.isfinite(loss):
        return f"non-finite training loss ({loss})"
    if loss > init_loss + margin:
        return f"training loss {loss:.4f} above init_loss {init_loss:.4f} + margin {margin}"
    return None
