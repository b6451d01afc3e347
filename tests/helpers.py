"""Helpers the tests share (import them: `from helpers import run_cli, write_logs`); fixtures stay in conftest.py.

- `run_cli(...)` runs a project command from the repository root in a fresh Python process; `env=ONE_SLOT` runs
  a sweep's trials one at a time.
- `one_error_line(proc, code, *needles)` asserts the promised failure: that exit code, one `error:` line naming
  every needle, no traceback.
- `load_study(run)`, `check_study_agrees_with_logs(run, n)`: a search's Optuna study against its logs.
- `run_main("stn_mnist", ...)` runs a sweep script's own `main(argv)` in this process (the command line's code
  path, without a fresh interpreter's torch and Ray imports), for cases that end before any trial starts.
- `write_logs(logs_dir, trials)` writes a logs folder through the real `sweeps.parquet_logger.ParquetLogger`,
  fed the way Ray Tune feeds it (one result per epoch, then the trial's end), so report tests read files with
  exactly the schema a sweep writes.
"""
from __future__ import annotations

import json
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
# A local Ray that counts one CPU: the sweep's trials (and feature tasks) run one at a time in one worker process
# instead of two side by side. For tests that are not about trials side by side: each worker process imports torch
# (seconds of CPU), and the suite already keeps both cores busy with three test files at once.
ONE_SLOT = {"RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 1})}


def run_cli(*args: str, env: dict | None = None, timeout: float = SWEEP_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a project command (e.g. "sweeps/stn_mnist.py", "--dry-run") from the repository root."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


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


SEARCHED = ("batch_size", "lr", "lr_step")  # what the smoke searches search


def load_study(run):
    """The one Optuna study in RUN_DIR/optuna.db."""
    import optuna

    storage = f"sqlite:///{run / 'optuna.db'}"
    names = optuna.get_all_study_names(storage)
    assert len(names) == 1
    return optuna.load_study(study_name=names[0], storage=storage)


def check_study_agrees_with_logs(run, n_trials):
    """Every finished Optuna trial of a search's RUN_DIR is exactly one Tune trial of its logs (matched on the searched
    values), PRUNED where ASHA stopped it, with one intermediate value per logged epoch; returns (study, per trial)."""
    import optuna
    import pandas as pd

    study = load_study(run)
    logs = pd.read_parquet(run / "logs")
    assert not logs.duplicated(["trial_id", "epoch"]).any()
    logs = logs[logs["phase"] == "search"]  # the confirm phase's trials are not Optuna's
    per_trial = logs.groupby("trial_id").agg(**{p: (f"config/{p}", "first") for p in SEARCHED},
                                             stop_reason=("stop_reason", "first"), epochs=("epoch", "max"))
    assert len(per_trial) == n_trials == len([t for t in study.trials if t.state.is_finished()
                                              and t.state != optuna.trial.TrialState.FAIL])
    expected = {"completed": optuna.trial.TrialState.COMPLETE, "asha": optuna.trial.TrialState.PRUNED}
    for ot in study.trials:
        if ot.state == optuna.trial.TrialState.FAIL:
            continue  # an orphan asked for after Tune's last snapshot (only after a kill)
        match = per_trial[(per_trial["batch_size"] == ot.params["batch_size"])
                          & (per_trial["lr"] - ot.params["lr"]).abs().lt(1e-12)
                          & (per_trial["lr_step"] == ot.params["lr_step"])]
        assert len(match) == 1, f"Optuna trial {ot.number} {ot.params} has {len(match)} Tune trials"
        row = match.iloc[0]
        assert expected[row["stop_reason"]] == ot.state, (ot.number, row["stop_reason"], ot.state)
        assert sorted(ot.intermediate_values) == list(range(1, row["epochs"] + 1))
    return study, per_trial


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
