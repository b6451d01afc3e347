"""Helpers the tests share (import them: `from helpers import run_cli, write_logs`); fixtures stay in conftest.py.

- `run_cli(...)` runs a project command from the repository root in a fresh Python process.
- `run_main("stn_mnist", ...)` runs a sweep script's own `main(argv)` in this process (the command line's code
  path, without a fresh interpreter's torch and Ray imports), for cases that end before any trial starts.
- `write_logs(logs_dir, trials)` writes a logs folder through the real `sweeps.parquet_logger.ParquetLogger`,
  fed the way Ray Tune feeds it (one result per epoch, then the trial's end), so report tests read files with
  exactly the schema a sweep writes.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# How long a sweep's process may run before a test calls it hung. Generous on purpose: three test files share two
# cores, so a sweep that takes one minute alone can take four here, and a timeout is only the guard against a hang.
SWEEP_TIMEOUT = 900


def run_cli(*args: str, env: dict | None = None, timeout: float = SWEEP_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a project command (e.g. "sweeps/stn_mnist.py", "--dry-run") from the repository root."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def run_main(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`sweeps/SCRIPT.py ARGS` through the script's main() in this process: exit code and captured output."""
    import contextlib
    import importlib
    import io
    from unittest import mock

    module = importlib.import_module(f"sweeps.{script}")
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = module.main(list(args))
        except SystemExit as exit_:  # argparse's own refusals and --help
            code = exit_.code
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


@dataclass
class LogTrial:
    """One trial for `write_logs`: its config, one metrics dict per epoch (epoch 1, 2, ... in order), and how it
    ended: "completed" (or a scheduler's reason such as "asha", for a trial that stopped before
    config["epochs"]), "error" (with `error` as its message), or None (still running)."""

    trial_id: str
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    end: str | None = "completed"
    error: str = "RuntimeError: boom"
    failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # more result keys on every epoch (test_acc/zoom, ...)


def epoch_metrics(test_acc: float, test_loss: float | None = None, seconds: float = 1.0,
                  lr: float = 0.01, **more: Any) -> dict[str, Any]:
    """A plausible epoch result around `test_acc` (train metrics derived from it); `more` adds keys."""
    test_loss = 1.0 - test_acc if test_loss is None else test_loss
    return {"train_loss": test_loss * 0.5, "train_acc": min(test_acc + 0.05, 1.0), "test_loss": test_loss,
            "test_acc": test_acc, "epoch_seconds": seconds, "lr": lr, **more}


def write_logs(logs_dir: str | Path, trials: Iterable[LogTrial], *, config_types: dict[str, Any] | None = None,
               resources: dict[str, float] | None = None) -> Path:
    """Write `trials` into `logs_dir` through the real ParquetLogger; returns `logs_dir`."""
    from sweeps.parquet_logger import ParquetLogger

    trials = list(trials)
    reasons = {t.trial_id: t.end for t in trials}
    logger = ParquetLogger(logs_dir, config_types=config_types, resources=resources,
                           early_stop_reason=lambda tid: reasons[tid])
    for t in trials:
        tune_trial = SimpleNamespace(trial_id=t.trial_id, config=dict(t.config), num_failures=t.failures,
                                     get_error=lambda msg=t.error: msg)
        for epoch, metrics in enumerate(t.epochs, 1):
            logger.on_trial_result(epoch, [], tune_trial, {"epoch": epoch, "training_iteration": epoch,
                                                           **t.extra, **metrics})
        if t.end == "error":
            logger.on_trial_error(len(t.epochs), [], tune_trial)
        elif t.end is not None:
            logger.on_trial_complete(len(t.epochs), [], tune_trial)
    return Path(logs_dir)
