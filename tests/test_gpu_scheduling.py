"""Where the GPU goes under `--gpus-per-trial auto`, checked on CPU: the sweeps run through the real runner in a
fresh process whose local Ray has one logical GPU (RAY_OVERRIDE_RESOURCES; no CUDA behind it, so everything
computes on CPU while Ray schedules as on a GPU node).

- transfer grid, cached mode: the feature task holds the GPU, the head trials take none and run side by side
- STN: trials take the study's share, 0.25, so four would share one GPU; here two run at once on two CPUs
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers import run_cli, SWEEP_TIMEOUT
from sweeps import features
from trainables.transfer import TransferConfig

ONE_LOGICAL_GPU = {"RAY_OVERRIDE_RESOURCES": json.dumps({"GPU": 1})}
TINY_TRANSFER = ["--models", "resnet18", "--weights", "none", "--image-size", "32", "--sizes", "5",
                 "--seeds", "0", "1", "--val-per-class", "2", "--test-limit", "20", "--no-report"]


def trial_windows(run) -> dict[str, tuple[float, float]]:
    """trial_id → (when Tune started its actor, when its last result arrived), from Tune's experiment snapshot."""
    state = max((run / "tune").glob("experiment_state-*.json"))
    windows = {}
    for trial_json, meta_json in json.loads(state.read_text())["trial_data"]:
        meta = json.loads(meta_json)
        windows[json.loads(trial_json)["trial_id"]] = (meta["start_time"], meta["last_result_time"])
    return windows


def overlapping(windows: dict[str, tuple[float, float]]) -> bool:
    (a0, a1), (b0, b1) = sorted(windows.values())[:2]
    return b0 < a1


def test_cached_trials_take_no_gpu_and_tutorial_trials_a_whole_one():
    cached = TransferConfig(model="resnet18")
    tutorial = TransferConfig(model="resnet18", backbone_mode="tutorial")
    assert features.trial_gpu_share([cached, cached]) == 0.0
    assert features.trial_gpu_share([cached, tutorial]) == features.trial_gpu_share([tutorial]) == 1.0


@pytest.mark.parametrize("cluster_gpus, trial_gpus, task_gpus", [(1, 0.0, 1.0), (4, 0.25, 1.0), (0, 0.0, 0.0),
                                                                   (0, 1.0, 1.0)])
def test_the_feature_task_takes_a_gpu_when_there_is_one(monkeypatch, cluster_gpus, trial_gpus, task_gpus):
    # an explicit trial share on a cluster without GPUs now: an autoscaler adds GPU nodes only when asked
    monkeypatch.setattr(features.ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": float(cluster_gpus)})
    assert features.feature_gpus(trial_gpus) == task_gpus


@pytest.mark.slow
def test_transfer_grid_feature_task_holds_the_gpu_and_heads_train_on_cpu_side_by_side(mnist_dir, tmp_path):
    # 60 epochs: a 1-epoch head trial ends sooner than two actors start on 2 busy cores, so no overlap could show
    run = tmp_path / "run"
    proc = run_cli("sweeps/transfer_grid.py", "--data-dir", str(mnist_dir), "--out", str(run), "--epochs", "60",
                   *TINY_TRANSFER, env=ONE_LOGICAL_GPU, timeout=SWEEP_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "features: 1 backbone pass(es), each 1 CPU + 1 GPU" in proc.stdout
    assert "features: resnet18, none, 32 px, bf16 ready" in proc.stdout  # auto on a GPU task: bf16 (Ray's GPU, CPU here)
    assert "transfer_grid: 2 trial(s), 1 CPU + 0 GPU each; cluster: 2 CPU, 1 GPU" in proc.stdout
    df = pd.read_parquet(run / "logs")
    assert (df["gpus"] == 0).all() and (df["cpus"] == 1).all() and df["trial_id"].nunique() == 2
    assert overlapping(trial_windows(run)), trial_windows(run)


@pytest.mark.slow
def test_stn_trials_share_the_gpu_four_ways(mnist_dir, tmp_path):
    run = tmp_path / "run"
    proc = run_cli("sweeps/stn_mnist.py", "--smoke-test", "--data-dir", str(mnist_dir), "--out", str(run),
                   "--no-report", env=ONE_LOGICAL_GPU, timeout=SWEEP_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stn_mnist: 2 trial(s), 1 CPU + 0.25 GPU each; cluster: 2 CPU, 1 GPU" in proc.stdout
    df = pd.read_parquet(run / "logs")
    assert (df["gpus"] == 0.25).all() and df["trial_id"].nunique() == 2
    assert overlapping(trial_windows(run)), trial_windows(run)
