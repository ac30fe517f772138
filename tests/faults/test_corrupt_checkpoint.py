"""A checkpoint cut short (a crash mid-write, a full disk), then the trial killed, on both paths.

Before: the restarted trial loaded the truncated `state.pt`, failed, was restarted onto the same
file until it ran out of retries and ended `failed` (in place), or failed although older
checkpoints existed (Ray Train). Now a checkpoint is written atomically with its SHA-256 and
checked on load; one that does not load is set aside (renamed, named in the trial's log and in
the run's `scalesweep.checkpoint_set_aside` tag) and the trial goes on from the newest one that
loads, or from step 0, with every point once.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from scalesweep import checkpoint
from scalesweep.experiment import parse_experiment
from scalesweep.train import Trainer
from tests.faults.conftest import (
    DISTRIBUTED,
    TINY,
    assert_every_point_once,
    children,
    driver,
    kill_titled,
    last_step,
    pids_titled,
    sweep_file,
    tracking_uri,
    wait_until,
)

TRAIN = {"micro_batch_size": 2, "log_every": 10, "eval_every": 50, "checkpoint_every": 50}


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _trainer(folder: Path, steps: int) -> Trainer:
    raw = {**TINY, "train": {**TINY["train"], **TRAIN, "steps": steps}, "name": "ckpt"}
    return Trainer(parse_experiment(raw).resolve(), checkpoint_dir=folder)


def test_unreadable_latest_is_set_aside_and_the_previous_one_loads(tmp_path):
    # Rule: with `latest` truncated (or its bytes changed), resume_newest sets it aside, names
    # the file, and resumes from `previous`; with both bad, from step 0.
    _trainer(tmp_path, 100).run()
    latest, previous = tmp_path / "latest", tmp_path / checkpoint.PREVIOUS
    assert not (tmp_path / "latest.tmp").exists()
    _truncate(latest / checkpoint.STATE_FILE)
    trainer = _trainer(tmp_path, 100)
    notes = trainer.resume_newest([latest, previous])
    assert trainer.state.step == 50, notes
    assert len(notes) == 1 and str(latest / checkpoint.STATE_FILE) in notes[0]
    assert (tmp_path / "latest.unreadable" / "state.pt").is_file() and not latest.exists()
    # a flipped byte that torch might still read is caught by the checksum
    data = bytearray((previous / checkpoint.STATE_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (previous / checkpoint.STATE_FILE).write_bytes(bytes(data))
    trainer = _trainer(tmp_path, 100)
    notes = trainer.resume_newest([latest, previous])
    assert trainer.state.step == 0 and len(notes) == 1 and "SHA-256" in notes[0]


def test_only_rank_0_sets_aside_so_it_always_names_the_file(tmp_path):
    # Rule: another rank that meets the unreadable checkpoint first leaves it in place (and
    # loads the older one, as rank 0 will); rank 0 then sets it aside and names it. Before,
    # whichever rank came first renamed it, and rank 0, finding the folder gone, skipped it
    # without a word: the run lost its `checkpoint_set_aside` tag (seen once in CI).
    _trainer(tmp_path, 100).run()
    latest, previous = tmp_path / "latest", tmp_path / checkpoint.PREVIOUS
    _truncate(latest / checkpoint.STATE_FILE)
    cpu = torch.device("cpu")
    state, notes = checkpoint.load_newest([latest, previous], cpu, owner=False)
    assert state is not None and state["run"]["step"] == 50
    assert latest.is_dir() and len(notes) == 1 and "left for rank 0" in notes[0]
    state, notes = checkpoint.load_newest([latest, previous], cpu, owner=True)
    assert state is not None and state["run"]["step"] == 50
    assert not latest.exists() and str(latest / checkpoint.STATE_FILE) in notes[0]


def test_save_keeps_a_complete_checkpoint_and_the_one_before(tmp_path):
    # Rule: after two saves, `latest` holds the newer state and `previous` the older, each with
    # a checksum that matches; nothing temporary is left.
    trainer = _trainer(tmp_path, 100)
    trainer.run()
    state = checkpoint.load(tmp_path / "latest", torch.device("cpu"))
    older = checkpoint.load(tmp_path / checkpoint.PREVIOUS, torch.device("cpu"))
    assert state["run"]["step"] == 100 and older["run"]["step"] == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "previous"]


PATHS = {
    # path: (resources, process title, steps)
    "in_place": ({}, "ray::ImplicitFunc", 300),
    "distributed": (DISTRIBUTED, "ray::RayTrainWorker", 200),
}


def _registered(storage: Path) -> str | None:
    """The checkpoint Ray Train restores (its latest registered one), from the snapshot its
    controller writes on every registration; None until there is one."""
    for snapshot in storage.glob("train/*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
        except json.JSONDecodeError:  # read while being written
            return None
        return latest["checkpoint_dir_name"] if latest else None
    return None


def _to_truncate(storage: Path, trial_path: str) -> list[Path]:
    """The state files to cut short, once the trial has older checkpoints to go back to: in
    place `latest` (`previous` exists); through Ray Train the one it restores and every newer
    one (a report still queued may be registered after the pause), once an older one exists.
    Going by the folders alone missed: a checkpoint is written before its report is taken, so
    the newest folders on disk may all be newer than the one Train restores."""
    if trial_path == "in_place":
        found = list(storage.glob("checkpoints/*/previous/state.pt"))
        return [found[0].parent.with_name("latest") / checkpoint.STATE_FILE] if found else []
    registered = _registered(storage)
    found = sorted(storage.glob("train/*/checkpoint_*/state.pt"), key=lambda p: p.parent.name)
    if registered is None or not any(p.parent.name < registered for p in found):
        return []
    return [p for p in found if p.parent.name >= registered]


def _what_was_there(storage: Path, cut: list[Path], tags: dict[str, str], output: str) -> str:
    """For a failure: what was cut, the checkpoints and Train's snapshot now, the run's tags
    and the driver's output."""
    folders = sorted(str(p.relative_to(storage)) for p in storage.glob("*/*/checkpoint_*"))
    snapshots = [p.read_text()[-1500:] for p in storage.glob("train/*/*snapshot.json")]
    return "\n".join(
        [f"cut: {cut}", f"folders: {folders}", f"snapshot: {snapshots}", f"tags: {tags}", output]
    )


@pytest.mark.ray
@pytest.mark.timeout(420)
@pytest.mark.parametrize("trial_path", list(PATHS))
def test_truncated_checkpoint_then_kill_resumes_from_an_older_one(
    ray_address, tmp_path, trial_path
):
    # Rule: a trial paused, the checkpoint its restart loads truncated to half, then killed,
    # completes from an older one: the file is set aside and named in the run's tag, every
    # point logged once.
    resources, title, steps = PATHS[trial_path]
    name = f"corrupt-{trial_path}"
    path = sweep_file(tmp_path, name, train={**TRAIN, "steps": steps}, resources=resources)
    uri, storage = tracking_uri(path), tmp_path / "runs" / name
    with driver(path, address=ray_address) as sweep:
        wait_until(lambda: _to_truncate(storage, trial_path), timeout=240,
                   what="older checkpoints", driver=sweep)  # fmt: skip
        pids = pids_titled(title)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        cut = _to_truncate(storage, trial_path)
        assert cut and last_step(uri, children(uri, name)[0].info.run_id) < steps
        for file in cut:
            _truncate(file)
        assert kill_titled(title) >= 1
        assert sweep.wait(timeout=240) == 0, sweep.output()
        output = sweep.output()
    (run,) = children(uri, name)
    assert run.data.tags["status"] == "completed" and run.info.status == "FINISHED"
    named = run.data.tags.get("scalesweep.checkpoint_set_aside", "")
    set_aside = [f for f in cut if str(f) in named]
    assert set_aside, _what_was_there(storage, cut, run.data.tags, output)
    for file in set_aside:
        assert (file.parent.with_name(file.parent.name + ".unreadable") / "state.pt").is_file()
    assert_every_point_once(uri, run, steps, log_every=10, eval_every=50)
