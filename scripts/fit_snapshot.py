"""Write `scalesweep fit --kind all --json` on fixed sources, or compare two such snapshots.

A refactor of the fitter must not move a number. Take a snapshot before, another after, and
compare them:

    python scripts/fit_snapshot.py write /tmp/before [--sweep quickstart --tracking-uri URI]
    ... change the code ...
    python scripts/fit_snapshot.py write /tmp/after  [--sweep quickstart --tracking-uri URI]
    python scripts/fit_snapshot.py compare /tmp/before /tmp/after

The sources: Epoch's Chinchilla points, each of Porian et al.'s 14 configurations, the Step
Law grid (all from tests/data), and optionally a sweep in an MLflow store. `compare` exits 1
naming every value that differs (numbers compared to 12 significant digits).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PREDICT = ("--predict-flops", "1e21")


def _sources(tmp: Path) -> dict[str, list[str]]:
    import pandas as pd

    for name in ("chinchilla_fig4_epoch_extracted.csv", "steplaw_dense_lr_bs_loss.csv"):
        shutil.copy(DATA / name, tmp / name)  # relative names: the same in every checkout
    sources = {
        "chinchilla": [
            *("chinchilla_fig4_epoch_extracted.csv", "--col", "params=Model Size"),
            *("--col", "flops=Training FLOP", "--predict-flops", "5.76e23"),
        ],
        "steplaw": ["steplaw_dense_lr_bs_loss.csv", "--col", "loss=smooth loss"],
    }
    porian = pd.read_csv(DATA / "porian2024_isoflop_runs.csv")
    for index, (config, runs) in enumerate(porian.groupby("config", sort=True)):
        name = f"porian{index:02d}.csv"
        runs.drop(columns="config").to_csv(tmp / name, index=False)
        sources[f"porian/{config}"] = [name, *PREDICT]
    return sources


def _fit(args: list[str], cwd: Path) -> Any:
    cmd = [sys.executable, "-m", "scalesweep", "fit", *args, "--kind", "all", "--json"]
    # The code beside this script, whichever checkout is installed.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if done.returncode != 0:
        return {"exit": done.returncode, "stderr": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout)


def write(out: Path, sweep: str | None, tracking_uri: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sources = _sources(Path(tmp))
        if sweep is not None:
            sources[f"sweep/{sweep}"] = [sweep, "--tracking-uri", str(tracking_uri)]
        snapshot = {}
        for name, args in sources.items():
            snapshot[name] = _fit(args, Path(tmp))
            print(f"{name}: {'ok' if 'exit' not in snapshot[name] else snapshot[name]}")
    (out / "snapshot.json").write_text(json.dumps(snapshot, indent=1, sort_keys=True))


def _differences(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = [f"{where}.{k}: only in the first" for k in a.keys() - b.keys()]
        found += [f"{where}.{k}: only in the second" for k in b.keys() - a.keys()]
        for key in a.keys() & b.keys():
            found += _differences(a[key], b[key], f"{where}.{key}")
        return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items against {len(b)}"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in _differences(x, y, f"{where}[{i}]")]
    both_numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if both_numbers and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300):
        return []
    return [] if a == b else [f"{where}: {a!r} against {b!r}"]


def compare(first: Path, second: Path) -> int:
    a = json.loads((first / "snapshot.json").read_text())
    b = json.loads((second / "snapshot.json").read_text())
    found = _differences(a, b, "")
    for line in found:
        print(line)
    print(f"{len(found)} difference(s) over {len(a)} sources")
    return 1 if found else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write DIR/snapshot.json")
    w.add_argument("out", type=Path)
    w.add_argument("--sweep", default=None, help="also fit this MLflow sweep")
    w.add_argument("--tracking-uri", default=None)
    c = sub.add_parser("compare", help="compare two snapshots")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = parser.parse_args()
    if args.command == "write":
        write(args.out, args.sweep, args.tracking_uri)
        return 0
    return compare(args.first, args.second)


if __name__ == "__main__":
    sys.exit(main())
