"""Subcommands of the `scalesweep` CLI; see `scalesweep.cli`."""
