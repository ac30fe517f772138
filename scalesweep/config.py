"""Typed configuration: one frozen pydantic model per section of a YAML file.

A file has the run sections (`model`, `optim`, `schedule`, `data`, `train`) and the sweep
sections (`search`, `resources`, `tracking`, `budget`). `ExperimentConfig` is one fully
resolved run: every value pinned. Reading a file, its search spaces and its overrides is
`scalesweep.experiment`; this module only says what a valid config is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scalesweep import metrics as m

RUN_SECTIONS = ("model", "optim", "schedule", "data", "train", "averaging")


class _Section(BaseModel):
    # allow_inf_nan=False: `lr: 1e400` reads as inf, and must be refused, not "diverge".
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


# ---------------------------------------------------------------------------------------------
# Run sections
# ---------------------------------------------------------------------------------------------


class ModelConfig(_Section):
    """The GPT proxy of Wortsman et al. 2023: pre-norm, RoPE, no biases, untied embeddings."""

    width: int = Field(128, gt=0)
    """d_model, the residual stream width."""
    depth: int = Field(2, gt=0)
    """Number of transformer blocks."""
    head_dim: int = Field(64, gt=0, multiple_of=2)
    """Dimension per attention head, even for RoPE; heads = width / head_dim (Wortsman et al.
    fix it at 64)."""
    mlp_ratio: float = Field(4.0, gt=0)
    """MLP hidden width as a multiple of `width`."""
    vocab_size: int | None = Field(None, gt=1)
    """Output vocabulary; None takes it from the data."""
    seq_len: int = Field(256, gt=0)
    """Context length in tokens."""
    qk_norm: bool = False
    """LayerNorm on queries and keys before the dot product (Wortsman et al. §3.1.1)."""
    z_loss: float = Field(0.0, ge=0)
    """Coefficient of the auxiliary loss mean(log² Z) on the output softmax; 0 is off (§3.1.2)."""
    parameterization: Literal["standard", "mup"] = "standard"
    """`mup`: attention scale 1/d_head, output logits scaled by base_width/width and hidden
    matrices' LR scaled by base_width/width (Yang et al. 2022, Table 8 for Adam)."""
    mup_base_width: int = Field(128, gt=0)
    """Width at which muP's width multipliers are 1 (output logits, hidden-matrix LR). A muP
    model at this width still differs from the standard one: its attention scale is 1/d_head,
    not 1/sqrt(d_head)."""
    output_mult: float = Field(1.0, gt=0)
    """Multiplier on the output logits (muP's alpha_output)."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.width % self.head_dim != 0:
            raise ValueError(
                f"`model.width % model.head_dim == 0` must hold, but got "
                f"(width={self.width}, head_dim={self.head_dim})"
            )
        return self

    @property
    def n_heads(self) -> int:
        return self.width // self.head_dim

    @property
    def mlp_width(self) -> int:
        return round(self.width * self.mlp_ratio)


class OptimConfig(_Section):
    """Optimizer, weight decay and clipping."""

    name: Literal["adamw", "lion"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate."""
    weight_decay: float = Field(0.0, ge=0)
    """λ. Its meaning depends on `decay_mode`."""
    decay_mode: Literal["coupled", "independent"] = "coupled"
    """`coupled`: θ ← θ − η_t·λ·θ (torch's AdamW). `independent`: θ ← θ − s_t·λ·θ, with s_t the
    schedule multiplier η_t/η (Wortsman et al. 2023 §3.2.2): decay no longer grows with the LR."""
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this; None turns clipping off."""
    decay_embeddings: bool = False
    """Decay the input embedding too (off by default, as in GPT-2 and Wortsman et al.)."""
    decay_norms: bool = False
    """Apply weight decay to LayerNorm gains."""


class ConstantSchedule(_Section):
    """Linear warmup, then a constant LR."""

    type: Literal["constant"] = "constant"
    warmup: float = Field(0.0, ge=0)
    """Warmup length: a fraction of the run if < 1, else a number of steps."""


class CosineSchedule(_Section):
    """Linear warmup, then a cosine to `min_lr_ratio`·η over the rest of the run."""

    type: Literal["cosine"] = "cosine"
    warmup: float = Field(0.0, ge=0)
    """Warmup length: a fraction of the run if < 1, else a number of steps."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Floor of the cosine as a fraction of the peak LR."""


class WSDSchedule(_Section):
    """Warmup-stable-decay (Hägele et al. 2024): warmup, constant, then a cooldown to the floor."""

    type: Literal["wsd"] = "wsd"
    warmup: float = Field(0.0, ge=0)
    """Warmup length: a fraction of the run if < 1, else a number of steps."""
    cooldown_fraction: float = Field(0.2, gt=0, le=1)
    """Fraction of the run spent cooling down (Hägele et al. find 20% matches cosine)."""
    cooldown_shape: Literal["linear", "cosine", "1-sqrt"] = "1-sqrt"
    """Shape of the cooldown; 1-sqrt did best in Hägele et al. §3."""
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """LR at the end of the cooldown as a fraction of the peak LR."""


SCHEDULE_TYPES = ("constant", "cosine", "wsd")
ScheduleConfig = Annotated[
    ConstantSchedule | CosineSchedule | WSDSchedule, Field(discriminator="type")
]


class AveragingConfig(_Section):
    """Weight averaging along the run, evaluated as `val/loss_avg` (Hägele et al. 2024 §4); the
    trained weights are not changed. See scalesweep/averaging.py."""

    kind: Literal["swa", "ema"] = "swa"
    """`swa`: the mean of the snapshots of the last `window` steps; `ema`: a moving average
    with a horizon of about `window` steps."""
    every: int = Field(50, gt=0)
    """Steps between snapshots (swa) or updates (ema)."""
    window: int = Field(500, gt=0)
    """Steps the average spans."""

    @model_validator(mode="after")
    def _window_holds_snapshots(self) -> AveragingConfig:
        n = self.window // self.every
        if not 1 <= n <= MAX_SNAPSHOTS:
            raise ValueError(
                f"`1 <= averaging.window // averaging.every <= {MAX_SNAPSHOTS}` must hold (SWA "
                f"keeps that many copies of the weights), but got (window={self.window}, "
                f"every={self.every})"
            )
        return self


MAX_SNAPSHOTS = 32


class DataConfig(_Section):
    path: str = "builtin"
    """Token shards made by `scalesweep data prepare`, or `builtin` for the shipped corpus."""


class TrainConfig(_Section):
    """Length, batch, evaluation, divergence, checkpoints, device."""

    steps: int | None = Field(None, gt=0)
    """Optimizer steps. Give `steps` or `tokens`, not both; with neither, 1000 steps."""
    tokens: int | None = Field(None, gt=0)
    """Training tokens; steps = ceil(tokens / (batch_size · seq_len))."""
    batch_size: int = Field(32, gt=0)
    """Sequences per optimizer step, across all ranks."""
    micro_batch_size: int | None = Field(None, gt=0)
    """Sequences per rank per forward pass; gradient accumulation makes up the rest.
    None: batch_size / world_size (no accumulation)."""
    eval_every: int = Field(100, gt=0)
    """Steps between validation evaluations (step 0 and the last step are always evaluated)."""
    eval_batches: int = Field(8, gt=0)
    """Validation batches per evaluation."""
    eval_batch_size: int = Field(16, gt=0)
    """Windows per validation batch. The validation set is eval_batches × eval_batch_size
    windows evenly spaced over the validation split: the same tokens for every run of a sweep,
    whatever its seed, micro-batch or number of ranks."""
    log_every: int = Field(10, gt=0)
    """Steps between metric records; the diagnostics are computed on these steps only."""
    seed: int = 0
    divergence_margin: float = Field(1.0, ge=0)
    """A run has diverged when its training loss is non-finite or exceeds init_loss + margin."""
    grad_noise_scale: bool = True
    """Log `train/grad_noise_scale` (McCandlish et al. 2018) on log steps when the run has
    two batch sizes to compare: micro-batches (accumulation) or ranks."""
    checkpoint_every: int | None = Field(None, gt=0)
    """Steps between checkpoints; None writes none."""
    flop_counting: Literal["6N", "kaplan", "chinchilla", "palm"] = "6N"
    """Convention for `train/flops`, the summary `flops` and isoFLOP budgets (see flops.py)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    """torch.compile the model, on any device (inductor: Triton on CUDA, C++ on CPU). The first
    steps compile (tens of seconds for a small model on 2 CPU cores), once per process."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """Autocast dtype of the forward pass. `auto`: bf16 on CUDA, fp32 on CPU (where bf16 is
    slower on most CPUs); `bf16` autocasts on any device; `fp32` never autocasts."""

    @model_validator(mode="before")
    @classmethod
    def _default_length(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("steps") is None and data.get("tokens") is None:
            return {**data, "steps": 1000}
        return data

    @model_validator(mode="after")
    def _length_given_once(self) -> TrainConfig:
        if (self.steps is None) == (self.tokens is None):
            raise ValueError(
                "exactly one of `train.steps` and `train.tokens` must be set, but got "
                f"(steps={self.steps}, tokens={self.tokens})"
            )
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                "`train.batch_size % train.micro_batch_size == 0` must hold, but got "
                f"(batch_size={self.batch_size}, micro_batch_size={self.micro_batch_size})"
            )
        return self


# ---------------------------------------------------------------------------------------------
# Sweep sections
# ---------------------------------------------------------------------------------------------


class SearchConfig(_Section):
    """How trials are chosen. Spaces written as `grid`/`logspace` are always expanded as a grid;
    the other kinds go to the searcher, which runs `num_samples` trials per grid cell."""

    algorithm: Literal["grid", "random", "tpe", "gp", "cmaes"] = "grid"
    num_samples: int = Field(1, gt=0)
    """Trials per grid cell (for `grid`: repeats of the whole grid, each with another seed)."""
    metric: m.SearchMetric = m.FINAL_VAL_LOSS
    """What the searcher minimizes. A diverged trial reports its init_loss ℓ0 here, a finite
    value (Optuna breaks on NaN) that ranks it with the untrained model."""
    mode: Literal["min"] = "min"
    seed: int = 0
    """Seed of the Optuna sampler / random search (not of training: that is train.seed)."""
    scheduler: Literal["asha"] | None = None
    """ASHA early stopping for plain HPO. Wrong for LR-sensitivity sweeps, which need every
    curve to its end."""
    max_trials: int = Field(20_000, gt=0)
    """The most trials a sweep may plan; a larger grid is refused, with its count, unexpanded."""


class ResourcesConfig(_Section):
    workers_per_trial: int = Field(1, gt=0)
    """Ray Train workers (DDP ranks) per trial. On GPUs: one rank per GPU."""
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    """Fractions (e.g. 0.25) let several single-worker trials share one GPU."""
    max_concurrent_trials: int | None = Field(None, gt=0)
    max_failures: int = Field(2, ge=0)
    """Restarts of a trial whose worker died; it resumes from its last checkpoint."""
    report_interval_s: float = Field(0.1, gt=0)
    """Ray Train's controller poll interval; each report to Tune waits up to this long."""
    autoscaling_timeout_s: float | None = Field(None, gt=0)
    """On a cluster that adds nodes on demand (cluster launcher, KubeRay autoscaler): ask it
    for the nodes a trial needs and wait this long for them. None: the cluster is what it is
    now, and a trial it cannot hold is refused before any compute (Tune would wait forever)."""


class TrackingConfig(_Section):
    uri: str | None = None
    """MLflow tracking URI; else $MLFLOW_TRACKING_URI; else sqlite:///<cwd>/mlflow.db."""
    log_every_s: float = Field(5.0, gt=0)
    """Per-step metrics are sent to MLflow in batches at most this often."""
    outage_timeout_s: float = Field(600.0, gt=0)
    """How long a trial or the driver waits for a tracking server that stopped answering
    before it gives up. Per-step metrics never wait: they queue, then spool to disk."""


class ShapeConfig(_Section):
    width: int = Field(gt=0)
    depth: int = Field(gt=0)
    head_dim: int | None = Field(None, gt=0)


class BudgetConfig(_Section):
    """isoFLOP plan (Chinchilla Approach 2): every shape at every budget, tokens = C / FLOPs per
    token, counted under `train.flop_counting`."""

    flops: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)
    shapes: list[ShapeConfig] = Field(min_length=1)
    min_tokens_per_param: float | None = Field(None, gt=0)
    max_tokens_per_param: float | None = Field(None, gt=0)


class BranchesConfig(_Section):
    """Cooldown branches (Hägele et al. 2024 §5): each trial is a trunk trained with the WSD
    schedule; at each smaller token budget D_i it forks at the step where a standalone WSD run
    of D_i tokens would start its cooldown, cools down over the rest of D_i and is evaluated: a
    run of D_i tokens, for the price of its cooldown. See scalesweep/branches.py."""

    tokens: list[Annotated[int, Field(gt=0)]] | None = None
    """Token budgets of the branches, each below the trunk's own (`train.tokens`/`steps`)."""
    budgets_from: Literal["isoflop"] | None = None
    """`isoflop`: the cells of the `budget` section that differ only in their budget become one
    trunk (at the largest budget that shape keeps) with a branch at each other budget."""

    @model_validator(mode="after")
    def _one_source(self) -> BranchesConfig:
        if (self.tokens is None) == (self.budgets_from is None):
            raise ValueError(
                "exactly one of `branches.tokens` and `branches.budgets_from` must be set, but "
                f"got (tokens={self.tokens}, budgets_from={self.budgets_from})"
            )
        return self


class ExperimentConfig(_Section):
    """A whole YAML file. `scalesweep train` uses the run sections and ignores the sweep ones."""

    name: str = Field("scalesweep", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    """Sweep name: the MLflow experiment and the Ray Tune run name."""
    storage_path: str | None = None
    """Where Ray keeps trial results and checkpoints; must be shared storage on a multi-node
    cluster. None: ./runs under the working directory."""
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = CosineSchedule()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    averaging: AveragingConfig | None = None
    """Weight averaging (off when absent)."""
    search: SearchConfig = SearchConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    budget: BudgetConfig | None = None
    branches: BranchesConfig | None = None
    """Cooldown branches of every trial (off when absent)."""

    @model_validator(mode="after")
    def _branches_need_a_constant_phase(self) -> ExperimentConfig:
        if self.branches is None:
            return self
        if self.schedule.type != "wsd":
            raise ValueError(
                f"`branches` needs `schedule.type: wsd` (a constant phase to fork cooldowns "
                f"from), but got schedule.type={self.schedule.type!r}"
            )
        if self.branches.budgets_from == "isoflop" and self.budget is None:
            raise ValueError("`branches.budgets_from: isoflop` needs a `budget` section")
        return self


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"model.width": 64, ...}: the dotted names params are logged under."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_params(config: ExperimentConfig) -> dict[str, Any]:
    """The run sections as dotted params (`model.width`, `optim.lr`, ...)."""
    dumped = config.model_dump(mode="json", include=set(RUN_SECTIONS))
    return flatten(dumped)


def total_steps(config: ExperimentConfig) -> int:
    """Optimizer steps of a run, from `train.steps` or `train.tokens`."""
    if config.train.steps is not None:
        return config.train.steps
    assert config.train.tokens is not None  # guaranteed by TrainConfig's validator
    tokens_per_step = config.train.batch_size * config.model.seq_len
    return max(1, math.ceil(config.train.tokens / tokens_per_step))


def batch_split(
    batch_size: int, micro_batch_size: int | None, ranks: int
) -> tuple[int, int] | None:
    """(sequences per forward pass, micro-batches per step) on each of `ranks`, or None when
    the batch does not split into ranks × micro-batches.

    Example:
        >>> batch_split(32, 4, 2), batch_split(30, 4, 2)
        ((4, 4), None)
    """
    per_rank, remainder = divmod(batch_size, ranks)
    micro = micro_batch_size or per_rank
    if remainder or per_rank % micro:
        return None
    return micro, per_rank // micro
