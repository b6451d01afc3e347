"""Fault injection through the real command line: bad inputs are one `error:` line and exit 2 before anything
starts, environment failures one line and exit 1, an interrupt exit 130 with the command that continues, and a
run folder that was moved or copied resumes where it is without touching the original.

    python -m pytest tests/test_bad_inputs.py -q -m "not slow"     # the one-line checks (seconds each)
    python -m pytest tests/test_bad_inputs.py -q                   # plus interrupts, move/copy, disk full

Other rows of the same table live beside their code: data files (test_data_files.py), checkpoints
(test_e2e_sweep.py: a corrupt checkpoint of a killed sweep), resources and addresses (test_resources.py), --resume of
a finished transfer run (test_e2e_transfer.py, on its smoke sweep).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import ROOT, run_cli, SWEEP_TIMEOUT


def one_error_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The run exited with `code`, printed exactly one `error:` line containing every needle, and no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


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
    # the lock file stays behind after its holder is gone: the next driver takes it over and runs
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "since": "earlier"}))
    proc = run_cli(*argv, timeout=SWEEP_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(pd.read_parquet(run / "logs")) == 1


def test_report_into_a_folder_it_cannot_write(tmp_path):
    from helpers import LogTrial, epoch_metrics, write_logs

    write_logs(tmp_path / "run" / "logs", [LogTrial("t1", {"lr": 0.1, "epochs": 1}, [epoch_metrics(0.5)])])
    (tmp_path / "file").write_text("not a folder")
    proc = run_cli("-m", "analysis.report", str(tmp_path / "run"), "--out", str(tmp_path / "file" / "report"))
    one_error_line(proc, 2, "cannot write the report to", "--out")


# -- through Ray: resume, interrupts, moved and copied runs, a full disk -----------------------------------------
SWEEP = ["sweeps/stn_mnist.py", "--epochs", "6", "--seeds", "0", "1", "--train-per-class", "100",
         "--test-limit", "1000"]


def interrupt(mnist_dir, run: Path, signals: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Start the sweep, send SIGINT `signals` times (0.5 s apart) once the first epoch is logged; returns the
    finished process and its argv."""
    argv = [*SWEEP, "--data-dir", str(mnist_dir), "--out", str(run)]
    # files, not pipes: a pipe nobody reads while we wait fills up and would block the sweep's own printing
    out_file, err_file = run.parent / f"{run.name}.out", run.parent / f"{run.name}.err"
    with open(out_file, "w") as out, open(err_file, "w") as err:
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=out, stderr=err, text=True)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not list((run / "logs").glob("*.parquet")):
            time.sleep(0.25)
        alive = proc.poll() is None
        for _ in range(signals if alive else 0):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
        proc.wait(timeout=SWEEP_TIMEOUT)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out_file.read_text(), err_file.read_text())
    assert alive, f"the sweep ended before it could be interrupted: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done, argv


def each_epoch_once(run: Path, epochs: int = 6, trials: int = 2) -> pd.DataFrame:
    df = pd.read_parquet(run / "logs")
    assert not df.duplicated(["trial_id", "epoch"]).any()
    assert df["trial_id"].nunique() == trials
    for _, g in df.groupby("trial_id"):
        assert sorted(g["epoch"]) == list(range(1, epochs + 1))
    assert (df["status"] == "terminated").all()
    return df


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def interrupted_once(mnist_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("ctrl-c") / "RUN"
    proc, argv = interrupt(mnist_dir, run, signals=1)
    return run, proc, argv


@pytest.mark.slow
def test_ctrl_c_is_honest(interrupted_once):
    run, proc, _ = interrupted_once
    out = proc.stdout + proc.stderr
    assert proc.returncode == 130, out[-3000:]
    assert "Tuner.restore" not in out  # Ray's advice is not how a sweep resumes
    lines = [line for line in proc.stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and lines[0].endswith(f"--resume --out {run}"), proc.stderr[-2000:]
    assert "of 2 trials finished" in lines[0]
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    first = (run / "report" / "report.md").read_text().splitlines()[2]
    assert first.startswith("> Incomplete: the sweep was interrupted;") and "missing" in first


@pytest.mark.slow
def test_a_copied_run_resumes_in_the_copy_untouched_original_and_keeps_its_options(interrupted_once, tmp_path):
    run, _, argv = interrupted_once
    before = digest(run)
    copy = tmp_path / "COPY"
    shutil.copytree(run, copy, symlinks=True)
    copy_argv = [a if a != str(run) else str(copy) for a in argv]
    resumed = run_cli(*copy_argv, "--resume", timeout=SWEEP_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    each_epoch_once(copy)
    assert digest(run) == before  # not one byte of the original changed

    # --resume keeps what the sweep started with: a changed option is refused, none at all finds it finished
    logs = digest(copy / "logs")
    changed = run_cli(*copy_argv, "--resume", "--epochs", "4")
    one_error_line(changed, 2, "epochs 6 → 4", "--resume continues the sweep as it started")
    again = run_cli("sweeps/stn_mnist.py", "--data-dir", str(copy_argv[copy_argv.index("--data-dir") + 1]),
                    "--out", str(copy), "--resume", "--no-report", timeout=SWEEP_TIMEOUT)  # no options: the sweep's own
    assert again.returncode == 0 and "already finished" in again.stdout, again.stdout[-2000:]
    assert digest(copy / "logs") == logs


@pytest.mark.slow
def test_ctrl_c_twice_then_a_moved_run_resumes_where_it_is(mnist_dir, tmp_path):
    run = tmp_path / "RUN"
    proc, argv = interrupt(mnist_dir, run, signals=2)
    assert proc.returncode == 130, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--resume --out" in proc.stderr
    moved = tmp_path / "MOVED"
    run.rename(moved)
    resumed = run_cli(*[a if a != str(run) else str(moved) for a in argv], "--resume", timeout=SWEEP_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    each_epoch_once(moved)
    assert not run.exists()  # nothing was written to where the run used to be


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
        df = pd.read_parquet(run / "logs")
        assert not df.duplicated(["trial_id", "epoch"]).any()


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
