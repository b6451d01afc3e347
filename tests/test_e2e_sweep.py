"""End to end: the smoke STN sweep through real Ray Tune on real MNIST, its Parquet logs and its report;
then --resume on the finished run and the refusal to overwrite it; and a driver killed mid-sweep, one of its
checkpoints damaged, resumed from checkpoints with each epoch logged once."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from helpers import run_cli, SWEEP_TIMEOUT
from trainables.loop import STATE_FILE

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
    assert (run / ".lock").read_text() == ""  # the dead driver's lock was taken over, then released


def test_smoke_sweep_report(smoke_run):
    run, proc, _ = smoke_run
    report = run / "report"
    for name in ("index.html", "report.md", "trials.csv", "test_acc.png", "test_loss.png"):
        assert (report / name).stat().st_size > 0, name
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


def test_killed_driver_resumes_from_checkpoints_with_each_epoch_once(mnist_dir, tmp_path):
    """Driver loss: SIGKILL the sweep (and its local Ray) mid-sweep, truncate the checkpoint Tune's snapshot names
    for one running trial, rerun with --resume: finished trials are not rerun, unfinished ones continue from their
    checkpoints (the damaged one from the checkpoint before it, said in one line, without a failure), the logs
    hold each epoch once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import ROOT

    run = tmp_path / "RUN"
    # Two 2-epoch trials finish first; two 8-epoch trials are mid-way when the driver dies.
    args = ["sweeps/stn_mnist.py", "--data-dir", str(mnist_dir), "--out", str(run), "--set", "epochs=[2,8]",
            "--seeds", "0", "1", "--train-per-class", "100", "--test-limit", "1000", "--no-report"]
    # Its own session, so the kill takes the local Ray with it, as a crashed machine would.
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    snapshot = {}
    deadline = time.time() + SWEEP_TIMEOUT  # a guard against a hang only: a busy machine is slow
    try:
        # Kill once Tune's experiment snapshot shows a finished trial and, for every running trial, a checkpoint
        # of epoch >= 2: --resume restarts from what that snapshot records (written every 2 s, sweeps/runner.py).
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.25)
            snapshot = _snapshot(run)
            running = [epoch for status, epoch, _ in snapshot.values() if status == "RUNNING"]
            if any(s == "TERMINATED" for s, _, _ in snapshot.values()) and running and min(running) >= 2:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # What --resume reads: Tune may have written a newer snapshot between the last look and the kill.
    snapshot = _snapshot(run) or snapshot
    finished = {tid for tid, (status, _, _) in snapshot.items() if status == "TERMINATED"}
    # running trials whose checkpoint has an older one beside it (a trial may have started since the last look)
    running = {tid: (epoch, named) for tid, (status, epoch, named) in snapshot.items()
               if status == "RUNNING" and named and epoch >= 2}
    assert finished and running, f"not killed mid-sweep: {snapshot}"
    before = pd.read_parquet(run / "logs")
    # Damage the checkpoint the snapshot names for one of them.
    damaged, (damaged_epoch, named) = max(running.items(), key=lambda item: item[1][0])
    corrupt = next((run / "tune").glob(f"*{damaged}*")) / named
    state = corrupt / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    time.sleep(2)  # Ray's own agents notice the dead driver and exit

    resumed = run_cli(*args, "--resume", timeout=SWEEP_TIMEOUT)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    said = [line for line in out.splitlines() if "unreadable" in line]
    assert len(said) == 1 and str(corrupt) in said[0], said
    assert f"resuming from checkpoint_{int(named[-6:]) - 1:06d} (epoch {damaged_epoch - 1})" in said[0]
    df = pd.read_parquet(run / "logs")
    assert len(df) == 2 * 2 + 2 * 8 and not df.duplicated(["trial_id", "epoch"]).any()
    for tid, g in df.groupby("trial_id"):
        assert sorted(g["epoch"]) == list(range(1, g["config/epochs"].iloc[0] + 1))
    assert (df["status"] == "terminated").all() and (df["failures"] == 0).all()
    # Tune's own per-trial results: finished trials ran once; the others resumed from a checkpoint, not epoch 1.
    for result_file in (run / "tune").glob("*/result.json"):
        results = [json.loads(line) for line in result_file.read_text().splitlines()]
        starts = [r["epoch"] for r in results if r["iterations_since_restore"] == 1]
        tid = results[0]["trial_id"]
        status, _, checkpoint = snapshot.get(tid, ("PENDING", 0, None))
        if tid == damaged:  # from the checkpoint before the damaged one
            assert starts == [1, damaged_epoch], f"{result_file.parent.name}: {starts}"
        elif status == "TERMINATED":
            assert starts == [1], f"finished trial {tid} was rerun"
            pd.testing.assert_frame_equal(df[df["trial_id"] == tid].reset_index(drop=True),
                                          before[before["trial_id"] == tid].reset_index(drop=True))
        elif status == "RUNNING" and checkpoint:
            assert len(starts) == 2 and starts[-1] > 1, f"{result_file.parent.name} restarted at epoch 1: {starts}"
        else:  # had not started, or not reached its first checkpoint, when the driver died
            assert starts and set(starts) == {1}, f"{result_file.parent.name}: {starts}"


def _snapshot(run) -> dict[str, tuple[str, int, str | None]]:
    """Trial id → (status, epoch and folder name of the last checkpointed result) in Tune's newest experiment
    snapshot."""
    states = sorted((run / "tune").glob("experiment_state-*.json"))
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
    except (IndexError, ValueError, OSError):  # not written yet, or being replaced
        return {}
    out = {}
    for trial_json, meta_json in trial_data:
        trial, last = json.loads(trial_json), json.loads(meta_json).get("last_result") or {}
        named = last.get("checkpoint_dir_name")
        out[trial["trial_id"]] = (trial["status"], last["epoch"] if named else 0, named)
    return out
