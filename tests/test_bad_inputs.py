"""Fault injection through the real command line: bad inputs are one `error:` line and exit 2 before anything
starts, environment failures (a full disk, resources no node can hold) one line and exit 1 or 2, and a second
driver on one RUN_DIR is stopped by the lock.

    python -m pytest tests/test_bad_inputs.py -q -m "not slow"     # the one-line checks (seconds each)
    python -m pytest tests/test_bad_inputs.py -q -n 0              # plus the lock, disk full, resources

Interrupts and moved or copied runs are in test_interrupts.py (the same table's rows, split so both files run
side by side).

Other rows of the same table live beside their code: data files (test_data_files.py), checkpoints
(test_search_resume.py: a corrupt checkpoint of a killed search), resources and addresses (test_resources.py),
--resume of a finished transfer run (test_e2e_transfer.py, on its smoke sweep).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import ROOT, one_error_line, run_cli, run_main, SWEEP_TIMEOUT


@pytest.mark.parametrize("argv, needles", [
    (["sweeps/stn_mnist.py", "--set", "lr=[]"], ["lr=[]", "empty list"]),
    (["sweeps/stn_mnist.py", "--set", "lr=inf"], ["'lr' = inf", "finite"]),
    (["sweeps/stn_mnist.py", "--lr", "nan"], ["--lr", "finite"]),
    (["sweeps/stn_mnist.py", "--seeds", "0", "0"], ["same configuration", "--seeds 0 0"]),
    (["sweeps/stn_mnist.py", "--max-failures", "-1"], ["--max-failures -1", ">= 0"]),
    (["sweeps/stn_search.py", "--num-samples", "0"], ["--num-samples = 0", ">= 1"]),
    (["sweeps/stn_search.py", "--asha", "0,3"], ["--asha 0,3", "grace period must be >= 1"]),
    (["sweeps/stn_search.py", "--confirm", "0,3"], ["--confirm 0,3", "must be >= 1"]),
    (["sweeps/transfer_search.py", "--confirm", "three"], ["--confirm 'three'", "K,S such as 3,3"]),
    (["sweeps/stn_mnist.py", "--val-per-class", "-1"], ["'val_per_class' = -1", ">= 0"]),
    (["sweeps/stn_mnist.py", "--gpus-per-trial", "lots"], ["--gpus-per-trial 'lots'"]),
])
def test_bad_values_are_one_line_before_anything_starts(argv, needles, tmp_path, capsys):
    # the scripts' own main(), in this process: the same code path as the command line, without paying a fresh
    # interpreter's torch and Ray imports per case (test_a_vit_... and the others below run the real CLI)
    import importlib

    script = importlib.import_module(f"sweeps.{Path(argv[0]).stem}")
    try:
        code = script.main([*argv[1:], "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path / "nowhere")])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    captured = capsys.readouterr()
    one_error_line(subprocess.CompletedProcess(argv, code, captured.out, captured.err), 2, *needles)
    assert not (tmp_path / "run").exists()  # refused before RUN_DIR was made


def test_a_vit_at_32_px_is_refused_before_ray(mnist_dir, tmp_path):
    proc = run_cli("sweeps/transfer_grid.py", "--models", "vit_b_16", "--image-size", "32", "--weights", "none",
                   "--sizes", "10", "--seeds", "0", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "run"))
    one_error_line(proc, 2, "vit_b_16 cannot take 32 px images", "--image-size 224")
    assert not (tmp_path / "run" / "tune").exists()


def test_a_second_driver_is_stopped_by_the_lock_and_a_stale_lock_is_taken_over(mnist_dir, tmp_path):
    from analysis.runstate import RunLock

    run = tmp_path / "run"
    run.mkdir()
    argv = ["sweeps/stn_mnist.py", "--data-dir", str(mnist_dir), "--out", str(run), "--seeds", "0",
            "--epochs", "1", "--train-per-class", "5", "--test-limit", "20", "--no-report"]
    with RunLock(run):  # this test process is "the other driver"
        proc = run_cli(*argv)
    one_error_line(proc, 2, "in use by another sweep driver", f"pid {os.getpid()}")
    assert not (run / "tune").exists()
    # the lock file stays behind after its holder is gone (the lock itself dies with its process): the next driver
    # takes it over and names itself (tests/test_e2e_sweep.py's smoke sweep runs on such a stale lock)
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "since": "earlier"}))
    with RunLock(run):
        assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    assert (run / ".lock").read_text() == ""  # released


def test_report_into_a_folder_it_cannot_write(tmp_path):
    from helpers import LogTrial, epoch_metrics, write_logs

    write_logs(tmp_path / "run" / "logs", [LogTrial("t1", {"lr": 0.1, "epochs": 1}, [epoch_metrics(0.5)])])
    (tmp_path / "file").write_text("not a folder")
    proc = run_cli("-m", "analysis.report", str(tmp_path / "run"), "--out", str(tmp_path / "file" / "report"))
    one_error_line(proc, 2, "cannot write the report to", "--out")


# -- through Ray: a full disk, an address, resources no node can hold ---------------------------------------
@pytest.fixture()
def tiny_disk(tmp_path):
    """A 3 MB file system: room for the data checks and a few checkpoints, not for a sweep's worth."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_logs_stay_readable(mnist_dir, tiny_disk):
    run = tiny_disk / "RUN"
    proc = run_cli("sweeps/stn_mnist.py", "--data-dir", str(mnist_dir), "--out", str(run), "--seeds", "0",
                   "--epochs", "200", "--train-per-class", "5", "--test-limit", "20", "--max-failures", "0",
                   "--no-report", timeout=SWEEP_TIMEOUT)
    line = one_error_line(proc, 1, "No space left on device", "intact", "--resume")
    assert str(run) in line
    if (run / "logs").exists():  # whatever was written is whole
        df = pd.read_parquet(run / "logs")  # no columns when the disk filled before the first file
        assert df.empty or not df.duplicated(["trial_id", "epoch"]).any()


def test_an_address_that_does_not_answer_is_one_line(mnist_dir, tmp_path):
    proc = run_cli("sweeps/stn_mnist.py", "--address", "127.0.0.1:1", "--smoke-test", "--data-dir", str(mnist_dir),
                   "--out", str(tmp_path / "run"), timeout=120)
    one_error_line(proc, 2, "--address 127.0.0.1:1", "no Ray cluster answers there")


@pytest.mark.slow
@pytest.mark.parametrize("argv, needles", [
    (["--gpus-per-trial", "1"], ["--gpus-per-trial 1", "pass --gpus-per-trial 0"]),
    (["--cpus-per-trial", "8"], ["--cpus-per-trial 8", "at most 2 CPU", "pass --cpus-per-trial 2"]),
])
def test_resources_no_node_can_hold_are_one_line_not_a_hang(argv, needles, mnist_dir, tmp_path):
    if (os.cpu_count() or 0) > 2 and "--cpus-per-trial" in argv:
        pytest.skip("the message names this machine's 2 cores")
    proc = run_cli("sweeps/stn_mnist.py", *argv, "--smoke-test", "--data-dir", str(mnist_dir),
                   "--out", str(tmp_path / "run"), timeout=180)  # today's hang would hit the timeout
    one_error_line(proc, 2, *needles)
    assert not (tmp_path / "run" / "logs").exists()


def test_a_dry_run_piped_into_head_is_not_a_failure():
    # `--dry-run | head -1`: the reader closes the pipe while the configurations are still printing
    seeds = [str(s) for s in range(400)]  # ~120 KB of configurations: more than a pipe holds
    proc = subprocess.Popen([sys.executable, "sweeps/stn_mnist.py", "--dry-run", "--seeds", *seeds], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=SWEEP_TIMEOUT)
    assert first.startswith("stn_mnist: 400 trial configuration(s)")
    assert proc.returncode == 141, err[-2000:]  # as a shell reports a process ended by SIGPIPE
    assert err == "", err[-2000:]  # no "error: Broken pipe ... continue with --resume", no traceback


def test_address_auto_without_a_cluster_is_one_line(mnist_dir, tmp_path, monkeypatch):
    # through the script's main() in this process, so that other Rays on this machine (other test files' local
    # clusters) can be hidden from `auto` the way tests/test_resources.py hides them from check_address
    from ray._private import services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: set())
    proc = run_main("stn_mnist", "--address", "auto", "--smoke-test", "--data-dir", str(mnist_dir),
                    "--out", str(tmp_path / "run"))
    one_error_line(proc, 2, "--address auto", "no running Ray cluster found")
    assert not (tmp_path / "run" / "logs").exists()


def test_a_broken_pipe_in_a_sweep_is_still_an_environment_failure(tmp_path, capsys):
    # only a dry run ends quietly on a broken pipe; a sweep that loses one gets the line with the command that
    # continues it (the failure here comes from the data load, before Ray starts)
    from sweeps.runner import Study, run_study
    from trainables.stn import STNConfig

    def lost(data_dir):
        raise BrokenPipeError(32, "Broken pipe")

    study = Study(name="pipe", doc=None, trainable=lambda config, data=None: None, config_cls=STNConfig,
                  load_data=lost)
    code = run_study(study, ["--out", str(tmp_path / "run"), "--seeds", "0"])
    err = capsys.readouterr().err
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Broken pipe" in errors[0] and "--resume --out" in errors[0], err
