"""Bad input: exit 2 with the culprit named, no traceback, before Ray starts.

Every case runs the real CLI (`scalesweep.cli.main`) in one fresh Python process, which then
reports whether Ray was ever started in it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

TINY = {
    "name": "bad",
    "model": {"width": 16, "depth": 1, "head_dim": 16, "seq_len": 32},
    "train": {"steps": 5, "batch_size": 4},
}


def _yaml(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def _sweep(tmp_path: Path, name: str, **sections: dict) -> str:
    raw = {**TINY, "name": name, "storage_path": str(tmp_path / "runs")}
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return _yaml(tmp_path, name, yaml.safe_dump(raw))


def cases(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    """(case, argv, text the error must contain)."""
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bad.csv").write_bytes(b"\x00\xff" * 100)
    s = lambda name, **kw: ["sweep", _sweep(tmp_path, name, **kw)]  # noqa: E731
    return [
        ("empty file", ["sweep", _yaml(tmp_path, "empty", "")], "empty"),
        ("comments only", ["sweep", _yaml(tmp_path, "comments", "# nothing\n")], "empty"),
        ("binary file", ["sweep", str(tmp_path / "binary.yaml")], "not a text file"),
        ("missing file", ["sweep", str(tmp_path / "nope.yaml")], "cannot read"),
        ("directory", ["sweep", str(tmp_path)], "cannot read"),
        ("not YAML", ["sweep", _yaml(tmp_path, "broken", "model: [1, 2\n")], "not valid YAML"),
        ("top-level list", ["sweep", _yaml(tmp_path, "list", "- 1\n")], "top level"),
        (
            "duplicate key",
            ["sweep", _yaml(tmp_path, "dup", "optim:\n  lr: 0.1\n  lr: 0.2\n")],
            "given twice",
        ),
        ("infinite LR", s("inf", optim={"lr": 1e400}), "optim.lr"),
        ("NaN LR", ["sweep", _yaml(tmp_path, "nan", "optim:\n  lr: .nan\n")], "optim.lr"),
        ("negative LR", s("neg", optim={"lr": -0.1}), "optim.lr"),
        ("unknown key", s("typo", model={"widht": 32}), "model.widht"),
        ("unknown section", s("section", modle={"width": 32}), "modle"),
        ("wrong type", s("type", model={"width": "wide"}), "model.width"),
        ("width vs head_dim", s("heads", model={"width": 24}), "model.width % model.head_dim"),
        (
            "bad grid point",
            s("grid", model={"width": {"grid": [16, 24]}}),
            "a value of the search space at model.width",
        ),
        ("loguniform at 0", s("logu", optim={"lr": {"loguniform": [0, 0.1]}}), "low > 0"),
        (
            "infinite range",
            ["sweep", _yaml(tmp_path, "infr", "optim:\n  lr: {uniform: [0, .inf]}\n")],
            "finite",
        ),
        ("bad logspace", s("logs", optim={"lr": {"logspace": [1e-3, 1e-1]}}), "logspace"),
        (
            "space outside run sections",
            s("space", resources={"cpus_per_worker": {"grid": [1, 2]}}),
            "allowed only under",
        ),
        ("schedule type", s("sched", schedule={"type": "linear"}), "schedule"),
        ("optimizer name", s("opt", optim={"name": "sgd"}), "optim.name"),
        ("steps and tokens", s("len", train={"steps": 5, "tokens": 1000}), "train.steps"),
        (
            "micro-batch",
            s("micro", train={"batch_size": 6, "micro_batch_size": 4}),
            "micro_batch_size",
        ),
        (
            "batch vs ranks",
            s("ranks", train={"batch_size": 3}, resources={"workers_per_trial": 2}),
            "workers_per_trial=2",
        ),
        ("TPE without sampled keys", s("tpe", search={"algorithm": "tpe"}), "search.algorithm"),
        (
            "empty budget shapes",
            s("budget", budget={"flops": [1e12], "shapes": []}),
            "budget.shapes",
        ),
        ("missing data", s("data", data={"path": str(tmp_path / "none")}), "data.path"),
        ("vocab below the data's", s("vocab", model={"vocab_size": 100}), "model.vocab_size"),
        ("storage URL", s("storage", storage_path="s3://bucket/runs"), "storage_path"),
        (
            "tracking folder",
            s("track", tracking={"uri": f"sqlite:///{tmp_path}/no/m.db"}),
            "tracking.uri",
        ),
        ("bad --set", ["sweep", _sweep(tmp_path, "set"), "--set", "optim.lr"], "--set"),
        (
            "--resume with --restart",
            ["sweep", _sweep(tmp_path, "both"), "--resume", "--restart"],
            "contradict",
        ),
        (
            "--resume of nothing",
            ["sweep", _sweep(tmp_path, "fresh"), "--resume"],
            "no sweep named",
        ),
        (
            "train with a space",
            ["train", _sweep(tmp_path, "train", optim={"lr": {"grid": [1e-3, 1e-2]}})],
            "optim.lr is a search space",
        ),
        (
            "fit of a missing store",
            ["fit", "nosuch", "--tracking-uri", f"sqlite:///{tmp_path}/x.db"],
            "no MLflow store",
        ),
        ("fit of a binary CSV", ["fit", str(tmp_path / "bad.csv")], "cannot read"),
        ("export suffix", ["export", "s", "--out", str(tmp_path / "runs.txt")], "--out"),
        *quick_cases(tmp_path, s),
    ]


def _bomb(tmp_path: Path, name: str, key: str) -> list[str]:
    """A ~400-byte "billion laughs" file: 9 levels of 9 aliases under one value."""
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    section, leaf = key.split(".")
    text = "\n".join(["name: bomb", "x:", *(f"  {line}" for line in levels)])
    return ["sweep", _yaml(tmp_path, name, f"{text}\n{section}:\n  {leaf}: {{grid: *a8}}\n")]


def quick_cases(tmp_path: Path, s: Any) -> list[tuple[str, list[str], str]]:
    """Inputs that used to start Ray or eat memory (issue 22): each must be refused in well
    under a second (`test_every_bad_input...` checks the time and the process's memory)."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    return [
        ("seq_len over the split", s("seq", model={"seq_len": 200000}), "validation split"),
        ("alias bomb in model.width", _bomb(tmp_path, "bomb1", "model.width"), "aliases"),
        ("alias bomb in optim.lr", _bomb(tmp_path, "bomb2", "optim.lr"), "aliases"),
        (
            "100,000-point logspace",
            s("huge1", optim={"lr": {"logspace": [1e-5, 1e-1, 100000]}}),
            "search.max_trials",
        ),
        (
            "1000 × 100 grid",
            s(
                "huge2",
                optim={"lr": {"logspace": [1e-5, 1e-1, 1000]}},
                train={"seed": {"grid": list(range(100))}},
            ),
            "100,000 trials",
        ),
        ("tracking server down", s("down", tracking={"uri": down}), "tracking.uri: no MLflow"),
        # the first hour's typos: named, with the closest right spelling
        ("misspelt space", s("gird", optim={"lr": {"gird": [0.1]}}), "did you mean grid?"),
        (
            "unknown section with a space",
            s("optimizer", optimizer={"lr": {"grid": [0.1]}}),
            "optimizer: unknown section (did you mean optim?)",
        ),
        ("typo", s("qknorm", model={"qknorm": True}), "did you mean model.qk_norm?"),
        (
            "--set with a space",
            [*s("spaced"), "--set", "optim.lr", "0.01"],
            "--set optim.lr=0.01",
        ),
    ]


HARNESS = textwrap.dedent(
    """
    import contextlib, io, json, resource, sys, time
    from scalesweep.cli import main
    results = []
    for name, argv, needle in json.loads(sys.argv[1]):
        err = io.StringIO()
        started = time.monotonic()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            crash = None
        except BaseException as error:  # a traceback would escape main
            code, crash = None, repr(error)
        results.append([name, code, err.getvalue(), needle, crash, time.monotonic() - started])
    ray = sys.modules.get("ray")
    started = bool(ray is not None and ray.is_initialized())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"results": results, "ray_started": started, "peak_mb": peak_mb}))
    """
)


def test_every_bad_input_exits_2_naming_the_culprit_before_ray_starts(tmp_path, monkeypatch):
    # Rule: each bad input gives exit code 2 and an `error:` line containing the named key,
    # value or rule; nothing raises out of the CLI; Ray is never started.
    monkeypatch.chdir(tmp_path)
    table = cases(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", HARNESS, json.dumps(table)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "SCALESWEEP_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    wrong = [
        f"{name}: exit {code}, crash {crash}, stderr {err[:200]!r}"
        for name, code, err, needle, crash, _ in report["results"]
        if code != 2 or crash or needle not in err or not err.startswith("error:")
    ]
    assert not wrong, "\n".join(wrong)
    assert not report["ray_started"]
    # The bombs and huge grids are refused from the file's size, not after expanding it: in
    # seconds (they took minutes and gigabytes), the whole process under 1 GB.
    quick = {name for name, *_ in quick_cases(tmp_path, lambda name, **kw: [])}
    slow = [(name, round(t, 1)) for name, *_, t in report["results"] if name in quick and t > 3]
    assert not slow, slow
    assert report["peak_mb"] < 1024, report["peak_mb"]
    assert not (tmp_path / "x.db").exists()  # reading a missing store does not create it
    assert len(report["results"]) >= 35
