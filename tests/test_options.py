"""Study options generated from the config classes: several values make a grid axis (the same as --set KEY=[...]),
explicit options beat --smoke-test, conflicting or empty values are one `error:` line, and a new config field is
a new flag with its range checked."""
from __future__ import annotations

import dataclasses
from dataclasses import field

import pytest

from sweeps.options import build_parser, resolve
from sweeps.study import Study
from trainables.config import SGDConfig, UserError
from trainables.stn import STNConfig


def plan(study, *argv):
    return resolve(study, build_parser(study).parse_args(list(argv)))


STN = Study(name="t", doc=None, trainable=lambda c: None, config_cls=STNConfig, defaults={"seed": [0, 1, 2]},
            smoke={"epochs": 2, "seed": [0, 1]})


def configs(study, *argv):
    return [c.to_dict() for c in plan(study, *argv).configs]


def test_several_values_are_a_grid_axis_like_set():
    by_flag = configs(STN, "--lr", "0.01", "0.05", "--seeds", "3")
    assert [(c["lr"], c["seed"]) for c in by_flag] == [(0.01, 3), (0.05, 3)]
    assert by_flag == configs(STN, "--set", "lr=[0.01,0.05]", "--seed", "3")
    assert [c["seed"] for c in configs(STN)] == [0, 1, 2]  # the study's constant, not the config's 0


def test_explicit_options_beat_the_smoke_test():
    assert {(c["epochs"], c["seed"]) for c in configs(STN, "--smoke-test")} == {(2, 0), (2, 1)}
    assert {(c["epochs"], c["seed"]) for c in configs(STN, "--smoke-test", "--epochs", "5")} == {(5, 0), (5, 1)}


def test_none_words_for_optional_fields():
    assert configs(STN, "--test-limit", "all", "--seeds", "0")[0]["test_limit"] is None
    assert configs(STN, "--train-per-class", "7", "--seeds", "0")[0]["train_per_class"] == 7


@pytest.mark.parametrize("argv, message", [
    (["--lr", "0.1", "--set", "lr=0.2"], "--lr and --set lr=... both set lr"),
    (["--set", "lr=[]"], "an empty list runs nothing"),
    (["--lr", "-1"], "config 'lr' = -1.0 is out of range: must be > 0"),
    (["--set", "lrr=1"], "unknown config key 'lrr'"),
])
def test_bad_values_are_user_errors(argv, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        plan(STN, *argv)


def test_parse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser(STN).parse_args(["--lr", "fast"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: argument --lr: 'fast' is not a float (see python sweeps/t.py --help)"]


@pytest.mark.parametrize("script", ["stn_mnist", "transfer_grid"])
def test_weight_decay_reaches_both_studies_and_the_optimizer(script):
    import importlib

    import torch

    from trainables.loop import make_sgd

    study = importlib.import_module(f"sweeps.{script}").STUDY
    cfgs = plan(study, "--weight-decay", "0", "0.0005", "--seeds", "0", "--sizes", "10").configs
    models = 2 if script == "transfer_grid" else 1  # ResNet50 and VGG19
    assert sorted(c.weight_decay for c in cfgs) == [0.0] * models + [0.0005] * models
    optimizer, _ = make_sgd([torch.nn.Parameter(torch.zeros(1))], max(cfgs, key=lambda c: c.weight_decay))
    assert optimizer.param_groups[0]["weight_decay"] == 0.0005
    with pytest.raises(UserError, match="config 'weight_decay' = -0.1 is out of range: must be >= 0"):
        plan(study, "--weight-decay", "-0.1")


def test_a_new_field_is_a_new_flag_with_its_range():
    @dataclasses.dataclass(frozen=True)
    class Wider(SGDConfig):
        lr: float = 0.2  # only the default changes: help and range come from SGDConfig
        width: int = field(default=8, metadata={"ge": 1, "help": "hidden units"})

    study = Study(name="w", doc=None, trainable=lambda c: None, config_cls=Wider)
    assert [c.width for c in plan(study, "--width", "4", "16").configs] == [4, 16]
    assert plan(study).configs[0].lr == 0.2
    with pytest.raises(UserError, match="config 'width' = 0 is out of range: must be >= 1"):
        plan(study, "--width", "0")
    with pytest.raises(UserError, match="config 'lr' = 20.0 is out of range: must be <= 10"):
        plan(study, "--lr", "20")
    text = build_parser(study).format_help()
    assert "hidden units (default: 8)" in " ".join(text.split())
