"""End to end: the smoke STN sweep through real Ray Tune on real MNIST, its Parquet logs and its report;
then --resume on the finished run and the refusal to overwrite it. (A driver killed mid-sweep, one of its
checkpoints damaged and the run resumed: tests/test_search_resume.py.)"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from helpers import run_cli, SWEEP_TIMEOUT

pytestmark = pytest.mark.slow

CONTRACT = ["trial_id", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "status"]


@pytest.fixture(scope="module")
def smoke_run(mnist_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("stn") / "RUN"
    run.mkdir()  # a driver that died before it wrote anything left its lock file behind: this one takes it over
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "since": "earlier"}))
    # Ray's session folder of its own (a short path: Ray's sockets live there), to count the worker processes
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    proc = run_cli("sweeps/stn_mnist.py", "--smoke-test", "--data-dir", str(mnist_dir), "--out", str(run),
                   env={"RAY_TMPDIR": str(ray_tmp)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    workers = len(list(ray_tmp.glob("ray/session_latest/logs/worker-*.out")))  # one file per worker process
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return run, proc, workers


def test_smoke_sweep_starts_one_worker_process_per_trial_slot(smoke_run):
    # two trials side by side on two CPUs: two trial processes, and no idle workers that Tune cannot use
    assert smoke_run[2] == 2


def test_smoke_sweep_logs(smoke_run):
    run, *_ = smoke_run
    df = pd.read_parquet(run / "logs")
    assert set(CONTRACT) <= set(df.columns)
    assert {"config/seed", "config/lr", "config/batch_size", "config/epochs", "config/train_per_class"} <= set(df)
    assert not df.duplicated(["trial_id", "epoch"]).any()
    assert len(list((run / "logs").glob("*.parquet"))) == df["trial_id"].nunique() == 2  # one file per trial
    assert sorted(df["config/seed"].unique().tolist()) == [0, 1]
    assert df.groupby("trial_id")["epoch"].apply(sorted).tolist() == [[1, 2], [1, 2]]
    assert df["test_acc"].between(0, 1).all() and df["train_acc"].between(0, 1).all()
    assert (df["epoch_seconds"] > 0).all() and (df["status"] == "terminated").all()
    assert (df["config/train_per_class"] == 100).all() and (df["config/lr"] == 0.01).all()
    sweep = json.loads((run / "sweep.json").read_text())
    assert len(sweep["configs"]) == 2
    assert sweep["none_means"]["val_per_class"] == "a tenth of the smallest digit's training images"
    assert (run / ".lock").read_text() == ""  # the dead driver's lock was taken over, then released


def test_smoke_sweep_report(smoke_run):
    run, proc, _ = smoke_run
    report = run / "report"
    for name in ("index.html", "report.md", "trials.csv", "test_acc.png", "test_loss.png"):
        assert (report / name).stat().st_size > 0, name
    assert "val_per_class=None (a tenth of the smallest digit's training images)" in (report / "report.md").read_text()
    trials = pd.read_csv(report / "trials.csv", dtype={"trial_id": str})  # Ray ids can be all digits
    logs = pd.read_parquet(run / "logs")
    best = logs.groupby("trial_id")["test_acc"].max()
    assert len(trials) == 2
    for _, row in trials.iterrows():
        assert row["best_test_acc [fraction]"] == pytest.approx(best[row["trial_id"]])
    assert str(report / "index.html") in proc.stdout
    again = run_cli("-m", "analysis.report", str(run))  # the contract's command writes the same files
    assert again.returncode == 0, again.stderr
    assert pd.read_csv(report / "trials.csv", dtype={"trial_id": str}).equals(trials)


def test_finished_sweep_is_not_overwritten_and_resume_adds_nothing(smoke_run, mnist_dir):
    run, *_ = smoke_run
    before = pd.read_parquet(run / "logs")
    refused = run_cli("sweeps/stn_mnist.py", "--smoke-test", "--data-dir", str(mnist_dir), "--out", str(run))
    assert refused.returncode == 2 and "pass --resume" in refused.stderr
    resumed = run_cli("sweeps/stn_mnist.py", "--smoke-test", "--data-dir", str(mnist_dir), "--out", str(run),
                      "--resume", "--no-report", timeout=SWEEP_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = pd.read_parquet(run / "logs")
    assert len(after) == len(before) == 4
    pd.testing.assert_frame_equal(after.sort_values(["trial_id", "epoch"]).reset_index(drop=True),
                                  before.sort_values(["trial_id", "epoch"]).reset_index(drop=True))
