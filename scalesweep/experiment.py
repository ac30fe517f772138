"""Reading a sweep file: YAML, `--set` overrides and search spaces, validated before compute.

Any scalar leaf of a run section may be a search space instead of a value:

    optim:
      lr: {logspace: [1e-4, 1e-1, 4]}     # 4 log-spaced grid points
      weight_decay: {grid: [0.0, 0.1]}
      beta2: {uniform: [0.9, 0.999]}      # sampled by the searcher

A whole run section may be a `grid` of sections, for keys that only make sense together
(schedule types have different keys):

    schedule:
      grid: [{type: constant}, {type: wsd, cooldown_fraction: 0.2}]

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
from typing import Any, Literal, cast

import numpy as np
import yaml
from pydantic import ValidationError

from scalesweep.config import RUN_SECTIONS, SCHEDULE_TYPES, ExperimentConfig
from scalesweep.errors import UserError
from scalesweep.suggest import did_you_mean, known_keys

MAX_YAML_VALUES = 100_000
"""The most values a sweep file may expand to through its aliases (`*name`). A few hundred bytes
of nested aliases (a "billion laughs" file) expand to gigabytes once validated; a real sweep
file holds hundreds of values."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias is written out (memoised by node, so
    this is linear in the file, not in the expansion)."""
    if id(node) in sizes:
        return sizes[id(node)]
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = min(size, MAX_YAML_VALUES + 1)
    return sizes[id(node)]


class AliasBombError(yaml.YAMLError):
    """The document's aliases expand past `MAX_YAML_VALUES`."""


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `3e-4` (no dot) is a string; researchers write LRs that
    way, so read it as a float like YAML 1.2 does. A key written twice in one mapping is an
    error (PyYAML would keep the last one silently). A document whose aliases expand past
    `MAX_YAML_VALUES` values is refused before anything is built from it."""

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise AliasBombError(
                f"its aliases (*name) expand it to more than {MAX_YAML_VALUES:,} values; a "
                "sweep file holds far fewer (nested aliases multiply: write the values out)"
            )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                message = f"key {key!r} is given twice (lines {seen[key]} and {line})"
                raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


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
    bad = [a for a in args if isinstance(a, float) and not math.isfinite(a)]
    if bad:
        raise UserError(f"{where}: every value must be a finite number, but got {bad[0]}")
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
            # A whole section may be a grid of sections (e.g. `schedule: {grid: [{type:
            # constant}, {type: cosine}]}`): schedule types have different keys, so a grid per
            # key cannot list them (not sampled: Optuna's choices are scalars).
            section = dotted.split(".")[0]
            if section not in ExperimentConfig.model_fields:
                sections = known_keys([])
                raise UserError(f"{section}: unknown section{did_you_mean(section, sections)}")
            whole = not prefix and key in RUN_SECTIONS and next(iter(value)) == "grid"
            if not whole and (not prefix or section not in RUN_SECTIONS):
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
        raise UserError(f"--set {text!r}: expected KEY=VALUE in one word, e.g. --set optim.lr=0.01")
    try:
        value = read_yaml(raw)
    except yaml.YAMLError as error:
        raise UserError(f"--set {key}: cannot read {raw!r} as a YAML value ({error})") from None
    return key.strip(), value


def _looks_like_space(value: Any) -> bool:
    """`{name: [values]}`: what a search space looks like, whatever its name."""
    if not isinstance(value, Mapping) or len(value) != 1:
        return False
    return isinstance(next(iter(value.values())), list)


def _format_validation_error(error: ValidationError, context: str = "") -> str:
    lines = []
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        # A discriminated union puts the tag ("cosine") into loc; it is not a key of the file.
        if loc[:1] == ["schedule"] and len(loc) > 1 and loc[1] in SCHEDULE_TYPES:
            del loc[1]
        key = ".".join(loc)
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        if item["type"] == "extra_forbidden":
            what = "unknown section" if len(loc) == 1 else "unknown key"
            message = what + did_you_mean(key, known_keys(loc[:-1]))
        elif _looks_like_space(value) and not known_keys(loc):  # a value's space, misspelt
            (kind,) = value
            message = (
                f"{{{kind}: …}} is not a search space; the kinds are {', '.join(SPACE_KINDS)}"
                + did_you_mean(str(kind), SPACE_KINDS)
            )
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


def _check_grid_size(spaces: Mapping[str, SearchSpace], config: ExperimentConfig) -> None:
    """Refuse a grid of more than `search.max_trials` trials from its sizes alone, before any
    of its values is listed or checked."""
    sizes = {
        k: len(s.args) if s.kind == "grid" else int(s.args[2])
        for k, s in spaces.items()
        if s.is_grid
    }
    count = math.prod(sizes.values()) * config.search.num_samples
    limit = config.search.max_trials
    if count > limit:
        factors = " × ".join(f"{n:,} ({k})" for k, n in sizes.items())
        raise UserError(
            f"search.max_trials: the grid holds {count:,} trials ({factors} × "
            f"{config.search.num_samples} sample(s)), more than the limit of {limit:,}; "
            "shrink the grid, or raise search.max_trials if you mean it"
        )


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
    _check_grid_size(spaces, config)
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
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"{path}: cannot read the config ({error.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (it is not UTF-8); give a YAML file") from None
    try:
        raw = read_yaml(text)
    except AliasBombError as error:
        raise UserError(f"{path}: refused: {error}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({error})") from None
    if raw is None:
        raise UserError(
            f"{path}: the file is empty; a sweep file needs at least one section (see "
            "search_spaces/ for examples). Defaults alone would run a full default sweep"
        )
    return parse_experiment(raw, overrides=overrides, source=str(path))
