"""The adaptive rounds (`scalesweep sweep --adaptive`, sweep/rounds.py) with the sweep driver
and MLflow replaced by a ledger: which trials each round runs, how it calls the driver, its
tags, its stops and --resume."""

from types import SimpleNamespace

import pandas as pd
import pytest

from scalesweep import metrics as m
from scalesweep.experiment import parse_experiment
from scalesweep.flops import count_params
from scalesweep.sweep.rounds import Hooks, Settings, run_rounds
from tests.sweep.test_next_runs import LADDER, law


class Ledger:
    """A sweep that completes every trial it is given, its loss from `law`."""

    def __init__(self, fail_in_round: int | None = None):
        self.rows: dict[str, dict] = {}
        self.calls: list[dict] = []
        self.tags: dict[str, int] = {}
        self.fail_in_round = fail_in_round

    def run(self, experiment, plan, *, resume, restart, address, extend):
        self.calls.append({"names": [t.name for t in plan.trials], "resume": resume})
        if self.fail_in_round == len(self.calls):
            raise KeyboardInterrupt
        for t in plan.trials:
            counts = count_params(t.config.model, 256)
            self.rows[t.name] = {
                "model.width": t.config.model.width,
                "model.depth": t.config.model.depth,
                m.PLANNED_FLOPS: t.budget,
                "train.flop_counting": "kaplan",
                m.STATUS: m.COMPLETED,
                m.FINAL_VAL_LOSS: law(counts.nonembed, t.tokens),
                m.PARAMS: counts.total,
                m.PARAMS_NONEMBED: counts.nonembed,
                m.TRAINED_TOKENS: t.tokens,
                m.TRAINED_FLOPS: t.flops,
            }
        return SimpleNamespace(rows=list(self.rows.values()))

    def hooks(self):
        def tag(experiment, outcome, names, number):
            self.tags.update(dict.fromkeys(names, number))

        return Hooks(
            self.run, lambda _: pd.DataFrame(list(self.rows.values())), tag, lambda *_: None
        )


@pytest.fixture
def experiment(tmp_path):
    return parse_experiment({**LADDER, "storage_path": str(tmp_path)})


def test_each_round_adds_its_trials_to_the_same_sweep_and_tags_them(experiment):
    # Rule: round 1 starts the sweep with the first round's 9 runs; each later round resumes
    # it with every earlier trial plus its own K; every trial is tagged with its round.
    ledger = Ledger()
    run_rounds(experiment, Settings(3, 2, 3e16), ledger.hooks())
    sizes = [len(c["names"]) for c in ledger.calls]
    assert sizes == [9, 11, 13]
    assert [c["resume"] for c in ledger.calls] == [False, True, True]
    assert ledger.calls[1]["names"][:9] == ledger.calls[0]["names"]
    assert sorted(ledger.tags.values()) == [1] * 9 + [2] * 2 + [3] * 2


def test_rounds_stop_at_the_flops_budget_and_at_the_target_width(experiment):
    # Rule: a spent --max-flops or a reached --target-width ends the rounds before the next.
    ledger = Ledger()
    _, lines = run_rounds(experiment, Settings(5, 2, 3e16, max_flops=1.0), ledger.hooks())
    assert len(ledger.calls) == 1 and any("--max-flops" in line for line in lines)
    ledger = Ledger()
    _, lines = run_rounds(experiment, Settings(5, 2, 3e16, target_width=1e3), ledger.hooks())
    assert len(ledger.calls) == 1 and any("--target-width" in line for line in lines)


def test_resume_finishes_the_round_that_was_cut_off_then_goes_on(experiment):
    # Rule: --resume reruns the interrupted round with exactly its trials, then the rest.
    ledger = Ledger(fail_in_round=2)
    with pytest.raises(KeyboardInterrupt):
        run_rounds(experiment, Settings(3, 2, 3e16), ledger.hooks())
    cut = ledger.calls[-1]["names"]
    ledger.fail_in_round = None
    _, lines = run_rounds(experiment, Settings(3, 2, 3e16), ledger.hooks(), resume=True)
    assert ledger.calls[2]["names"] == cut and ledger.calls[2]["resume"]
    assert len(ledger.calls) == 4 and "cut off" in lines[0]
    assert len(ledger.tags) == 13


def test_the_driver_takes_a_rounds_added_trials_and_still_refuses_removed_ones(experiment):
    # Rule: with extend (an adaptive round), a resumed sweep may add trials; a trial removed
    # is refused as before, and without extend an added one is too.
    from scalesweep.errors import UserError
    from scalesweep.sweep import driver
    from scalesweep.sweep.plan import Plan, plan

    trials = plan(experiment).trials
    first, grown, shrunk = (Plan(t, [], 1) for t in (trials[:3], trials[:5], trials[1:3]))
    storage = driver._storage_root(experiment.config) / experiment.config.name
    driver._write_state(
        storage / driver.STATE_FILE,
        {"parent_run_id": "p", "plan": driver.plan_digests(experiment, first)},
    )
    _, state = driver._check_storage(experiment, grown, resume=True, restart=False, extend=True)
    assert set(state["plan"]) == set(driver.plan_digests(experiment, grown))
    with pytest.raises(UserError, match="added"):
        driver._check_storage(experiment, grown, resume=True, restart=False)
    with pytest.raises(UserError, match="removed"):
        driver._check_storage(experiment, shrunk, resume=True, restart=False, extend=True)
