"""The tables the sweep commands print: a plan's trials and cooldown branches, and the closing
summary of a finished sweep (best LR per group, trials by status)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def si(count: int) -> str:
    """3 significant digits with k/M/G/T: 4852992 -> 4.85M."""
    for power, suffix in ((12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if count >= 10**power:
            return f"{count / 10**power:.3g}{suffix}"
    return str(count)


def plan_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plan_table(plan: Any, experiment: Any) -> Any:
    """One row per trial: its name, every key the sweep varies (sampled keys say so), size,
    tokens, FLOPs and steps. Numbers fold onto a second line in a narrow terminal rather than
    being cut ("3.908e+…")."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"{experiment.config.name}: {len(plan.trials)} cells × "
        f"{plan.samples_per_cell} sample(s) = {plan.n_trials} trials",
        box=box.SIMPLE_HEAD,  # no rules between columns: room for the numbers at 80 columns
        collapse_padding=True,
    )
    # tokens and steps have their own columns (an isoFLOP budget sets them)
    swept = [k for k in grouped_keys(plan) if k not in ("train.tokens", "train.steps")]
    swept = [*(k for k in ("model.width", "optim.lr") if k not in swept), *swept]
    swept += [k for k in plan.sampled_keys if k not in swept]
    sampled = set(plan.sampled_keys)
    rows = []
    for trial in plan.trials:
        tree = trial.config.model_dump()
        values = [
            "sampled" if key in sampled else plan_value(tree[key.split(".")[0]][key.split(".")[1]])
            for key in swept
        ]
        sizes = [
            si(trial.params),
            si(trial.tokens),
            f"{trial.flops:.3g}".replace("e+", "e"),
            str(trial.steps),
        ]
        rows.append([trial.name, *values, *sizes])
    names = ["trial", *(k.split(".")[-1] for k in swept), "params", "tokens", "FLOPs", "steps"]
    table.add_column(names[0], overflow="fold", min_width=6)  # the name may fold
    for i, name in enumerate(names[1:], start=1):
        add_uncut_column(table, name, [r[i] for r in rows])
    for row in rows:
        table.add_row(*row)
    return table


HEADER_WIDTH = 8
"""A column header longer than this breaks at its underscores."""


def add_uncut_column(table: Any, name: str, values: Sequence[str]) -> None:
    """A right-aligned column whose values are never cut ("3.908e+…"): a long name breaks at
    its underscores instead (cooldown_ / fraction), so more columns fit 80 characters."""
    lines: list[str] = []
    for part in re.findall(r"[^_]*_|[^_]+$", name):  # final_val_loss -> final_ / val_loss
        if lines and len(lines[-1] + part) <= HEADER_WIDTH:
            lines[-1] += part
        else:
            lines.append(part)
    width = max(*(len(line) for line in lines), *(len(v) for v in values))
    table.add_column("\n".join(lines), justify="right", no_wrap=True, min_width=width)


def branch_table(plan: Any) -> Any:
    from rich.table import Table

    from scalesweep.branches import cooldown_flops

    table = Table(title="cooldown branches (forked from their trunk at the fork step)")
    for column in ("trunk", "branch", "tokens", "fork step", "steps", "cooldown FLOPs"):
        table.add_column(column, justify="left" if column in ("trunk", "branch") else "right")
    for trial in plan.trials:
        per_step = trial.flops / trial.steps
        for branch in trial.branches:
            cooldown = cooldown_flops(branch, per_step)
            table.add_row(
                trial.name,
                branch.name,
                f"{branch.tokens:,}",
                str(branch.fork_step),
                str(branch.steps),
                f"{cooldown:.3e}",
            )
    return table


def summary_table(name: str, rows: list[dict[str, Any]], keys: Sequence[str] = ()) -> Any:
    """Best LR per group and the count of trials by status. A group is one value of the width
    and of each of `keys` (the other swept keys but the LR and the seed): pooling what was swept
    would hide it (qk-layernorm off and on, each with its own best LR)."""
    from rich import box
    from rich.table import Table

    from scalesweep import metrics as m

    columns = ["model.width", *(k for k in keys if k != "model.width")]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k, "-") for k in columns)].append(row)
    shown = [k.split(".")[-1] for k in columns]
    table = Table(  # no rules between columns, as the plan's: it fits 80 characters
        title=f"{name}: best learning rate per {', '.join(shown)}",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
    )
    cells = []
    for group in sorted(groups, key=lambda g: [(isinstance(v, str), str(v)) for v in g]):
        members = groups[group]
        done = [
            r
            for r in members
            if r[m.STATUS] == m.COMPLETED
            and r[m.FINAL_VAL_LOSS] is not None
            and math.isfinite(r[m.FINAL_VAL_LOSS])
        ]
        best = min(done, key=lambda r: r[m.FINAL_VAL_LOSS]) if done else None
        counts = [str(sum(r[m.STATUS] == s for r in members)) for s in m.ENDED_STATUSES]
        lr = f"{best['optim.lr']:.3g}" if best and "optim.lr" in best else "-"
        loss = f"{best[m.FINAL_VAL_LOSS]:.4f}" if best else "-"
        cells.append([*(str(v) for v in group), lr, loss, str(len(members)), *counts])
    headers = (*shown, "best lr", m.FINAL_VAL_LOSS, "trials", *m.ENDED_STATUSES)
    for i, header in enumerate(headers):
        add_uncut_column(table, header, [line[i] for line in cells])
    for line in cells:
        table.add_row(*line)
    return table


def grouped_keys(plan: Any) -> list[str]:
    """The swept grid keys the closing table groups by: all but the LR and the seed."""
    keys: list[str] = []
    for trial in plan.trials:
        keys += [k for k in trial.cell if k not in keys and k not in ("optim.lr", "train.seed")]
    return keys
