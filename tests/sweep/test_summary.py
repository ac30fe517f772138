"""The table `scalesweep sweep` ends with: best LR per width and trials by status (pure)."""

from rich.console import Console

from scalesweep.commands.sweep import summary_table


def body(text):
    """The cells of the table's rows (below the header's rule), split at blanks."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("─"))
    return [line.split() for line in lines[rule + 1 :] if line.strip()]


def cells_by_width(rows, width=200):
    """The rendered table as {width: [best lr, loss, trials, completed, diverged, failed]}."""
    console = Console(width=width, record=True)
    console.print(summary_table("s", rows))
    return {c[0]: c[1:] for c in body(console.export_text())}


def row(width, lr, status, loss=None):
    return {"model.width": width, "optim.lr": lr, "status": status, "final_val_loss": loss}


def test_best_lr_per_width_ignores_diverged_and_failed_trials():
    # Rule: the best LR of a width is its completed trial with the lowest final_val_loss; a
    # diverged or failed trial is counted in its column, never chosen.
    table = cells_by_width(
        [
            row(32, 0.01, "completed", 2.5),
            row(32, 0.003, "completed", 2.4),
            row(32, 0.3, "diverged"),
            row(64, 0.01, "completed", 2.2),
            row(64, 0.1, "failed"),
        ]
    )
    assert table["32"] == ["0.003", "2.4000", "3", "2", "1", "0"]
    assert table["64"] == ["0.01", "2.2000", "2", "1", "0", "1"]


def test_a_width_with_no_completed_trial_shows_no_best_lr():
    # Rule: with nothing completed there is no best LR or loss to show, only the counts.
    table = cells_by_width([row(128, 0.3, "diverged"), row(128, 1.0, "diverged")])
    assert table == {"128": ["-", "-", "2", "0", "2", "0"]}


def test_every_swept_key_but_the_lr_is_its_own_group():
    # Rule: qk-layernorm off and on are separate rows, each with its own best LR (pooled, the
    # best LR of "off" was hidden by "on"'s).
    rows = [
        {**row(64, lr, "completed", loss), "model.qk_norm": qk}
        for qk, lr, loss in [(False, 0.003, 2.5), (False, 0.03, 2.9), (True, 0.03, 2.3),
                             (True, 0.003, 2.6)]
    ]  # fmt: skip
    console = Console(width=200, record=True)
    console.print(summary_table("s", rows, ["model.qk_norm"]))
    text = console.export_text()
    assert "best learning rate per width, qk_norm" in text
    cells = {tuple(cells[:2]): cells[2] for cells in body(text)}
    assert cells == {("64", "False"): "0.003", ("64", "True"): "0.03"}


def test_two_grouped_keys_fit_80_columns_uncut():
    # Rule: at 80 columns (a pipe, a log) every header and value shows whole: long names
    # break at their underscores (final_ / val_loss), nothing ends in "…".
    rows = [
        {**row(128, 0.00343, "completed", 2.0576), "model.qk_norm": True, "optim.wd": 0.1},
        {**row(128, 0.3, "diverged"), "model.qk_norm": True, "optim.wd": 0.1},
    ]
    console = Console(width=80, record=True)
    console.print(summary_table("quickstart", rows, ["model.qk_norm", "optim.wd"]))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80, text
    assert "final_" in text and "val_loss" in text and "completed" in text, text
    assert body(text) == [["128", "True", "0.1", "0.00343", "2.0576", "2", "1", "1", "0"]]
