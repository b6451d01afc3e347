"""A search killed with SIGKILL mid-way (some trials finished, others running) resumes with --resume: every Optuna
trial matches one Tune trial, no duplicates, nothing left RUNNING. Split from test_search.py so that the two files
run side by side (pytest-xdist gives each file one worker).

    python -m pytest tests/test_search_resume.py -q -n 0
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest

from helpers import ONE_SLOT, ROOT, check_study_agrees_with_logs, run_cli, SWEEP_TIMEOUT

pytestmark = pytest.mark.slow


def test_killed_search_resumes_without_duplicates(mnist_dir, tmp_path):
    run = tmp_path / "RUN"
    args = ["sweeps/stn_search.py", "--data-dir", str(mnist_dir), "--out", str(run), "--num-samples", "5",
            "--max-concurrent", "2", "--epochs", "5", "--train-per-class", "100", "--test-limit", "1000",
            "--asha", "off", "--confirm", "off", "--no-report"]
    # one trial at a time (ONE_SLOT): a finished trial, a running one and a pending one at the kill
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **ONE_SLOT})
    deadline = time.time() + SWEEP_TIMEOUT  # a guard against a hang only: a busy machine is slow
    try:  # kill once some trials have finished and others are mid-way
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.25)
            try:
                logs = pd.read_parquet(run / "logs")
            except Exception:
                continue
            if logs.empty:  # the logs folder is made before its first file: no columns yet
                continue
            done = logs[logs["status"] == "terminated"]["trial_id"].nunique()
            if done >= 1 and (logs["status"] == "running").any():
                break
    finally:
        killed_mid_way = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_mid_way and done >= 1
    time.sleep(2)
    resumed = run_cli(*args, "--resume", env=ONE_SLOT, timeout=SWEEP_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    study, per_trial = check_study_agrees_with_logs(run, 5)
    assert (per_trial["epochs"] == 5).all() and set(per_trial["stop_reason"]) == {"completed"}
    assert not any(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
