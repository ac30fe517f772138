"""The `scalesweep` command line: one subcommand per module in `scalesweep.commands`.

Each command module exposes `add_parser(subparsers)`, which registers its parser and sets
`func(args) -> int`. Command modules import heavy libraries (torch, ray, mlflow) inside `func`,
so `--help` and input validation stay fast and nothing heavy starts before input is checked.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from scalesweep import __version__
from scalesweep.errors import UserError

COMMAND_MODULES = (
    "scalesweep.commands.train",
    "scalesweep.commands.data",
    "scalesweep.commands.sweep",
    "scalesweep.commands.fit",
)


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalesweep",
        description="Small-model sweeps on Ray, tracked in MLflow, fitted into scaling laws.",
    )
    parser.add_argument("--version", action="version", version=f"scalesweep {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        module = importlib.import_module(name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, *, modules: Sequence[str] = COMMAND_MODULES) -> int:
    """Parse `argv` and run its command. `modules` narrows the CLI to some commands, so that a
    test or script calling one command does not import the others."""
    parser = build_parser(modules)
    args, extra = parser.parse_known_args(argv)
    if extra:
        loose = [text for text in getattr(args, "overrides", []) if "=" not in text]
        if loose:  # `--set optim.lr 0.01`: the value became a stray argument
            print(
                f"error: --set {loose[0]} {extra[0]}: --set takes KEY=VALUE in one word, "
                f"e.g. --set {loose[0]}={extra[0]}",
                file=sys.stderr,
            )
            return 2
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The `scalesweep` executable: `main()`, then a quick exit. After a sweep the interpreter's
    own teardown (freeing torch, Ray and MLflow) took ~1.7 s and Ray's exit hook waited 0.5 s
    more, for nothing (docs/performance.md): so a local Ray is shut down here, the threads a
    normal exit would wait for are joined and the exit hooks run, then the process ends."""
    code = main()
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
