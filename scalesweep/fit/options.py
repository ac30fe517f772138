"""The options every fit is fitted with, and the `scalesweep fit` flags made from them.

One place: each `FitOptions` field carries its help text and how its flag parses, so
`add_arguments` derives the flags (`level` -> `--level`, with its help and default) and
`from_args` reads them back. A new option is one field here.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from scalesweep.errors import UserError

if TYPE_CHECKING:
    import numpy as np


def _option(
    default: Any,
    help: str,
    *,
    parse: Callable[[Any], Any] | None = None,
    shown: str | None = None,
    **argparse_kwargs: Any,
) -> Any:
    """A `FitOptions` field: its default, its flag's help, how the parsed flag becomes the
    field's value (`parse`), the default as the help shows it (`shown`), and argparse's own
    keywords (type, nargs, choices, metavar, action)."""
    metadata = {"help": help, "parse": parse, "shown": shown, "argparse": argparse_kwargs}
    return field(default=default, metadata=metadata)


def parse_point(text: str) -> dict[str, float]:
    """`--predict-at` "N=1e9,S=1e5" -> {"N": 1e9, "S": 1e5}; the keys must be one of the forms
    {L}, {N, S} or {N, D}, the values positive numbers.

    Example:
        >>> parse_point("N=1e9, D=2e10")
        {'N': 1000000000.0, 'D': 20000000000.0}
    """
    forms = ({"L"}, {"N", "S"}, {"N", "D"})
    point: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        try:
            number = float(value) if sep else math.nan
        except ValueError:
            number = math.nan
        if not (number > 0 and math.isfinite(number)):
            raise UserError(
                f"--predict-at {text!r}: `{key}` must be a positive number, "
                f"written KEY=VALUE, but got {item.strip()!r}"
            )
        point[key] = number
    if set(point) not in forms:
        raise UserError(
            f"--predict-at {text!r}: the keys must be L (critical-batch), N,S "
            f"(kaplan-ns) or N,D (kaplan-nd), but got {sorted(point)}"
        )
    return point


def parse_selector(text: str) -> dict[str, str]:
    """`--fit-on` "schedule.type=wsd,schedule.cooldown_fraction=0.2" -> {key: value}.

    Example:
        >>> parse_selector("schedule.type=constant")
        {'schedule.type': 'constant'}
    """
    selector: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not (sep and key and value):
            raise UserError(f"--fit-on {text!r}: each item must be KEY=VALUE, but got {item!r}")
        selector[key] = value
    return selector


SCHEDULE_ALIASES = {"cooldown": "cooldown_fraction", "shape": "cooldown_shape"}
"""Short keys `--predict-schedule` also takes (`type=wsd,cooldown=0.2,shape=1-sqrt`)."""


def schedule_model(spec: Mapping[str, Any], where: str) -> Any:
    """The schedule `spec` (keys of the config's `schedule` section) as the config's own model
    validates it (a `ScheduleConfig`); a bad key or value raises `UserError` naming it."""
    from pydantic import TypeAdapter, ValidationError

    from scalesweep.config import ScheduleConfig

    try:
        return TypeAdapter(ScheduleConfig).validate_python(dict(spec))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'type'}: {e['msg']}"
            + ("" if e["type"] in ("extra_forbidden", "missing") else f" (got {e['input']!r})")
            for e in error.errors()
        )
        raise UserError(f"{where}: {problems}") from None


def parse_schedule(text: str) -> dict[str, Any]:
    """`--predict-schedule` "type=wsd,cooldown=0.2,shape=1-sqrt" -> the schedule's keys, checked
    by the config's schedule model (`warmup`, when not given, is the runs' own).

    Example:
        >>> parse_schedule("type=wsd,cooldown=0.2,shape=1-sqrt")
        {'type': 'wsd', 'cooldown_fraction': 0.2, 'cooldown_shape': '1-sqrt'}
    """
    where = f"--predict-schedule {text!r}"
    spec: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not (sep and key and value):
            raise UserError(f"{where}: each item must be KEY=VALUE, but got {item.strip()!r}")
        spec[SCHEDULE_ALIASES.get(key, key)] = value
    if "type" not in spec:
        raise UserError(f"{where}: `type` must be given (constant, cosine or wsd)")
    model = schedule_model(spec, where)
    return {key: getattr(model, key) for key in spec}


def _tuple_or_none(values: Any) -> tuple[Any, ...] | None:
    return None if values is None else tuple(values)


@dataclass(frozen=True)
class FitOptions:
    """What the command line sets for the fits (`scalesweep fit --help`)."""

    level: float = _option(0.95, "confidence level of every interval", type=float)
    seed: int = _option(0, "seed of the bootstrap resamples", type=int)
    bootstrap: int = _option(200, "parametric (Approach 3) bootstrap resamples", type=int)
    isoflop_bootstrap: int = _option(
        0,
        "isoFLOP (Approach 2) bootstrap resamples of the loss noise (residuals about each "
        "budget's smoothed profile; the sizes stay); 0: OLS intervals",
        type=int,
    )
    isoflop_method: Literal["akima", "quadratic"] = _option(
        "akima",
        "per-budget minimum: Akima interpolation (Porian et al. 2024; measured best in "
        "docs/fits.md) or a local parabola",
        choices=("akima", "quadratic"),
    )
    parametric_method: Literal["projection", "grid"] = _option(
        "projection",
        "Approach 3's search: variable projection over an (α, β) grid (Czech et al. 2026; "
        "~0.1 s) or Epoch's 4500 L-BFGS starts (Besiroglu et al. 2024; ~1 s); the same optimum "
        "on the reference sets (docs/fits.md)",
        choices=("projection", "grid"),
    )
    window: int | None = _option(
        5,
        "sizes per parabola, quadratic method (0: all)",
        type=int,
        parse=lambda value: value or None,
    )
    robust: bool = _option(False, "Huber-weighted parabolas", action="store_true")
    saturating: bool = _option(
        False, "power laws with an irreducible term, L = E + A·X^-α", action="store_true"
    )
    group_by: tuple[str, ...] | None = _option(
        None,
        "group columns of the per-group fits (LR sensitivity, power laws, diagnostics, "
        "critical batch)",
        parse=_tuple_or_none,
        shown="every varied column but the LR and the seed",
        nargs="+",
        metavar="COL",
    )
    lr_range: tuple[float, float] | None = _option(
        None,
        "LR range [LO, HI] of the LR-sensitivity score; each group is scored over the part of "
        "it that its LRs span, and the answer says which",
        parse=_tuple_or_none,
        shown="Wortsman et al.'s [3e-4, 0.3]",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
    )
    init_loss: float | None = _option(
        None,
        "ℓ0 as a constant (e.g. ln(vocab)), when the table has no init_loss column",
        shown="the init_loss column",
        type=float,
    )
    predict_flops: float | None = _option(
        None,
        "recommended N, D and predicted loss at this budget C, counted as the runs count "
        "FLOPs (train.flop_counting), with confidence and prediction intervals",
        type=float,
        metavar="C",
    )
    predict_at: tuple[Mapping[str, float], ...] = _option(
        (),
        "predict at L=3.2 (B_crit), N=1e9,S=1e5 (kaplan-ns) or N=1e9,D=2e10 (kaplan-nd) "
        "(repeatable)",
        parse=lambda texts: tuple(parse_point(text) for text in texts),
        shown="none",
        action="append",
        metavar="K=V,...",
    )
    n_col: str | None = _option(
        None,
        "the column read as N",
        shown="the one the runs' train.flop_counting pairs with: params for 6N, "
        "params_nonembed for kaplan, all but the input embedding for chinchilla and palm",
        metavar="COL",
    )
    all_runs: bool = _option(
        False,
        "parametric: fit every completed run, not the best run per (N, D) cell",
        action="store_true",
    )
    variant: str | None = _option(
        None,
        "compare: the column whose values are compared (model.qk_norm, schedule.type, optim.name)",
        shown="none",
        metavar="COLUMN",
    )
    baseline: str | None = _option(
        None,
        "compare: the --variant value the others are measured against",
        shown="False/0 when the column has it, else its most common value",
        metavar="VALUE",
    )
    shared_E: bool = _option(
        False,
        "compare: one irreducible loss E for every variant's law (always with < 4 budgets)",
        action="store_true",
    )
    fit_on: tuple[Mapping[str, str], ...] = _option(
        (),
        "schedule-law: fit on the runs matching KEY=VALUE[,KEY=VALUE] (repeatable; a run "
        "matching any is a fit run), e.g. schedule.type=constant",
        parse=lambda texts: tuple(parse_selector(text) for text in texts),
        shown="per group, the two runs whose LR schedules differ most",
        action="append",
        metavar="K=V,...",
    )
    predict_schedule: tuple[Mapping[str, Any], ...] = _option(
        (),
        "schedule-law: predict the curve of this schedule (keys of the config's `schedule` "
        "section, e.g. type=wsd,cooldown_fraction=0.2,cooldown_shape=1-sqrt; repeatable)",
        parse=lambda texts: tuple(parse_schedule(text) for text in texts),
        shown="none",
        action="append",
        metavar="K=V,...",
    )
    best_cooldown: bool = _option(
        False,
        "schedule-law: scan the WSD cooldown fraction and shape for the lowest final loss",
        action="store_true",
    )
    schedule_law: Literal["auto", "multi-power", "lr-annealing"] = _option(
        "auto",
        "schedule-law: the law that predicts (auto: the one with the lower held-out error)",
        choices=("auto", "multi-power", "lr-annealing"),
    )

    def __post_init__(self) -> None:
        budget = self.predict_flops
        rules = {
            "--level": (0 < self.level < 1, "0 < level < 1", self.level),
            "--bootstrap": (self.bootstrap >= 0, "bootstrap >= 0", self.bootstrap),
            "--isoflop-bootstrap": (
                self.isoflop_bootstrap >= 0,
                "isoflop_bootstrap >= 0",
                self.isoflop_bootstrap,
            ),
            "--predict-flops": (
                budget is None or (budget > 0 and math.isfinite(budget)),
                "C > 0",
                budget,
            ),
        }
        for name, (holds, rule, value) in rules.items():
            if not holds:
                raise UserError(f"{name}: `{rule}` must hold, but got ({value})")

    def rng(self) -> np.random.Generator:
        import numpy as np

        return np.random.default_rng(self.seed)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """A flag per `FitOptions` field, its help ending in its default."""
    for option in fields(FitOptions):
        meta = option.metadata
        kwargs = dict(meta["argparse"])
        if kwargs.get("action") != "store_true":
            kwargs["default"] = None if option.default is MISSING else option.default
            if kwargs.get("action") == "append":
                kwargs["default"] = []
        shown = meta["shown"] or (
            "off"
            if kwargs.get("action") == "store_true"
            else ("none" if option.default is None else str(option.default))
        )
        parser.add_argument(flag(option.name), help=f"{meta['help']} (default: {shown})", **kwargs)


def from_args(args: argparse.Namespace) -> FitOptions:
    """The options the parsed flags of `add_arguments` set."""
    values = {}
    for option in fields(FitOptions):
        value = getattr(args, option.name)
        parse = option.metadata["parse"]
        values[option.name] = value if parse is None else parse(value)
    return FitOptions(**values)
