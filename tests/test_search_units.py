"""Search parts without Ray running: option parsing, the plateau stopper's record, the early-stop label."""
from __future__ import annotations

import argparse

import pytest

from sweeps.runner import SweepError
from sweeps.search import RecordingPlateauStopper, Search, add_search_args, build_search, search_from_args


def parse(*argv):
    p = argparse.ArgumentParser()
    add_search_args(p, Search(space={}, baseline={}, num_samples=8, max_concurrent=2))
    return p.parse_args(list(argv))


def test_options_build_the_search():
    from ray import tune

    space = {"lr": tune.loguniform(1e-3, 0.1)}
    s = search_from_args(parse("--asha", "3,2", "--plateau", "4", "--tune-gamma"), space,
                         {"lr": 0.01, "gamma": 0.1}, {"gamma": lambda: tune.uniform(0.05, 0.9)})
    assert s.asha == (3, 2.0) and s.plateau == 4 and set(s.space) == {"lr", "gamma"}
    assert s.baseline == {"lr": 0.01, "gamma": 0.1} and s.num_samples == 8
    assert search_from_args(parse("--asha", "off"), space, {"lr": 0.01}, {}).asha is None
    with pytest.raises(SweepError, match="--asha 'fast': expected GRACE,FACTOR"):
        search_from_args(parse("--asha", "fast"), space, {"lr": 0.01}, {})
    with pytest.raises(SweepError, match="factor > 1"):
        search_from_args(parse("--asha", "2,1"), space, {"lr": 0.01}, {})


def test_plateau_stopper_records_what_it_stopped(tmp_path):
    from ray import tune

    s = Search(space={"lr": tune.loguniform(1e-3, 0.1)}, baseline={"lr": 0.01}, asha=None, plateau=3)
    _, scheduler, stopper, reason = build_search(s, tmp_path, "test_acc", "max", max_epochs=20)
    assert scheduler is None and isinstance(stopper, RecordingPlateauStopper)
    flat = [stopper("a", {"test_acc": 0.9, "training_iteration": i}) for i in range(1, 6)]
    rising = [stopper("b", {"test_acc": 0.1 * i, "training_iteration": i}) for i in range(1, 6)]
    assert any(flat) and not any(rising)
    assert stopper.stopped == {"a"}
    assert reason("a") == "plateau" and reason("b") == "asha"
    assert (tmp_path / "optuna.db").exists()  # the study lives in RUN_DIR
