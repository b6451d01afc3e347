"""End to end: the transfer grid's dry run (30 configurations), its smoke sweep through real Ray with the
feature cache, --resume of that finished sweep (no feature pass again), a feature pass interrupted by Ctrl-C and
resumed where it stopped, and the offline ImageNet-weights error before anything starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from helpers import ONE_SLOT, ROOT, run_cli, run_main, SWEEP_TIMEOUT
from test_transfer import OFFLINE


def test_dry_run_lists_the_30_configurations():
    proc = run_main("transfer_grid", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    configs = [json.loads(line.split(None, 1)[1]) for line in proc.stdout.splitlines() if line[:4].strip().isdigit()]
    assert len(configs) == 30
    assert {(c["model"], c["train_per_class"], c["seed"]) for c in configs} == {
        (m, n, s) for m in ("resnet50", "vgg19") for n in (10, 30, 50, 70, 90) for s in (0, 1, 2)}
    c = configs[0]
    assert (c["lr"], c["momentum"], c["batch_size"], c["lr_step"], c["gamma"], c["epochs"], c["image_size"]) == (
        0.001, 0.9, 4, 7, 0.1, 50, 224)
    assert c["weights"] == "imagenet" and c["backbone_mode"] == "cached"


def test_offline_imagenet_weights_fail_at_once(mnist_dir, tmp_path):
    proc = run_main("transfer_grid", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "run"),
                    "--models", "vgg19", "--sizes", "10", "--seeds", "0",
                    env={**OFFLINE, "TORCH_HOME": str(tmp_path / "torch")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "vgg19-dcbb9e9d.pth" in errors[0] and "--weights none" in errors[0]
    assert not (tmp_path / "run" / "tune").exists()


@pytest.fixture(scope="module")
def smoke_grid(mnist_dir, tmp_path_factory):
    """The transfer grid's smoke sweep, run once: (RUN_DIR, its argv, the finished process)."""
    run = tmp_path_factory.mktemp("transfer") / "RUN"
    argv = ["sweeps/transfer_grid.py", "--smoke-test", "--data-dir", str(mnist_dir), "--out", str(run)]
    proc = run_cli(*argv, env=ONE_SLOT, timeout=SWEEP_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run, argv, proc


@pytest.mark.slow
def test_smoke_transfer_grid(smoke_grid):
    run, _, proc = smoke_grid
    assert "features: resnet50, none, 32" in proc.stdout
    # stdout is not a terminal here: a line per finished trial, no Ray boxes, chatter or tracebacks
    out = proc.stdout + proc.stderr
    assert len(out.splitlines()) <= 40, out
    assert "Checkpoint successfully created" not in out and "Traceback" not in out and "╭" not in out
    assert sum(line.startswith("trial ") and " done, 2 epochs" in line for line in out.splitlines()) == 4
    # the feature pass's compute, for the report: each pass's seconds, and each trial's share of its images
    passes = json.loads((run / "features.json").read_text())["passes"]
    assert sorted(p["key"] for p in passes) == ["resnet50|none|32|fp32", "vgg19|none|32|fp32"]
    assert all(p["seconds"] > 0 and p["gpu_seconds"] == 0 and p["images"] == 200 + 50 + 100 for p in passes)
    df = pd.read_parquet(run / "logs")
    assert set(df["config/model"]) == {"resnet50", "vgg19"}
    assert set(df["config/train_per_class"]) == {10, 20} and set(df["config/seed"]) == {0}
    assert (df["config/backbone_mode"] == "cached").all() and (df["config/weights"] == "none").all()
    assert len(df) == 2 * 2 * 2 and not df.duplicated(["trial_id", "epoch"]).any()
    assert df["test_acc"].between(0, 1).all()
    assert set(df["feature_key"]) == {p["key"] for p in passes}
    # training subset + validation split (5 per digit) + 100 test images
    assert df.groupby("config/train_per_class")["feature_images"].first().to_dict() == {10: 250.0, 20: 350.0}
    assert (run / "report" / "size_effect.png").stat().st_size > 0  # Table 2: best accuracy against size
    sizes = pd.read_csv(run / "report" / "size_effect.csv")
    assert len(sizes) == 4


@pytest.mark.slow
def test_a_finished_transfer_run_is_not_recomputed(smoke_grid):
    run, argv, _ = smoke_grid
    logs = sorted((run / "logs").iterdir())
    before = {p.name: p.read_bytes() for p in logs}
    again = run_cli(*argv, "--resume", "--no-report", timeout=SWEEP_TIMEOUT)
    assert again.returncode == 0 and "already finished" in again.stdout, again.stdout[-2000:] + again.stderr[-2000:]
    assert "features:" not in again.stdout  # no backbone pass for a run with nothing left to do
    assert {p.name: p.read_bytes() for p in sorted((run / "logs").iterdir())} == before


@pytest.mark.slow
def test_a_feature_pass_interrupted_by_ctrl_c_resumes_where_it_stopped(mnist_dir, tmp_path):
    """Ctrl-C in the feature pass keeps the chunks already computed, says how to continue and records the
    seconds spent; --resume computes only the rest, trains every trial, and removes the chunks once finished."""
    run = tmp_path / "RUN"
    # one backbone at 64 px (a pass of seconds on a CPU, a chunk on disk after every batch), one trial of 1 epoch;
    # the pass: 10 training + 5 validation images per digit and 100 test images
    argv = ["sweeps/transfer_grid.py", "--smoke-test", "--models", "resnet50", "--image-size", "64", "--sizes", "10",
            "--epochs", "1", "--data-dir", str(mnist_dir), "--out", str(run)]
    env = {**os.environ, **ONE_SLOT, "SWEEPS_FEATURE_CHUNK_S": "0"}
    out_file, err_file = tmp_path / "out", tmp_path / "err"
    with open(out_file, "w") as out, open(err_file, "w") as err:
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=out, stderr=err, text=True, env=env)
        deadline = time.time() + SWEEP_TIMEOUT
        while time.time() < deadline and proc.poll() is None and not list(run.glob("features/*/*.npy")):
            time.sleep(0.05)
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=SWEEP_TIMEOUT)
    stdout, stderr = out_file.read_text(), err_file.read_text()
    assert alive, stdout[-2000:] + stderr[-2000:]
    assert proc.returncode == 130 and "continue with:" in stderr and "--resume" in stderr, stdout + stderr
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    chunks = sorted(run.glob("features/*/*.npy"))
    kept = sum(len(np.load(p)) for p in chunks)
    assert chunks and 0 < kept < 250
    assert f"{kept:,} of 250 images kept in {chunks[0].parent}; --resume starts there" in stderr
    first, = json.loads((run / "features.json").read_text())["passes"]
    assert first["complete"] is False and first["resumed_at"] == 0 and first["seconds"] > 0
    assert not (run / "logs").exists() or not list((run / "logs").glob("*.parquet"))

    again = run_cli(*argv, "--resume", "--no-report", env={**ONE_SLOT, "SWEEPS_FEATURE_CHUNK_S": "0"})
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming at image" in again.stdout and "no trial had started" in again.stdout
    passes = json.loads((run / "features.json").read_text())["passes"]
    assert len(passes) == 2 and passes[1]["complete"] is True
    # the resumed task started after the last chunk kept, and computed only the rest
    assert passes[1]["resumed_at"] == kept and passes[1]["images"] == 250 - kept
    assert 0 < first["images"] <= kept  # the interrupt may fall between a chunk's write and its count
    df = pd.read_parquet(run / "logs")
    assert len(df) == 1 and df["epoch"].tolist() == [1]
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert not (run / "features").exists()  # finished: nothing left to resume from
