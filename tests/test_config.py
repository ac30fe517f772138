"""Config loading: search spaces, overrides, and errors that name the key."""

import pytest

from scalesweep.config import run_params
from scalesweep.errors import UserError
from scalesweep.experiment import load_experiment, parse_experiment, parse_override


def test_plain_values_and_defaults():
    experiment = parse_experiment({"model": {"width": 64, "head_dim": 16}, "train": {"steps": 5}})
    assert experiment.spaces == {}
    assert experiment.resolve().model.n_heads == 4
    assert experiment.config.optim.beta2 == 0.95  # issue default β = (0.9, 0.95)


def test_every_space_kind_parses():
    # Rule: any scalar under a run section may be a search space of one of six kinds.
    experiment = parse_experiment(
        {
            "model": {"width": {"grid": [32, 64]}, "head_dim": 16, "depth": {"int": [1, 4]}},
            "optim": {
                "lr": {"logspace": [1e-4, 1e-2, 3]},
                "weight_decay": {"uniform": [0.0, 0.2]},
                "beta2": {"loguniform": [0.9, 0.99]},
                "name": {"choice": ["adamw", "lion"]},
            },
        }
    )
    spaces = experiment.spaces
    assert spaces["optim.lr"].grid_values() == pytest.approx([1e-4, 1e-3, 1e-2])
    assert set(experiment.grid_spaces()) == {"model.width", "optim.lr"}
    assert set(experiment.sampled_spaces()) == {
        "model.depth",
        "optim.weight_decay",
        "optim.beta2",
        "optim.name",
    }


def test_a_whole_section_may_be_a_grid_of_sections():
    # Rule: schedule types have different keys, so `schedule` itself may be a grid of whole
    # sections; every one is validated up front, and a bad one is named.
    grid = [{"type": "constant"}, {"type": "wsd", "cooldown_fraction": 0.2}]
    experiment = parse_experiment({"schedule": {"grid": grid}})
    assert experiment.spaces["schedule"].grid_values() == grid
    assert experiment.resolve({"schedule": grid[1]}).schedule.cooldown_fraction == 0.2
    with pytest.raises(UserError, match="cooldown_fraction"):
        parse_experiment(
            {"schedule": {"grid": [*grid, {"type": "cosine", "cooldown_fraction": 1}]}}
        )
    with pytest.raises(UserError, match="only under"):
        parse_experiment({"search": {"grid": [{"algorithm": "grid"}]}})


def test_resolve_sets_trial_values():
    experiment = parse_experiment({"optim": {"lr": {"grid": [0.1, 0.01]}}})
    assert experiment.resolve({"optim.lr": 0.01}).optim.lr == 0.01


def test_override_parses_yaml_values():
    assert parse_override("optim.lr=3e-3") == ("optim.lr", 0.003)
    assert parse_override("model.qk_norm=true") == ("model.qk_norm", True)
    assert parse_override("optim.lr={grid: [1, 2]}") == ("optim.lr", {"grid": [1, 2]})
    assert parse_override("optim.lr={logspace: [1e-4, 1e-2, 3]}")[1] == {
        "logspace": [1e-4, 1e-2, 3]
    }


def test_run_params_are_dotted():
    params = run_params(parse_experiment({"model": {"width": 64, "head_dim": 16}}).config)
    assert params["model.width"] == 64 and params["optim.lr"] == 1e-3
    assert "search.algorithm" not in params


@pytest.mark.parametrize(
    ("raw", "overrides", "needles"),
    [
        # unknown key, named with its section
        ({"optim": {"lrr": 0.1}}, [], ["optim.lrr", "unknown key"]),
        # wrong type: the key, the value and the rule
        ({"model": {"width": "wide"}}, [], ["model.width", "'wide'", "integer"]),
        # negative LR
        ({"optim": {"lr": -0.1}}, [], ["optim.lr", "-0.1", "greater than 0"]),
        # a bad value hidden in a grid fails at load, not in a trial
        ({"optim": {"lr": {"grid": [0.1, -1]}}}, [], ["optim.lr", "-1", "search space"]),
        # an override with an unknown key
        ({}, ["model.widht=3"], ["model.widht", "unknown key"]),
        # a cross-field rule names both keys
        ({"model": {"width": 100}}, [], ["model.width", "model.head_dim", "100"]),
        # a malformed range
        ({"optim": {"lr": {"loguniform": [0.1, 0.01]}}}, [], ["optim.lr", "low < high"]),
        # spaces only under run sections
        ({"search": {"num_samples": {"grid": [1, 2]}}}, [], ["search.num_samples"]),
        # discriminated schedule section: the tag is not part of the key
        ({"schedule": {"type": "wsd", "cooldown_shape": "sqrt"}}, [], ["schedule.cooldown_shape"]),
    ],
)
def test_bad_input_names_the_key(raw, overrides, needles):
    with pytest.raises(UserError) as error:
        parse_experiment(raw, overrides=overrides)
    for needle in needles:
        assert needle in str(error.value)


def test_unpinned_space_says_which_key_to_pin():
    experiment = parse_experiment({"optim": {"lr": {"grid": [0.01, 0.003]}}})
    with pytest.raises(UserError, match=r"--set optim\.lr=0\.01"):
        experiment.resolve()


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_experiment(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_experiment(bad)
