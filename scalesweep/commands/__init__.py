"""Subcommands of the `scalesweep` CLI; see `scalesweep.cli`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_config_args(parser: argparse.ArgumentParser, *, what: str, example: str) -> None:
    """The positional config file and the repeatable `--set dotted.key=value` override."""
    parser.add_argument("config", type=Path, help=f"{what} (see search_spaces/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a dotted key, e.g. --set {example} (repeatable)",
    )
