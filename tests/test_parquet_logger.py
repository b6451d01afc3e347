"""The Parquet callback: one file per trial, one row per (trial_id, epoch), re-reported epochs replace rows,
atomic files, resumed drivers continue from disk, failed trials keep their rows."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from sweeps.parquet_logger import METRIC_COLUMNS, ParquetLogger
from trainables.stn import STNConfig


def result(epoch, acc, **extra):
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": acc - 0.01, "test_loss": 2.0 / epoch,
            "test_acc": acc, "epoch_seconds": 0.5, "lr": 0.01, "training_iteration": epoch, **extra}


def trial(trial_id, **config):
    return SimpleNamespace(trial_id=trial_id, config={**STNConfig().to_dict(), **config})


def feed(logger, t, *epochs_and_accs):
    for epoch, acc in epochs_and_accs:
        logger.on_trial_result(0, [], t, result(epoch, acc))


def test_one_row_per_epoch_with_contract_columns(tmp_path):
    log = ParquetLogger(tmp_path / "logs", STNConfig.field_types())
    t = trial("a_00000", seed=3)
    feed(log, t, (1, 0.5), (2, 0.6))
    df = pd.read_parquet(tmp_path / "logs")
    assert list(df.columns[:len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    assert {f"config/{k}" for k in STNConfig().to_dict()} <= set(df.columns)
    assert df["epoch"].tolist() == [1, 2] and df["test_acc"].tolist() == [0.5, 0.6]
    assert (df["config/seed"] == 3).all() and (df["status"] == "running").all()
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["a_00000.parquet"]  # no temp files left


def test_reported_again_epochs_appear_once_keeping_the_last(tmp_path):
    log = ParquetLogger(tmp_path / "logs", STNConfig.field_types())
    t = trial("a_00000")
    feed(log, t, (1, 0.5), (2, 0.6), (3, 0.7))
    feed(log, t, (2, 0.61), (3, 0.71), (4, 0.8))  # restored from the epoch-1 checkpoint: 2 and 3 come again
    log.on_trial_complete(0, [], t)
    df = pd.read_parquet(tmp_path / "logs")
    assert df["epoch"].tolist() == [1, 2, 3, 4]
    assert df["test_acc"].tolist() == [0.5, 0.61, 0.71, 0.8]
    assert not df.duplicated(["trial_id", "epoch"]).any()
    assert (df["status"] == "terminated").all()


def test_resumed_driver_continues_from_the_files(tmp_path):
    first = ParquetLogger(tmp_path / "logs", STNConfig.field_types())
    t = trial("a_00000")
    feed(first, t, (1, 0.5), (2, 0.6), (3, 0.7))  # then the driver dies
    second = ParquetLogger(tmp_path / "logs", STNConfig.field_types())  # a new driver with --resume
    feed(second, t, (3, 0.72), (4, 0.8))
    df = pd.read_parquet(tmp_path / "logs")
    assert df["epoch"].tolist() == [1, 2, 3, 4]
    assert df["test_acc"].tolist() == [0.5, 0.6, 0.72, 0.8]


def test_failed_trial_keeps_its_rows(tmp_path):
    log = ParquetLogger(tmp_path / "logs", STNConfig.field_types())
    t = trial("b_00001")
    feed(log, t, (1, 0.4), (2, 0.45))
    log.on_trial_error(0, [], t)
    df = pd.read_parquet(tmp_path / "logs")
    assert df["epoch"].tolist() == [1, 2] and (df["status"] == "error").all()


def test_trials_with_and_without_optional_values_share_one_schema(tmp_path):
    log = ParquetLogger(tmp_path / "logs", STNConfig.field_types())
    feed(log, trial("a_00000", train_per_class=None), (1, 0.5))  # null first: its column type must still be int
    feed(log, trial("a_00001", train_per_class=30), (1, 0.6))
    log.on_trial_result(0, [], trial("a_00002"), result(1, 0.7, **{"test_acc/zoom": 0.2}))
    df = pd.read_parquet(tmp_path / "logs")
    assert len(df) == 3
    assert df.set_index("trial_id")["config/train_per_class"].isna().tolist() == [True, False, True]
    assert df.set_index("trial_id").loc["a_00001", "config/train_per_class"] == 30
    per_file = pd.read_parquet(tmp_path / "logs" / "a_00002.parquet")
    assert per_file["test_acc/zoom"].tolist() == [0.2]


def test_results_without_an_epoch_are_not_rows(tmp_path):
    log = ParquetLogger(tmp_path / "logs")
    log.on_trial_result(0, [], trial("c_00000"), {"done": True, "training_iteration": 3})
    assert not (tmp_path / "logs").exists()


def test_a_crash_mid_write_leaves_the_previous_file(tmp_path, monkeypatch):
    log = ParquetLogger(tmp_path / "logs", STNConfig.field_types())
    t = trial("a_00000")
    feed(log, t, (1, 0.5))
    import analysis.files

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(analysis.files.os, "replace", broken_replace)
    with pytest.raises(OSError):
        feed(log, t, (2, 0.6))
    assert pd.read_parquet(tmp_path / "logs")["epoch"].tolist() == [1]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["a_00000.parquet"]  # no temp file left


def test_stop_reason_error_message_and_failures(tmp_path):
    log = ParquetLogger(tmp_path / "logs", STNConfig.field_types())
    done, diverged, broken = trial("a_00000", epochs=1), trial("a_00001"), trial("a_00002")
    feed(log, done, (1, 0.5))
    log.on_trial_complete(0, [], done)
    log.on_trial_result(0, [], diverged, result(1, 0.1, stop_reason="diverged"))
    log.on_trial_complete(0, [], diverged)
    feed(log, broken, (1, 0.3))
    broken.num_failures = 1
    broken.get_error = lambda: "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n"
    log.on_trial_recover(0, [], broken)  # retried once ...
    broken.num_failures = 2
    log.on_trial_error(0, [], broken)  # ... then given up
    df = pd.read_parquet(tmp_path / "logs").set_index("trial_id")
    assert df.loc["a_00000", "stop_reason"] == "completed" and df.loc["a_00000", "status"] == "terminated"
    assert df.loc["a_00001", "stop_reason"] == "diverged" and df.loc["a_00001", "status"] == "terminated"
    assert df.loc["a_00002", "stop_reason"] == "error" and df.loc["a_00002", "status"] == "error"
    assert df.loc["a_00002", "error"] == "RuntimeError: CUDA out of memory"
    assert df.loc["a_00002", "failures"] == 2 and df.loc["a_00000", "failures"] == 0
    assert pd.isna(df.loc["a_00000", "error"])


def test_trials_ended_before_their_budget_get_the_schedulers_reason(tmp_path):
    log = ParquetLogger(tmp_path / "logs", STNConfig.field_types(), early_stop_reason=lambda tid: "asha")
    short = trial("a_00000", epochs=5)
    feed(log, short, (1, 0.2), (2, 0.25))  # ASHA stops it after epoch 2 of 5
    log.on_trial_complete(0, [], short)
    full = trial("a_00001", epochs=2)
    feed(log, full, (1, 0.5), (2, 0.6))
    log.on_trial_complete(0, [], full)
    df = pd.read_parquet(tmp_path / "logs").groupby("trial_id")["stop_reason"].first()
    assert df.to_dict() == {"a_00000": "asha", "a_00001": "completed"}


def test_trial_resources_are_columns_and_survive_a_resume(tmp_path):
    log = ParquetLogger(tmp_path / "logs", STNConfig.field_types(), resources={"cpu": 2, "gpu": 0.25})
    t = trial("a_00000")
    feed(log, t, (1, 0.5), (2, 0.6))
    again = ParquetLogger(tmp_path / "logs", STNConfig.field_types(), resources={"cpu": 2, "gpu": 0.25})
    feed(again, t, (2, 0.62), (3, 0.7))  # a resumed driver re-reads the rows and writes the columns once
    df = pd.read_parquet(tmp_path / "logs")
    assert df["epoch"].tolist() == [1, 2, 3]
    assert df["gpus"].tolist() == [0.25] * 3 and df["cpus"].tolist() == [2.0] * 3
    plain = ParquetLogger(tmp_path / "other", STNConfig.field_types())  # no resources given: nulls, not zeros
    feed(plain, trial("b_00000"), (1, 0.5))
    other = pd.read_parquet(tmp_path / "other")
    assert other["gpus"].isna().all() and str(other["gpus"].dtype) == "float64"
