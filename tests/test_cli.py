"""`scalesweep train` from the command line: outputs, bad configs, exit codes."""

import json

import pytest

from scalesweep.cli import main


def test_pulse_yaml_trains_from_the_cli(tmp_path, capsys):
    # Rule: the shipped pulse config trains once its LR grid is pinned, and writes its outputs.
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "search_spaces/pulse.yaml",
            "--set",
            "optim.lr=0.01",
            "--set",
            "train.steps=30",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "init_loss",
        "final_val_loss",
        "status",
        "params",
        "params_nonembed",
        "tokens",
        "flops",
        "tokens_per_s",
    ):
        assert key in summary
    assert summary["final_val_loss"] < summary["init_loss"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["step"] == 0


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--set", "optim.lrr=0.1"], ["optim.lrr", "unknown key"]),
        (["--set", "optim.lr=0.01", "--set", "model.width=wide"], ["model.width", "'wide'"]),
        (["--set", "optim.lr=-0.01"], ["optim.lr", "-0.01", "greater than 0"]),
        ([], ["optim.lr", "--set optim.lr="]),  # the grid is not pinned
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path, capsys, args, needles):
    # Rule: unknown key, wrong type, negative LR, unpinned search space -> exit 2, key named.
    code = main(["train", "search_spaces/pulse.yaml", *args, "--out", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("command", "flags", "switch"),
    [
        ("sweep", ["--target-width", "0.2"], "--adaptive"),
        ("sweep", ["--max-flops", "1e15", "--next", "0"], "--adaptive"),
        ("sweep", ["--objective", "loss"], "--adaptive"),
        ("plan", ["--target-flops", "1e19"], "--next"),
        ("plan", ["--objective", "loss"], "--next"),
    ],
)
def test_an_option_without_the_switch_it_steers_is_refused_not_ignored(
    capsys, command, flags, switch
):
    # Rule: the options of adaptive rounds without --adaptive, of `plan --next` without --next,
    # exit 2 naming them and the switch, before anything runs (they used to be ignored).
    assert main([command, "search_spaces/quickstart.yaml", *flags]) == 2
    err = capsys.readouterr().err
    named, rule = err.removeprefix("error: ").split(": ", 1)
    assert sorted(named.split(", ")) == sorted(f for f in flags if f.startswith("--")), err
    assert rule.startswith(f"only apply with {switch}; add {switch}, or drop them"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["sweep", "plan", "export", "fit", "train", "data"])
def test_every_flag_has_help_and_the_command_a_description(command):
    # Rule: `--help` explains every flag and the command; the fit flags end with their default.
    from scalesweep.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    assert sub.description, f"{command} --help has no description"
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help"
        if command == "fit" and action.option_strings and action.dest != "help":
            assert "default:" in action.help, f"fit {action.option_strings}: no default"


def test_printed_commands_run_as_printed_without_the_venv_on_path(tmp_path, monkeypatch):
    # Rule: the commands the sweep prints for copy and paste (`mlflow ui`, `scalesweep fit`)
    # run from a shell that has not activated .venv (the README's setup does not).
    import shlex
    import subprocess
    from types import SimpleNamespace

    from scalesweep.commands.sweep import closing_lines

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    outcome = SimpleNamespace(tracking_uri=f"sqlite:///{tmp_path / 'db'}", parent_run_id="p1")
    lines = closing_lines("s", "7", outcome, None)
    for label in ("start the UI:", "full fit:"):
        (line,) = [line for line in lines if label in line]
        program = shlex.split(line.split(label, 1)[1])[0]
        done = subprocess.run([program, "--version"], capture_output=True, timeout=120)
        assert done.returncode == 0, (line, done.stderr[-500:])


def test_plan_shows_every_swept_key_and_whole_numbers_at_80_columns(capsys, monkeypatch):
    # Rule: `scalesweep plan` has a column for each swept key (wsd_cooldown: the cooldown
    # fraction and shape, which the trial names leave out) and cuts no number at 80 columns.
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["plan", "search_spaces/wsd_cooldown.yaml"]) == 0
    out = capsys.readouterr().out
    assert "fraction" in out and "shape" in out and "1-sqrt" in out
    assert "…" not in out and "1.26e14" in out
    assert max(len(line) for line in out.splitlines()) <= 80
