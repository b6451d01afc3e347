"""Search parts without Ray running: option parsing, the plateau stopper's record, the early-stop label."""
from __future__ import annotations

import pandas as pd
import pytest

from sweeps.options import build_parser, resolve
from sweeps.search import RecordingPlateauStopper, Search, build_search
from trainables.config import UserError


def resolve_search(*argv):
    from sweeps.stn_search import STUDY

    return resolve(STUDY, build_parser(STUDY).parse_args(list(argv))).search


def test_options_build_the_search():
    s = resolve_search("--asha", "3,2", "--plateau", "4", "--tune-gamma")
    assert s.asha == (3, 2.0) and s.plateau == 4 and set(s.space) == {"batch_size", "lr", "lr_step", "gamma"}
    assert s.baseline == {"batch_size": 64, "lr": 0.01, "lr_step": 0, "gamma": 0.1} and s.num_samples == 20
    assert resolve_search("--asha", "off").asha is None
    with pytest.raises(UserError, match="--asha 'fast': expected GRACE,FACTOR"):
        resolve_search("--asha", "fast")
    with pytest.raises(UserError, match="factor > 1"):
        resolve_search("--asha", "2,1")


def test_smoke_settings_give_way_to_explicit_options():
    assert resolve_search("--smoke-test").asha == (1, 2.0)  # the smoke study's own
    explicit = resolve_search("--smoke-test", "--asha", "2,3", "--num-samples", "6")  # equal to the defaults
    assert explicit.asha == (2, 3.0) and explicit.num_samples == 6 and explicit.max_concurrent == 2


def test_a_given_searched_key_is_fixed_not_searched():
    s = resolve_search("--lr", "0.05")
    assert "lr" not in s.space and "lr" not in s.baseline


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


def test_the_baseline_is_never_stopped_early_but_still_fills_the_rungs(tmp_path):
    """ASHA (grace 1, factor 2) and the plateau stopper stop a weak trial; the baseline, weaker still, runs on."""
    from types import SimpleNamespace

    from ray import tune

    s = Search(space={"lr": tune.loguniform(1e-3, 0.1)}, baseline={"lr": 0.01}, asha=(1, 2.0), plateau=2)
    _, asha, stopper, _ = build_search(s, tmp_path, "val_acc", "max", max_epochs=4)
    asha.set_search_properties("val_acc", "max", config={})  # what Tune does with TuneConfig's metric and mode
    trials = {name: SimpleNamespace(trial_id=name, config={"lr": lr, "epochs": 4})
              for name, lr in (("strong", 0.05), ("weak", 0.002), ("base", 0.01))}
    for t in trials.values():
        asha.on_trial_add(None, t)
    actions = {}
    for name, acc in (("strong", 0.9), ("weak", 0.2), ("base", 0.1)):
        actions[name] = asha.on_trial_result(None, trials[name], {"epoch": 1, "val_acc": acc,
                                                                    "config": trials[name].config})
    assert actions == {"strong": "CONTINUE", "weak": "STOP", "base": "CONTINUE"}
    _, recorded = asha._brackets[0]._rungs[-1]  # the first rung (epoch 1): the baseline competes in it
    assert set(recorded) == {"strong", "weak", "base"}
    flat = {name: [stopper(name, {"val_acc": 0.5, "training_iteration": i, "config": trials[name].config})
                   for i in range(1, 5)] for name in ("weak", "base")}
    assert any(flat["weak"]) and not any(flat["base"])
    assert stopper.stopped == {"weak"}


def test_optuna_steps_are_epochs_even_when_a_trial_repeats_some(tmp_path, caplog):
    """A trial resumed from an older checkpoint than Tune's snapshot names (that one was unreadable) repeats an epoch
    that Tune counts as a new training_iteration: Optuna's intermediate values stay keyed by epoch, once each."""
    import logging

    from ray import tune

    s = Search(space={"lr": tune.loguniform(1e-3, 0.1)}, baseline={"lr": 0.01}, asha=None, plateau=None)
    limiter, *_ = build_search(s, tmp_path, "val_acc", "max", max_epochs=3)
    searcher = limiter.searcher
    searcher.set_search_properties("val_acc", "max", config=s.space)  # what Tune does with the param space
    assert searcher.suggest("t1") == {"lr": 0.01}  # the enqueued baseline
    # epochs 1, 2, then the resume from epoch 1's checkpoint: epoch 2 again (iteration 3), epoch 3 (iteration 4)
    with caplog.at_level(logging.WARNING):
        for iteration, epoch, acc in ((1, 1, 0.5), (2, 2, 0.6), (3, 2, 0.61), (4, 3, 0.7)):
            searcher.on_trial_result("t1", {"val_acc": acc, "epoch": epoch, "training_iteration": iteration})
        searcher.on_trial_complete("t1", {"val_acc": 0.7, "epoch": 3, "training_iteration": 4})
    (trial,) = searcher._ot_study.get_trials()
    assert trial.intermediate_values == {1: 0.5, 2: 0.6, 3: 0.7} and trial.value == 0.7
    assert str(trial.state) == "TrialState.COMPLETE"
    assert not [r for r in caplog.records if "already reported" in r.getMessage()]


def test_resume_sets_aside_logs_of_trials_the_snapshot_does_not_know(tmp_path):
    """A driver killed after a trial started but before Tune's next snapshot leaves that trial's log file; the
    resumed search runs a new trial in its place, so the orphan's rows must leave logs/ (kept, not deleted)."""
    from helpers import LogTrial, epoch_metrics, write_logs

    from sweeps.runner import set_aside_orphan_logs

    write_logs(tmp_path / "logs", [LogTrial(tid, {"epochs": 2}, [epoch_metrics(0.5)], end=None)
                                   for tid in ("a_00000", "a_00001", "a_00002")])
    moved = set_aside_orphan_logs(tmp_path, {"a_00000", "a_00001"})
    assert [p.name for p in moved] == ["a_00002.parquet"]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["a_00000.parquet", "a_00001.parquet"]
    assert pd.read_parquet(moved[0])["trial_id"].tolist() == ["a_00002"]
    assert set_aside_orphan_logs(tmp_path, {"a_00000", "a_00001"}) == []


def test_confirm_candidates_tie_on_accuracy_and_are_told_apart_by_loss(tmp_path):
    """Two search trials tie on their best val_acc (0.980 of 500 images, as in a real run); the one with the lower
    best val_loss is taken, whatever the (random) trial ids say; the baseline's own configuration is left out."""
    from helpers import LogTrial, epoch_metrics, write_logs
    from sweeps.confirm import best_configs

    def trial(tid, lr, vals, losses):
        return LogTrial(tid, {"lr": lr, "epochs": len(vals), "seed": 0},
                        [epoch_metrics(0.9, val_acc=v, val_loss=loss) for v, loss in zip(vals, losses)])

    trials = [trial("0aaa", 0.003, [0.95, 0.98], [0.10, 0.078]),   # the earlier id, the higher loss
              trial("0bbb", 0.02, [0.97, 0.98], [0.09, 0.057]),
              trial("0ccc", 0.01, [0.99, 0.99], [0.05, 0.05]),     # the baseline: never a candidate
              trial("0ddd", 0.05, [0.90, 0.97], [0.3, 0.2])]
    logs = write_logs(tmp_path / "logs", trials, config_types={"lr": float, "epochs": int, "seed": int})
    ids = {t.trial_id for t in trials}
    got = best_configs(logs, ids, ["lr"], "val_acc", {"lr": 0.01}, 3)
    assert got == [{"lr": 0.02}, {"lr": 0.003}, {"lr": 0.05}]
    assert best_configs(logs, ids, ["lr"], "val_acc", {"lr": 0.01}, 1) == [{"lr": 0.02}]


def test_the_terminal_best_line_breaks_ties_on_the_lower_loss_as_the_report_does():
    """val_acc 0.9 at trial a's epoch 1 and at trial b's epochs 1 and 3: b's epoch 3 has the lowest val_loss."""
    from types import SimpleNamespace

    from sweeps.runner import _best_line
    from sweeps.stn_search import STUDY

    def result(tid, lr, rows):
        return SimpleNamespace(config={"lr": lr, "seed": 0}, metrics_dataframe=pd.DataFrame(
            [{"trial_id": tid, "epoch": e, "val_acc": v, "val_loss": l, "test_acc": t}
             for e, (v, l, t) in enumerate(rows, 1)]))

    grid = [result("a", 0.01, [(0.9, 0.30, 0.88), (0.8, 0.20, 0.85)]),
            result("b", 0.123456, [(0.9, 0.40, 0.86), (0.7, 0.10, 0.80), (0.9, 0.25, 0.91)])]
    assert _best_line(grid, "val_acc", STUDY, search=True) == (
        "best val_acc 90.0% at epoch 3 of the search's trial b (test_acc 91.0% there): lr=0.1235")
    grid[1].metrics_dataframe.loc[2, "val_loss"] = 0.30  # a full tie: the first trial's first epoch
    line = _best_line(grid, "val_acc", STUDY, search=True)
    assert line.startswith("best val_acc 90.0% at epoch 1 of the search's trial a (test_acc 88.0% there)")
    # a choice on the test set (no validation split) keeps the first of tied epochs, as the report does
    grid[1].metrics_dataframe.loc[2, "test_acc"] = 0.88  # ties with trial a's epoch 1
    line = _best_line(grid, "test_acc", STUDY, search=True)
    assert line == "best test_acc 88.0% at epoch 1 of the search's trial a: lr=0.01"
