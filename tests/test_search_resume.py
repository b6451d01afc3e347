"""Driver loss, on a search: SIGKILL it (and its local Ray) mid-way, with some trials finished and others running,
damage the checkpoint that Tune's snapshot names for one running trial, empty the searcher's saved state and cut the
experiment's (as a kill during Tune's copy of its snapshot does), rerun with --resume. Finished trials are not
rerun, unfinished ones continue from their checkpoints (the damaged one from the checkpoint before it, said in one
line, without a failure), both states are put back from the intact copy (a line each), the logs hold each epoch
once, every Optuna trial matches one Tune trial and none is left RUNNING. A grid sweep resumes through the same
runner, trainables and checkpoints. Split from test_search.py so that the two files run side by side (pytest-xdist
gives each file one worker).

    python -m pytest tests/test_search_resume.py -q -n 0
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from helpers import ROOT, check_study_agrees_with_logs, run_cli, SWEEP_TIMEOUT
from trainables.loop import STATE_FILE

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 5, 8  # enough epochs that a finished trial and a running one past epoch 2 coexist


def snapshot_of(run) -> dict[str, tuple[str, int, str | None]]:
    """Trial id → (status, epoch and folder name of the checkpoint a restore starts from) in Tune's newest
    experiment snapshot. That is the checkpoint manager's latest, which can lag the last result's checkpoint."""
    states = sorted((run / "tune").glob("experiment_state-*.json"))
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
    except (IndexError, ValueError, OSError):  # not written yet, or being replaced
        return {}
    out = {}
    for trial_json, meta_json in trial_data:
        trial, meta = json.loads(trial_json), json.loads(meta_json)
        latest = pickle.loads(bytes.fromhex(meta["checkpoint_manager"]["value"])).latest_checkpoint_result
        if latest is None:
            out[trial["trial_id"]] = (trial["status"], 0, None)
        else:
            out[trial["trial_id"]] = (trial["status"], latest.metrics.get("epoch", 0),
                                        Path(latest.checkpoint.path).name)
    return out


def test_killed_search_resumes_from_checkpoints_with_each_epoch_once(mnist_dir, tmp_path):
    run = tmp_path / "RUN"
    args = ["sweeps/stn_search.py", "--data-dir", str(mnist_dir), "--out", str(run), "--num-samples", str(TRIALS),
            "--max-concurrent", "2", "--epochs", str(EPOCHS), "--train-per-class", "100", "--test-limit", "1000",
            "--asha", "off", "--confirm", "off", "--no-report"]
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
            snapshot = snapshot_of(run)
            running = [epoch for status, epoch, _ in snapshot.values() if status == "RUNNING"]
            if any(s == "TERMINATED" for s, _, _ in snapshot.values()) and running and min(running) >= 2:
                break
    finally:
        killed_mid_way = proc.poll() is None
        if killed_mid_way:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # What --resume reads: Tune may have written a newer snapshot between the last look and the kill.
    snapshot = snapshot_of(run) or snapshot
    finished = {tid for tid, (status, _, _) in snapshot.items() if status == "TERMINATED"}
    # running trials whose checkpoint has an older one beside it (a trial may have started since the last look)
    running = {tid: (epoch, named) for tid, (status, epoch, named) in snapshot.items()
               if status == "RUNNING" and named and epoch >= 2}
    assert killed_mid_way and finished and running, f"not killed mid-search: {snapshot}"
    before = pd.read_parquet(run / "logs")
    # Damage the checkpoint the snapshot names for one of them.
    damaged, (damaged_epoch, named) = max(running.items(), key=lambda item: item[1][0])
    corrupt = next((run / "tune").glob(f"*{damaged}*")) / named
    state = corrupt / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    # A kill while Tune copies its snapshot into RUN_DIR/tune leaves a file cut short: this one left the resumed
    # Tune with a half-restored search that waited forever (sweeps/tune_state.py).
    searcher = max((run / "tune").glob("searcher-state-*.pkl"))
    searcher.write_bytes(b"")
    experiment_state = max((run / "tune").glob("experiment_state-*.json"))
    experiment_state.write_bytes(experiment_state.read_bytes()[:1000])
    time.sleep(2)  # Ray's own agents notice the dead driver and exit

    resumed = run_cli(*args, "--resume", timeout=SWEEP_TIMEOUT)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    said = [line for line in out.splitlines() if "unreadable" in line]
    assert len(said) == 1 and str(corrupt) in said[0], (said, damaged, named, snapshot, out[-3000:])
    assert f"resuming from checkpoint_{int(named[-6:]) - 1:06d} (epoch {damaged_epoch - 1})" in said[0]
    put_back = [line for line in out.splitlines() if "was cut off" in line]
    expected = [f"note: {path} was cut off when the driver stopped; put back from the intact copy of Tune's last "
                f"snapshot" for path in (searcher, experiment_state)]
    assert sorted(put_back) == sorted(expected), out[-3000:]

    study, per_trial = check_study_agrees_with_logs(run, TRIALS)
    assert (per_trial["epochs"] == EPOCHS).all() and set(per_trial["stop_reason"]) == {"completed"}
    assert not any(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
    df = pd.read_parquet(run / "logs")
    assert len(df) == TRIALS * EPOCHS and not df.duplicated(["trial_id", "epoch"]).any()
    for _, g in df.groupby("trial_id"):
        assert sorted(g["epoch"]) == list(range(1, EPOCHS + 1))
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
