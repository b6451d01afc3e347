"""What a sweep prints: Ray's chatter filtered out of worker output (warnings and real tracebacks kept), the
trial view's counts and lines without a terminal, the feature-pass bar with and without one, the live report
refreshed in a separate process, and a real sweep under a pseudo-terminal showing the feature pass's bar."""
from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from types import SimpleNamespace

import pytest

from analysis.runstate import RunLock, write_status
from helpers import ROOT, LogTrial, epoch_metrics, write_logs, SWEEP_TIMEOUT
from sweeps.console import FeatureProgress, LiveReport, TrialProgress, drop_chatter, fmt_metric

SIGTERM_TRACE = [
    "Traceback (most recent call last):",
    '  File "/venv/lib/python3.11/site-packages/ray/_private/worker.py", line 1064, in sigterm_handler',
    '    raise_sys_exit_with_custom_error_message(',
    "SystemExit: 1",
]
REAL_TRACE = [
    "Traceback (most recent call last):",
    '  File "/repo/trainables/loop.py", line 12, in fit',
    "    loss.backward()",
    "RuntimeError: CUDA error: out of memory",
]


def test_worker_chatter_is_dropped_and_everything_else_kept():
    lines = ["Checkpoint successfully created at: Checkpoint(filesystem=local, path=/r/tune/t/checkpoint_000001)",
             "UserWarning: the learning rate is large", *SIGTERM_TRACE, *REAL_TRACE, "epoch 3 done"]
    assert drop_chatter(lines) == ["UserWarning: the learning rate is large", *REAL_TRACE, "epoch 3 done"]
    # the SIGTERM arriving in a callback (a worker ended at shutdown): Python's header line goes with its traceback
    ignored = "Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7f11ca2a6700>"
    assert drop_chatter(["epoch 3 done", ignored, *SIGTERM_TRACE]) == ["epoch 3 done"]
    assert drop_chatter([ignored, *REAL_TRACE]) == [ignored, *REAL_TRACE]
    # a traceback cut off at the end of a batch is kept as it is
    assert drop_chatter(REAL_TRACE[:2]) == REAL_TRACE[:2]
    # a lost node's message (one multi-line entry): its first sentences, not the Raylet log it quotes
    died = ("Raylet is terminated. Termination is unexpected. Possible reasons include: (1) SIGKILL by the user or "
            "system OOM killer, (3) Other termination signals. Last 20 lines of the Raylet logs:\n"
            "    [state-dump] \tNodeManager.GCTaskFailureReason - 1 total (1 active)\n"
            "    [2026-12-02 18:27:34,785 I 2121 2121] (raylet) accessor.cc:475: Received address\n")
    assert drop_chatter(["before", died, "after"]) == [
        "before", "Raylet is terminated. Termination is unexpected. Possible reasons include: (1) SIGKILL by the user "
        "or system OOM killer, (3) Other termination signals. (its log: raylet.out in that node's Ray logs)", "after"]


def _trial(n: int, status: str, epoch: int = 0, acc: float | None = None, epochs: int = 3, **result):
    last = {"epoch": epoch, **({"val_acc": acc} if acc is not None else {}), **result}
    return SimpleNamespace(trial_id=f"abc_{n:05d}", status=status, config={"epochs": epochs},
                           last_result=last if epoch else {}, metric_analysis={"val_acc": {"max": acc}} if acc else {},
                           num_failures=0, error_file=None, get_error=lambda: "ValueError: boom")


def test_trial_view_without_a_terminal_prints_a_line_per_trial_and_status_lines():
    out = io.StringIO()
    view = TrialProgress(total_trials=4, epochs=3, metric="val_acc", stream=out, every_s=0.0)
    t0, t1 = _trial(0, "RUNNING", 1, 0.5), _trial(1, "RUNNING", 1, 0.25)
    view.on_step_end(0, [t0, t1])  # a status line: 0 ended, 2 running, 2 pending
    view.on_trial_result(0, [t0, t1], t0, {"epoch": 1, "val_acc": 0.5})
    t0.last_result, t0.metric_analysis = {"epoch": 3, "val_acc": 0.75}, {"val_acc": {"max": 0.75}}
    view.on_trial_result(0, [t0, t1], t0, {"epoch": 3, "val_acc": 0.75})
    view.on_trial_complete(0, [t0, t1], t0)  # its status is still RUNNING when the hook runs
    view.on_trial_complete(0, [t0, t1], t1)  # stopped at epoch 1 of 3 by a scheduler
    t2 = _trial(2, "RUNNING", 2, 0.5)
    view.on_trial_error(0, [t0, t1, t2], t2)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("trials: 0/4 ended") and "2 running, 2 pending" in lines[0]
    assert lines[1] == "trial 00000 done, 3 epochs · val_acc 75.0% (best 75.0%) · 1/4 ended"
    assert lines[2] == "trial 00001 stopped early at epoch 1 of 3 · val_acc 25.0% (best 25.0%) · 2/4 ended"
    assert lines[3].startswith("trial 00002 failed after 2 epoch(s): ValueError: boom") and "3/4 ended" in lines[3]
    t0.status, t1.status, t2.status = "TERMINATED", "TERMINATED", "ERROR"
    view.on_step_end(0, [t0, t1, t2])
    status = out.getvalue().splitlines()[-1]
    assert "3/4 ended (1 done, 1 stopped early, 1 failed), 0 running, 1 pending" in status
    # epochs: 3 + 1 + 2 run; the pending trial still has its 3 to go
    assert "epochs 6/9" in status and "best val_acc 75.0% (00000)" in status


def test_confirm_trials_are_shown_with_their_role_and_seed():
    from sweeps.confirm import confirm_points, confirm_tags

    base, winners = {"lr": 0.01, "momentum": 0.0}, [{"lr": 0.02, "momentum": 0.7}, {"lr": 0.015, "momentum": 0.9}]
    points = confirm_points(winners, base, [1, 2])
    tags = confirm_tags(points)
    assert [t for _, t in tags] == ["baseline, seed 1", "baseline, seed 2", "search's #1, seed 1",
                                    "search's #1, seed 2", "search's #2, seed 1", "search's #2, seed 2"]
    out = io.StringIO()
    view = TrialProgress(total_trials=6, epochs=3, metric="val_acc", phase="confirm", stream=out, every_s=1e9,
                         tags=tags)
    trials = [_trial(i, "RUNNING", 3, 0.9) for i in range(6)]
    for t, point in zip(trials, points):
        t.config = {"epochs": 3, "batch_size": 64, **point}
    view.on_trial_complete(0, trials, trials[3])
    view.on_trial_complete(0, trials, trials[0])
    assert out.getvalue().splitlines() == [
        "trial 00003 (search's #1, seed 2) done, 3 epochs · val_acc 90.0% (best 90.0%) · 1/6 ended",
        "trial 00000 (baseline, seed 1) done, 3 epochs · val_acc 90.0% (best 90.0%) · 2/6 ended"]


def test_trial_view_prints_status_lines_at_most_every_30_s():
    out = io.StringIO()
    view = TrialProgress(total_trials=2, epochs=3, metric="val_acc", stream=out)
    for _ in range(50):
        view.on_step_end(0, [_trial(0, "RUNNING", 1, 0.5)])
    assert out.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_feature_bars_on_a_terminal_and_lines_without_one():
    tty = _Terminal()
    with FeatureProgress({"resnet18|none|32|fp32": 1000}, stream=tty) as bars:
        bars.update("resnet18|none|32|fp32", 400, 2.0)
    assert "features resnet18, none, 32 px, fp32" in tty.getvalue() and "400/1000" in tty.getvalue()
    plain = io.StringIO()
    with FeatureProgress({"resnet18|none|32|fp32": 1000}, stream=plain, every_s=0.0) as bars:
        bars.update("resnet18|none|32|fp32", 400, 2.0)
    assert plain.getvalue() == "features: resnet18, none, 32 px, fp32: 400 of 1,000 images (200 images/s, ETA 3s)\n"


def test_accuracy_in_percent():
    assert fmt_metric("val_acc", 0.1734) == "val_acc 17.3%" and fmt_metric("val_loss", 0.25) == "val_loss 0.25"


def test_live_report_rebuilds_in_another_process_and_says_in_progress(tmp_path):
    write_logs(tmp_path / "logs", [LogTrial("t0", {"lr": 0.1}, [epoch_metrics(0.5), epoch_metrics(0.75)])])
    live = LiveReport(tmp_path, every_s=0.0)
    with RunLock(tmp_path):  # a live driver holds the run
        write_status(tmp_path, "running", trials=3, finished=1)
        live.on_step_end(0, [])
        assert live.proc is None  # nothing ended yet: nothing to refresh
        live.on_trial_complete(0, [], None)
        live.on_step_end(0, [])
        assert live.proc is not None and live.proc.pid != os.getpid()
        assert live.proc.wait(timeout=120) == 0
    page = (tmp_path / "report" / "report.md").read_text()
    assert "In progress: 1 of 3 trials finished" in page
    # a refresh still running when the sweep ends is stopped, so it cannot overwrite the final report
    live.last = 0.0
    live.on_trial_complete(0, [], None)
    live.on_step_end(0, [])
    proc = live.proc
    live.stop()
    assert proc.poll() is not None and live.proc is None


def test_live_report_follows_a_moved_run_and_pickles_without_its_process(tmp_path):
    import pickle

    moved = tmp_path / "moved"
    write_logs(moved / "logs", [LogTrial("t0", {"lr": 0.1}, [epoch_metrics(0.5)])])
    live = LiveReport(tmp_path / "original", every_s=0.0)  # the folder the callback was pickled with
    trial = SimpleNamespace(storage=SimpleNamespace(experiment_fs_path=str(moved / "tune")))
    live.on_trial_complete(0, [trial], trial)
    live.on_step_end(0, [trial])
    assert live.proc.wait(timeout=120) == 0
    assert (moved / "report" / "index.html").exists() and not (tmp_path / "original").exists()
    assert pickle.loads(pickle.dumps(live)).proc is None


def test_live_report_waits_a_minute_between_refreshes(tmp_path):
    live = LiveReport(tmp_path)  # every 60 s, counted from the start
    live.on_trial_complete(0, [], None)
    live.on_step_end(0, [])
    assert live.proc is None and live.due


def _run_in_pty(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run argv with stdout and stderr on a pseudo-terminal of 120 columns; (exit code, everything it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_sweep_on_a_terminal_shows_the_feature_bar_and_the_trial_view(mnist_dir, tmp_path):
    code, out = _run_in_pty([sys.executable, "sweeps/transfer_grid.py", "--smoke-test", "--data-dir", str(mnist_dir),
                             "--out", str(tmp_path / "run"), "--models", "resnet18", "--sizes", "10",
                             "--no-report"], timeout=SWEEP_TIMEOUT)
    assert code == 0, out[-3000:]
    assert "features resnet18, none, 32 px, fp32" in out  # tqdm's bar, updated in place
    assert "\r" in out and "img/s" in out
    assert "trials: 1/1 ended (1 done, 0 stopped early, 0 failed), 0 running, 0 pending" in out
    assert "2/2 epochs [" in out  # the trials' bar of epochs, with elapsed and ETA
    assert "Checkpoint successfully created" not in out and "Traceback" not in out
    passes = json.loads((tmp_path / "run" / "features.json").read_text())["passes"]
    assert [p["key"] for p in passes] == ["resnet18|none|32|fp32"] and passes[0]["seconds"] > 0
