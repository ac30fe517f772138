"""Typed, validated configuration: one YAML format for `scalesweep train` and `scalesweep sweep`.

A file has the run sections (`model`, `optim`, `schedule`, `data`, `train`) and the sweep
sections (`search`, `resources`, `tracking`, `budget`). Any scalar leaf of a run section may be a
search space instead of a value:

    optim:
      lr: {logspace: [1e-4, 1e-1, 4]}     # 4 log-spaced grid points
      weight_decay: {grid: [0.0, 0.1]}
      beta2: {uniform: [0.9, 0.999]}      # sampled by the searcher

`load_experiment` validates everything before anything runs: the plain values, and every value
each search space can produce (grid points, range ends). Errors name the dotted key, the value
and the rule, and are raised as `UserError` (exit code 2 from the CLI).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scalesweep.errors import UserError

RUN_SECTIONS = ("model", "optim", "schedule", "data", "train")


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `3e-4` (no dot) is a string; researchers write LRs that
    way, so read it as a float like YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """Parse YAML with floats like `1e-3` read as numbers."""
    return yaml.load(text, Loader=_Loader)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


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
    """Width at which a muP model equals the standard one."""
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
    """Validation batches per evaluation (fixed windows, the same at every evaluation)."""
    log_every: int = Field(10, gt=0)
    """Steps between metric records; the diagnostics are computed on these steps only."""
    seed: int = 0
    divergence_margin: float = Field(1.0, ge=0)
    """A run has diverged when its training loss is non-finite or exceeds init_loss + margin."""
    checkpoint_every: int | None = Field(None, gt=0)
    """Steps between checkpoints; None writes none."""
    flop_counting: Literal["6N", "kaplan", "chinchilla", "palm"] = "6N"
    """Convention for `train/flops`, the summary `flops` and isoFLOP budgets (see flops.py)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    """torch.compile the model (CUDA only; ignored on CPU)."""
    precision: Literal["bf16", "fp32"] = "bf16"
    """Autocast dtype on CUDA. CPU always runs fp32."""

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
    metric: Literal["final_val_loss"] = "final_val_loss"
    """What the searcher minimizes. A diverged trial reports its init_loss ℓ0 here, a finite
    value (Optuna breaks on NaN) that ranks it with the untrained model."""
    mode: Literal["min"] = "min"
    seed: int = 0
    """Seed of the Optuna sampler / random search (not of training: that is train.seed)."""
    scheduler: Literal["asha"] | None = None
    """ASHA early stopping for plain HPO. Wrong for LR-sensitivity sweeps, which need every
    curve to its end."""


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


class TrackingConfig(_Section):
    uri: str | None = None
    """MLflow tracking URI; else $MLFLOW_TRACKING_URI; else sqlite:///<cwd>/mlflow.db."""
    log_every_s: float = Field(5.0, gt=0)
    """Per-step metrics are sent to MLflow in batches at most this often."""


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
    search: SearchConfig = SearchConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    budget: BudgetConfig | None = None


# ---------------------------------------------------------------------------------------------
# Search spaces
# ---------------------------------------------------------------------------------------------

SpaceKind = Literal["grid", "logspace", "loguniform", "uniform", "choice", "int"]
SPACE_KINDS: tuple[str, ...] = ("grid", "logspace", "loguniform", "uniform", "choice", "int")
GRID_KINDS = ("grid", "logspace")


@dataclass(frozen=True)
class SearchSpace:
    """One searchable key: `grid`/`logspace` expand into a Cartesian grid; the rest are sampled."""

    kind: SpaceKind
    args: tuple[Any, ...]

    @property
    def is_grid(self) -> bool:
        return self.kind in GRID_KINDS

    def grid_values(self) -> list[Any]:
        """The finite set of values of a `grid` or `logspace`."""
        if self.kind == "grid":
            return list(self.args)
        lo, hi, n = self.args
        return [float(v) for v in np.geomspace(lo, hi, int(n))]

    def probe_values(self) -> list[Any]:
        """Values that together check the space against the field's rules: every finite value,
        or both ends of a range."""
        if self.kind in ("grid", "logspace", "choice"):
            return self.grid_values() if self.kind != "choice" else list(self.args)
        return list(self.args)

    def to_yaml(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.args)}


def _parse_space(key: str, spec: Mapping[str, Any]) -> SearchSpace:
    ((name, args),) = spec.items()
    kind = cast(SpaceKind, name)
    where = f"{key}: {{{kind}: {args!r}}}"
    if not isinstance(args, list) or not args:
        raise UserError(f"{where}: a `{kind}` space takes a non-empty list")
    if kind in ("grid", "choice"):
        return SearchSpace(kind, tuple(args))
    if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        raise UserError(f"{where}: a `{kind}` space takes numbers")
    if kind == "logspace":
        if len(args) != 3 or int(args[2]) != args[2] or args[2] < 1:
            raise UserError(f"{where}: `logspace` takes [low, high, n] with integer n >= 1")
        lo, hi, n = args
        if not 0 < lo <= hi:
            raise UserError(f"{where}: `0 < low <= high` must hold, but got ({lo=}, {hi=})")
        return SearchSpace("logspace", (float(lo), float(hi), int(n)))
    if len(args) != 2:
        raise UserError(f"{where}: `{kind}` takes [low, high]")
    lo, hi = args
    if not lo < hi:
        raise UserError(f"{where}: `low < high` must hold, but got ({lo=}, {hi=})")
    if kind == "loguniform" and lo <= 0:
        raise UserError(f"{where}: `low > 0` must hold for loguniform, but got ({lo=})")
    if kind == "int" and not (isinstance(lo, int) and isinstance(hi, int)):
        raise UserError(f"{where}: `int` takes integer bounds, but got ({lo=}, {hi=})")
    return SearchSpace(kind, (lo, hi))


def _is_space(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in SPACE_KINDS


def _find_spaces(tree: Mapping[str, Any], prefix: str = "") -> dict[str, SearchSpace]:
    spaces: dict[str, SearchSpace] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if _is_space(value):
            if not prefix or dotted.split(".")[0] not in RUN_SECTIONS:
                raise UserError(
                    f"{dotted}: search spaces are allowed only under {', '.join(RUN_SECTIONS)}"
                )
            spaces[dotted] = _parse_space(dotted, value)
        elif isinstance(value, Mapping):
            spaces.update(_find_spaces(value, f"{dotted}."))
    return spaces


# ---------------------------------------------------------------------------------------------
# Dotted keys, overrides, validation
# ---------------------------------------------------------------------------------------------


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating sections on the way."""
    *parents, leaf = dotted.split(".")
    node = tree
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"{'.'.join(parents[: i + 1])}: is {child!r}, not a section")
        node = child
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`optim.lr=3e-3` -> ("optim.lr", 0.003). The value is read as YAML, so `{grid: [1, 2]}`,
    `true` and `null` work."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text!r}: expected dotted.key=value")
    try:
        value = read_yaml(raw)
    except yaml.YAMLError as error:
        raise UserError(f"--set {key}: cannot read {raw!r} as a YAML value ({error})") from None
    return key.strip(), value


def _format_validation_error(error: ValidationError, context: str = "") -> str:
    lines = []
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        # A discriminated union puts the tag ("cosine") into loc; it is not a key of the file.
        if loc[:1] == ["schedule"] and len(loc) > 1 and loc[1] in SCHEDULE_TYPES:
            del loc[1]
        key = ".".join(loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        value = item.get("input")
        quiet = item["type"] in ("extra_forbidden", "missing") or isinstance(value, Mapping)
        shown = "" if quiet else f" got {value!r}:"
        lines.append(f"{key or '<file>'}:{shown} {message}{context}")
    return "\n".join(lines)


def _validate(tree: Mapping[str, Any], context: str = "") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as error:
        raise UserError(_format_validation_error(error, context)) from None


@dataclass(frozen=True)
class Experiment:
    """A loaded file: the raw tree (with its search spaces) and the spaces found in it.

    `config` is the tree validated with every space replaced by its first value; use it for
    everything that does not depend on the searched keys. `resolve` gives a trial's config.
    """

    raw: dict[str, Any]
    spaces: dict[str, SearchSpace]
    config: ExperimentConfig
    source: str = "<dict>"
    overrides: tuple[str, ...] = field(default=())

    def resolve(self, assignment: Mapping[str, Any] | None = None) -> ExperimentConfig:
        """The config with the given dotted keys set. Every space must be assigned."""
        assignment = dict(assignment or {})
        missing = [k for k in self.spaces if k not in assignment]
        if missing:
            key = missing[0]
            example = self.spaces[key].probe_values()[0]
            raise UserError(
                f"{key} is a search space ({self.spaces[key].to_yaml()}); pin it to train once, "
                f"e.g. --set {key}={example}, or run it with `scalesweep sweep`"
            )
        tree = copy.deepcopy(self.raw)
        for key, value in assignment.items():
            set_dotted(tree, key, value)
        return _validate(tree)

    def grid_spaces(self) -> dict[str, SearchSpace]:
        return {k: s for k, s in self.spaces.items() if s.is_grid}

    def sampled_spaces(self) -> dict[str, SearchSpace]:
        return {k: s for k, s in self.spaces.items() if not s.is_grid}


def parse_experiment(
    raw: Mapping[str, Any] | None,
    *,
    overrides: Iterable[str] = (),
    source: str = "<dict>",
) -> Experiment:
    """Validate a raw YAML tree (plus `--set` overrides) into an `Experiment`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise UserError(f"{source}: the top level must be a mapping of sections, got {raw!r}")
    tree = copy.deepcopy(dict(raw))
    overrides = tuple(overrides)
    for text in overrides:
        set_dotted(tree, *parse_override(text))
    spaces = _find_spaces(tree)
    probe = copy.deepcopy(tree)
    for key, space in spaces.items():
        set_dotted(probe, key, space.probe_values()[0])
    config = _validate(probe)
    # Check every value a space can take, so a bad grid point fails now, not in trial 17.
    for key, space in spaces.items():
        for value in space.probe_values()[1:]:
            candidate = copy.deepcopy(probe)
            set_dotted(candidate, key, value)
            _validate(candidate, context=f" (a value of the search space at {key})")
    return Experiment(raw=tree, spaces=spaces, config=config, source=source, overrides=overrides)


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read and validate a YAML file. Every problem is a `UserError` naming the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"{path}: cannot read the config ({error.strerror})") from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({error})") from None
    return parse_experiment(raw, overrides=overrides, source=str(path))


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
