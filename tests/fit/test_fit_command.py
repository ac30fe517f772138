"""`scalesweep fit` end to end: CSV/Parquet/MLflow sources, JSON keys, outputs, exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalesweep import tracking
from scalesweep.commands.fit import main
from scalesweep.sources import read_runs
from tests.sweep_runs import fit_json, write_sweep

DATA = Path(__file__).parents[1] / "data"
CHINCHILLA = str(DATA / "chinchilla_fig4_epoch_extracted.csv")
CHINCHILLA_COLS = ["--col", "params=Model Size", "--col", "flops=Training FLOP"]


def lr_sweep_rows() -> list[dict]:
    """A small LR × width sweep as the sweep would record it (one diverged run)."""
    rows = []
    for width in (32, 64, 128):
        for i, lr in enumerate((1e-3, 3e-3, 1e-2, 3e-2, 1e-1)):
            diverged = width == 128 and lr == 1e-1
            loss = 3.0 + 0.2 * math.log(lr / (3e-2 * 32 / width)) ** 2 - 0.1 * math.log2(width)
            rows.append(
                {
                    "trial_id": f"w{width}-lr{i}",
                    "status": "diverged" if diverged else "completed",
                    "model.width": width,
                    "model.qk_norm": True,
                    "optim.lr": lr,
                    "init_loss": 5.5,
                    "final_val_loss": None if diverged else loss,
                    "params": 1000.0 * width**2,
                    "flops": 6e9 * width**2,
                }
            )
    return rows


def test_parametric_json_has_stable_keys_and_derives_tokens(capsys):
    # Rule: --json prints one object with E, A, B, alpha, beta, a, b, n_points, objective, ci;
    # tokens is derived from flops and the note says so.
    data = fit_json([CHINCHILLA, "--kind", "parametric", *CHINCHILLA_COLS, "--bootstrap", "20"],
                    capsys)  # fmt: skip
    assert {"E", "A", "B", "alpha", "beta", "a", "b", "n_points", "objective", "ci"} <= set(data)
    assert set(data["ci"]) >= {"E", "A", "B", "alpha", "beta"}
    assert data["n_points"] == 245
    assert any("flops / (6·params)" in note for note in data["notes"])


def test_isoflop_json_lists_budgets_with_reasons(tmp_path, capsys):
    # Rule: isoflop JSON has a, b, a_ci, b_ci and budgets with flops, n_opt, d_opt, loss_opt,
    # n_points, excluded, reason.
    porian = pd.read_csv(DATA / "porian2024_isoflop_runs.csv")
    path = tmp_path / "runs.parquet"
    porian[porian["config"] == "rw/tuned/short/const/standard/val"].to_parquet(path)
    data = fit_json([str(path), "--kind", "isoflop"], capsys)
    assert data["a"] == pytest.approx(0.497, abs=0.05)
    assert len(data["a_ci"]) == 2 and len(data["b_ci"]) == 2
    keys = {"flops", "n_opt", "d_opt", "loss_opt", "n_points", "excluded", "reason"}
    keys.add("centre_offset")
    assert all(set(b) == keys for b in data["budgets"])


def test_all_writes_outputs_and_says_what_was_skipped(tmp_path, capsys):
    # Rule: --kind all runs the fits whose columns exist, lists the skipped ones with a reason,
    # and --out writes fit.json, the plots and a report embedding them; --predict-flops adds
    # N, D and loss with CI.
    out = tmp_path / "out"
    data = fit_json([CHINCHILLA, *CHINCHILLA_COLS, "--out", str(out), "--bootstrap", "20",
                     "--predict-flops", "5.76e23"], capsys)  # fmt: skip
    assert {"parametric", "isoflop", "power-law"} <= set(data["fits"])
    assert "lr" in data["skipped"]["lr-sensitivity"]
    prediction = data["prediction"]["parametric"]
    assert prediction["ci"]["n_opt"][0] < prediction["n_opt"] < prediction["ci"]["n_opt"][1]
    assert json.loads((out / "fit.json").read_text()) == data
    report = (out / "report.md").read_text()
    for name in ("isoflop_curves.png", "isoflop_optimal.png", "parametric_contours.png"):
        assert (out / name).stat().st_size > 1000
        assert f"]({name})" in report


def test_mlflow_source_reads_children_and_logs_back(tmp_path, capsys, monkeypatch):
    # Rule: an MLflow experiment is read as its trial child runs (params converted back from
    # strings, diverged runs kept), and --out logs the outputs and headline numbers to the
    # latest parent run.
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts of a SQLite store under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    trials = [
        {
            "name": row["trial_id"],
            "params": {**{k: v for k, v in row.items() if "." in k}, "model.z_loss": None},
            "summary": {k: row[k] for k in ("init_loss", "final_val_loss", "params", "flops")},
            "status": row["status"],
        }
        for row in lr_sweep_rows()
    ]
    parent = write_sweep(uri, "lrs", trials, spool_dir=tmp_path / "spool")
    table = tracking.runs_table("lrs", uri)
    assert len(table) == 15 and (table["status"] == "diverged").sum() == 1
    assert table["model.width"].dtype.kind in "iu" and table["model.qk_norm"].dtype == bool
    assert table["model.z_loss"].isna().all()
    assert tracking.latest_parent_run_id("lrs", uri) == parent

    out = tmp_path / "out"
    data = fit_json(["lrs", "--tracking-uri", uri, "--kind", "lr-sensitivity", "--out", str(out)],
                    capsys)  # fmt: skip
    assert [g["model.width"] for g in data["groups"]] == [32, 64, 128]
    assert data["groups"][2]["n_diverged"] == 1
    assert data["transfer_exponent"][0]["k"] == pytest.approx(-1.0, abs=0.35)
    logged = {f.path for f in client.list_artifacts(parent, "fit")}
    assert {"fit/fit.json", "fit/report.md", "fit/lr_sensitivity.png"} <= logged
    assert "fit.lr_transfer.k.0" in client.get_run(parent).data.metrics


def test_lr_sensitivity_from_csv_with_group_by_and_range(tmp_path, capsys):
    # Rule: --group-by and --lr-range reach the fit; group columns appear in each group.
    path = tmp_path / "runs.csv"
    pd.DataFrame(lr_sweep_rows()).to_csv(path, index=False)
    data = fit_json([str(path), "--kind", "lr-sensitivity", "--group-by", "model.width",
                     "--lr-range", "1e-3", "1e-2"], capsys)  # fmt: skip
    assert all(g["n_lr"] == 3 for g in data["groups"])
    assert data["lr_range"] == [1e-3, 1e-2]


@pytest.mark.parametrize(
    ("make", "args", "needle"),
    [
        # a parametric fit with neither tokens nor flops names `tokens`
        (lambda: pd.DataFrame({"params": [1e8] * 8, "loss": [3.0] * 8}), ["--kind", "parametric"],
         "`tokens`"),
        (lambda: pd.DataFrame({"params": [0.0] * 8, "tokens": [1e9] * 8, "loss": [3.0] * 8}),
         ["--kind", "parametric"], "`params > 0`"),
        (lambda: pd.DataFrame({"flops": [1e18] * 4, "params": [1e8] * 4,
                               "loss": [3.0, np.nan, 3.0, 3.0]}), ["--kind", "isoflop"], "`loss`"),
        (lambda: pd.DataFrame({"params": [1e8] * 3, "tokens": [1e9] * 3, "loss": [3.0] * 3}),
         ["--kind", "parametric"], "at least 6"),
        (lambda: pd.DataFrame({"lr": [1e-3], "loss": [3.0]}), ["--kind", "lr-sensitivity"],
         "init_loss"),
        (lambda: pd.DataFrame({"params": [1e8]}), ["--col", "loss=Loss"], "'Loss'"),
        (lambda: pd.DataFrame({"x": [1.0]}), ["--kind", "all"], "no fit could run"),
        # --n-col names a column the table lacks
        (lambda: pd.DataFrame({"params": [1e8] * 8, "tokens": [1e9] * 8, "loss": [3.0] * 8}),
         ["--kind", "parametric", "--n-col", "params_nonembed"], "`params_nonembed`"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_column(tmp_path, capsys, make, args, needle):
    # Rule: every bad-input case is exit code 2 with "error: ..." naming the column, no traceback.
    path = tmp_path / "runs.csv"
    make().to_csv(path, index=False)
    code = main(["fit", str(path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and needle in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("source", "needle"),
    [("missing.csv", "does not exist"), ("no-such-sweep", "no-such-sweep")],
)
def test_unknown_source_exits_2(tmp_path, capsys, monkeypatch, source, needle):
    # Rule: a missing file or an unknown MLflow experiment is a UserError naming it.
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["fit", str(tmp_path / source) if source.endswith(".csv") else source,
                 "--tracking-uri", uri])  # fmt: skip
    assert code == 2 and needle in capsys.readouterr().err


def test_read_runs_applies_aliases_and_overrides():
    # Rule: canonical columns come from --col first, then the aliases (N -> params, D -> tokens).
    runs = read_runs(str(DATA / "steplaw_dense_lr_bs_loss.csv"), columns={"loss": "smooth loss"})
    assert (runs["params"] == runs["N"]).all() and (runs["tokens"] == runs["D"]).all()
    assert (runs["loss"] == runs["smooth loss"]).all()


def test_command_module_imports_no_heavy_library():
    # Rule: importing the fit command (what `scalesweep --help` does) loads none of pandas,
    # numpy, scipy, statsmodels, matplotlib or mlflow; they load inside `run`.
    import subprocess
    import sys

    heavy = ("pandas", "numpy", "scipy", "statsmodels", "matplotlib", "mlflow")
    code = f"import sys, scalesweep.commands.fit; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_standalone_main_parses_like_the_cli(capsys):
    # Rule: an unknown --kind is an argparse usage error (exit 2), not a traceback.
    with pytest.raises(SystemExit) as info:
        main(["fit", CHINCHILLA, "--kind", "nope"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "content"), [("runs.parquet", b"not parquet"), ("runs.csv", b"")])
def test_unreadable_file_exits_2(tmp_path, capsys, name, content):
    # Rule: a file pandas cannot parse is a UserError naming the file, not a traceback.
    path = tmp_path / name
    path.write_bytes(content)
    code = main(["fit", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read" in err and name in err and "Traceback" not in err


def test_text_says_which_n_c_and_runs(tmp_path, capsys):
    # Rule: the text summary of a fit states which N, which C convention and which runs it
    # used (here a kaplan sweep: N = params_nonembed). Failed before issue 13 (finding 7): the
    # text said none of it and N was the total count.
    rows = []
    for width in (128, 192, 256, 384, 512, 768):
        nonembed = 48 * width**2
        for d in np.geomspace(1e8, 1e11, 6):
            loss = 1.8 + 400 / nonembed**0.34 + 2000 / d**0.37
            rows.append({"params": nonembed + 1e5 * width, "params_nonembed": nonembed,
                         "tokens": d, "flops": 6 * nonembed * d, "final_val_loss": loss,
                         "train.flop_counting": "kaplan", "status": "completed"})  # fmt: skip
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert main(["fit", str(path), "--kind", "parametric", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "N = `params_nonembed` (train.flop_counting = kaplan)" in out
    assert "C counted as kaplan" in out and "best run per (N, D) cell: 36 cells" in out


def test_every_fit_option_is_a_flag_with_help_and_its_default():
    # Rule: `scalesweep fit`'s flags come from FitOptions (one place for the options): every
    # field is a flag, and every argument of the command has help text that states its default.
    from dataclasses import fields

    from scalesweep.cli import build_parser
    from scalesweep.fit.options import FitOptions, flag

    parser = build_parser(("scalesweep.commands.fit",))
    command = next(a for a in parser._actions if a.dest == "command").choices["fit"]
    arguments = {(a.option_strings or [a.dest])[-1]: a for a in command._actions}
    assert {flag(f.name) for f in fields(FitOptions)} <= set(arguments)
    for name, action in arguments.items():
        if name != "--help":
            assert action.help and ("default" in action.help or "required" in action.help), name
