"""`scalesweep train CONFIG.yaml [--set k=v ...] [--out DIR]`: one run, no Ray needed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import IO, Any

from scalesweep.callbacks import Callback
from scalesweep.commands import add_config_args


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one model from a config file",
        description="Train one model. Every search space in the file must be pinned with --set.",
    )
    add_config_args(parser, what="YAML config", example="optim.lr=3e-3")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory for metrics.jsonl, summary.json, config.yaml and checkpoints "
        "(default: runs/train/<name>)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint directory (OUT/checkpoints/latest)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


class JsonlMetrics(Callback):
    """Appends every logged step as one JSON line."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.stream.write(json.dumps({"step": step, **metrics}) + "\n")
        self.stream.flush()


class ProgressBar(Callback):
    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.bar.update(step - self.bar.n)
        from scalesweep import metrics as m

        shown = {
            k.split("/")[-1]: f"{v:.4g}"
            for k, v in metrics.items()
            if k in (m.TRAIN_LOSS, m.VAL_LOSS, m.TOKENS_PER_S)
        }
        self.bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    import yaml

    from scalesweep.config import total_steps
    from scalesweep.experiment import load_experiment

    experiment = load_experiment(args.config, args.overrides)
    config = experiment.resolve()  # raises, naming the key, if a search space is left unpinned
    out = args.out or Path("runs") / "train" / config.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )

    from scalesweep.train import train  # torch loads only after the config is valid

    with (out / "metrics.jsonl").open("a" if args.resume else "w") as stream:
        callbacks: list[Any] = [JsonlMetrics(stream)]
        bar = None if args.quiet else ProgressBar(total_steps(config))
        if bar is not None:
            callbacks.append(bar)
        try:
            summary = train(
                config,
                checkpoint_dir=out / "checkpoints",
                resume_from=args.resume,
                callbacks=callbacks,
            )
        finally:
            if bar is not None:
                bar.close()
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    final = summary.final_val_loss
    print(
        f"{summary.status}: init_loss {summary.init_loss:.4f} -> final_val_loss "
        f"{'n/a' if final is None else f'{final:.4f}'} after {summary.steps} steps "
        f"({summary.tokens_per_s:,.0f} tok/s); wrote {out}"
    )
    if summary.reason:
        print(f"reason: {summary.reason}")
    return 0
