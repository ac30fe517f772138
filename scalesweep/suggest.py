"""Hints for a mistyped key: the keys a config section knows, and the closest to a typo.

>>> did_you_mean("qknorm", known_keys(["model"]))
' (did you mean model.qk_norm?)'
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from scalesweep.config import ExperimentConfig


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation allows (through Optional, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def known_keys(section: Sequence[str]) -> list[str]:
    """The dotted keys one level under `section` (e.g. ["model"] -> model.width, ...); [] for
    the top level gives the sections. Empty when `section` is not a section."""
    models: list[type[BaseModel]] = [ExperimentConfig]
    for part in section:
        fields = [model.model_fields[part] for model in models if part in model.model_fields]
        models = [m for field in fields for m in _models(field.annotation)]
    prefix = "".join(f"{part}." for part in section)
    names = dict.fromkeys(name for model in models for name in model.model_fields)
    return [prefix + name for name in names]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean X?)` for the closest of `choices` to `word` (last dotted parts compared),
    or ""."""
    by_leaf = {choice.rsplit(".", 1)[-1]: choice for choice in choices}
    close = difflib.get_close_matches(word.rsplit(".", 1)[-1], list(by_leaf), n=1, cutoff=0.6)
    return f" (did you mean {by_leaf[close[0]]}?)" if close else ""
