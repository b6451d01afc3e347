"""Node loss: a head and two worker nodes on this machine (ray.cluster_utils.Cluster); a sweep runs one trial
on each worker; one worker is killed mid-trial; its trial resumes from its last checkpoint on the other node and
the logs end with each (trial_id, epoch) exactly once, no gaps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from helpers import ROOT, SWEEP_TIMEOUT

pytestmark = pytest.mark.slow
EPOCHS = 8
# the GCS declares a killed node dead after a second or two instead of Ray's default tens of seconds
FAST_NODE_DEATH = {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


def _restart_epochs(run) -> dict[str, list[int]]:
    """Per trial folder: the epoch of every (re)start, from Tune's own result log."""
    out = {}
    for result_file in (run / "tune").glob("*/result.json"):
        results = [json.loads(line) for line in result_file.read_text().splitlines()]
        out[result_file.parent.name] = [r["epoch"] for r in results if r["iterations_since_restore"] == 1]
    return out


def test_worker_killed_mid_trial_resumes_elsewhere(mnist_dir, tmp_path):
    from ray.cluster_utils import Cluster

    # trials can only run on workers
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": FAST_NODE_DEATH})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    run = tmp_path / "RUN"
    args = [sys.executable, "sweeps/stn_mnist.py", "--address", cluster.address, "--data-dir", str(mnist_dir),
            "--out", str(run), "--epochs", str(EPOCHS), "--seeds", "0", "1", "--train-per-class", "100",
            "--test-limit", "1000", "--max-failures", "3", "--no-report"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + SWEEP_TIMEOUT  # a guard against a hang only: a busy machine is slow
        killed_at = None
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.25)
            try:
                counts = pd.read_parquet(run / "logs").groupby("trial_id").size()
            except Exception:  # no log file yet
                continue
            if len(counts) == 2 and counts.min() >= 3:  # both trials running, each past a few checkpoints
                killed_at = counts.to_dict()
                cluster.remove_node(workers[0], allow_graceful=False)
                break
        assert killed_at is not None and max(killed_at.values()) < EPOCHS, "the worker must die mid-trial"
        output, _ = proc.communicate(timeout=SWEEP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.shutdown()
    assert proc.returncode == 0, output[-4000:]

    df = pd.read_parquet(run / "logs")
    assert not df.duplicated(["trial_id", "epoch"]).any()
    assert df.groupby("trial_id")["epoch"].apply(sorted).tolist() == [list(range(1, EPOCHS + 1))] * 2
    assert (df["status"] == "terminated").all() and (df["stop_reason"] == "completed").all()
    restarts = _restart_epochs(run)
    resumed = {name: epochs[1:] for name, epochs in restarts.items() if len(epochs) > 1}
    assert len(resumed) == 1, restarts  # exactly the trial on the killed node was restarted ...
    (name, epochs), = resumed.items()
    assert all(e > 1 for e in epochs), f"{name} restarted at epoch 1: {restarts}"  # ... from a checkpoint
    assert df.groupby("trial_id")["failures"].max().sort_values().tolist() == [0, 1]


def test_a_sweep_whose_last_worker_is_lost_stops_and_resumes_once_one_is_back(mnist_dir, tmp_path):
    """The only worker that can hold a trial is killed: the sweep does not wait for ever. After
    SWEEPS_NO_NODE_TIMEOUT_S without a node that holds a waiting trial it stops, as a Ctrl-C does, with one
    error line and the command that continues it; run once a worker is back, that command finishes the sweep."""
    from ray.cluster_utils import Cluster

    # trials can only run on workers
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": FAST_NODE_DEATH})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    run = tmp_path / "RUN"
    args = [sys.executable, "sweeps/stn_mnist.py", "--address", cluster.address, "--data-dir", str(mnist_dir),
            "--out", str(run), "--epochs", str(EPOCHS), "--seeds", "0", "1", "--train-per-class", "50",
            "--test-limit", "500", "--max-failures", "3", "--no-report"]
    env = {**os.environ, "SWEEPS_NO_NODE_TIMEOUT_S": "3"}
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + SWEEP_TIMEOUT
        lost = False
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.25)
            try:
                epochs = len(pd.read_parquet(run / "logs"))
            except Exception:  # no log file yet
                continue
            if epochs >= 2:  # the first trial is past a checkpoint
                cluster.remove_node(worker, allow_graceful=False)
                lost = True
                break
        assert lost, "the worker must die mid-sweep"
        stopped_at = time.time()
        output, _ = proc.communicate(timeout=SWEEP_TIMEOUT)
        waited = time.time() - stopped_at
        assert proc.returncode == 1, output[-4000:]
        error, = [line for line in output.splitlines() if line.startswith("error:")]
        assert error.startswith("error: the sweep stopped: for 3 s no node of the cluster could hold a waiting trial "
                                "(1 CPU, 0 GPU), as after a lost node: its nodes have at most 0 CPU"), error
        assert "once the cluster has such a node again, continue with: " in error and "--resume" in error, error
        assert "note: no node of the cluster can hold a waiting trial (1 CPU, 0 GPU) right now" in output
        assert "Stop signal received" not in output  # Tune's words for a Ctrl-C that no one pressed
        # Ray's word of the lost node, once, without the internal log lines it quotes
        assert output.count("Raylet is terminated") <= 1 and "[state-dump]" not in output, output[-4000:]
        assert waited < SWEEP_TIMEOUT / 2, waited  # it ended on its own, long before the test's guard
        assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
        before = pd.read_parquet(run / "logs")

        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        again = subprocess.run([*args, "--resume"], cwd=ROOT, capture_output=True, text=True, env=env,
                               timeout=SWEEP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.shutdown()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    df = pd.read_parquet(run / "logs")
    assert not df.duplicated(["trial_id", "epoch"]).any()
    assert df.groupby("trial_id")["epoch"].apply(sorted).tolist() == [list(range(1, EPOCHS + 1))] * 2
    assert len(before) >= 2 and set(map(tuple, before[["trial_id", "epoch"]].values)) <= \
        set(map(tuple, df[["trial_id", "epoch"]].values))  # nothing logged before the stop was lost
