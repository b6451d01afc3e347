"""Interrupts and moved or copied runs through the real command line: Ctrl-C once exits 130 with the command that
continues and a report that says it is incomplete; Ctrl-C twice still leaves resumable state: a copy of that run,
then moved, resumes where it is, every epoch exactly once, without touching the original or the copy's first place;
--resume keeps the options the sweep started with.

    python -m pytest tests/test_interrupts.py -q -n 0

Split from test_bad_inputs.py so that the two files run side by side (pytest-xdist gives each file one worker).
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

from helpers import ONE_SLOT, ROOT, one_error_line, run_cli, SWEEP_TIMEOUT

pytestmark = pytest.mark.slow

# -- one sweep, interrupted -----------------------------------------
SWEEP = ["sweeps/stn_mnist.py", "--epochs", "6", "--seeds", "0", "1", "--train-per-class", "100",
         "--test-limit", "1000"]


def interrupt(mnist_dir, run: Path, signals: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Start the sweep, send SIGINT `signals` times (0.5 s apart) once the first epoch is logged; returns the
    finished process and its argv."""
    argv = [*SWEEP, "--data-dir", str(mnist_dir), "--out", str(run)]
    # files, not pipes: a pipe nobody reads while we wait fills up and would block the sweep's own printing
    out_file, err_file = run.parent / f"{run.name}.out", run.parent / f"{run.name}.err"
    with open(out_file, "w") as out, open(err_file, "w") as err:
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=out, stderr=err, text=True,
                                env={**os.environ, **ONE_SLOT})
        deadline = time.time() + SWEEP_TIMEOUT  # a guard against a hang only: a busy machine is slow
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
    assert "Failed to fetch metrics" not in out  # Tune's words for the trial that never started (one slot)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and lines[0].endswith(f"--resume --out {run}"), proc.stderr[-2000:]
    assert "of 2 trials finished" in lines[0]
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    first = (run / "report" / "report.md").read_text().splitlines()[2]
    assert first.startswith("> Incomplete: the sweep was interrupted;") and "missing" in first


@pytest.mark.slow
def test_ctrl_c_twice_then_a_copied_and_moved_run_resumes_where_it_is_and_keeps_its_options(mnist_dir, tmp_path):
    run = tmp_path / "RUN"
    proc, argv = interrupt(mnist_dir, run, signals=2)
    assert proc.returncode == 130, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--resume --out" in proc.stderr
    before = digest(run)
    # One resume checks both: copied (the original must not change) and then moved (the folder it was copied to
    # must not come back).
    copy, moved = tmp_path / "COPY", tmp_path / "MOVED"
    shutil.copytree(run, copy, symlinks=True)
    copy.rename(moved)
    moved_argv = [a if a != str(run) else str(moved) for a in argv]
    resumed = run_cli(*moved_argv, "--resume", "--no-report", env=ONE_SLOT, timeout=SWEEP_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    each_epoch_once(moved)
    assert digest(run) == before  # not one byte of the original changed
    assert not copy.exists()  # nothing was written to where the run used to be

    # --resume keeps what the sweep started with: a changed option is refused, none at all finds it finished
    logs = digest(moved / "logs")
    changed = run_cli(*moved_argv, "--resume", "--epochs", "4")
    one_error_line(changed, 2, "epochs 6 → 4", "--resume continues the sweep as it started")
    again = run_cli("sweeps/stn_mnist.py", "--data-dir", str(moved_argv[moved_argv.index("--data-dir") + 1]),
                    "--out", str(moved), "--resume", "--no-report", timeout=SWEEP_TIMEOUT)  # no options given
    assert again.returncode == 0 and "already finished" in again.stdout, again.stdout[-2000:]
    assert digest(moved / "logs") == logs
