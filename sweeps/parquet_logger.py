"""Ray Tune callback that writes one Parquet file per trial, one row per epoch, into `RUN_DIR/logs/`.

Rows are keyed by (trial_id, epoch), so an epoch a restored trial reports again replaces the earlier row instead
of adding a second one; the file is rewritten through a temporary file and a rename after every result, so a
sweep killed at any moment leaves complete files. On a resumed sweep the callback starts from the rows already
on disk. `pandas.read_parquet(RUN_DIR / "logs")` reads the whole run.

Without an explicit folder, the callback writes beside the experiment it belongs to: `logs/` next to the trial's
experiment folder (RUN_DIR/tune), asked of each trial. Tune pickles this callback into the experiment's state,
so a stored absolute path would send a moved or copied run's rows back to the original folder on --resume.

    RunConfig(callbacks=[ParquetLogger(config_types=STNConfig.field_types())])   # RUN_DIR/logs/<trial_id>.parquet
    ParquetLogger(tmp_path / "logs")                                              # an explicit folder (tests)
"""
from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
from ray import tune

from analysis.files import atomic_path

# The contract's columns, in this order, then config/<name>, then per-variant test metrics.
METRIC_COLUMNS = ["trial_id", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "lr",
                  "compile_seconds",  # a compiled run's first epoch only (null elsewhere)
                  "val_loss", "val_acc"]  # on the held-out validation split (null when val_per_class is 0)
# A cached-mode transfer trial's feature pass (its cache key) and how many of that pass's images it used, on every
# row: the report splits the pass's seconds (RUN_DIR/features.json) between trials by these counts.
FEATURE_COLUMNS = ["feature_key", "feature_images"]
# Per trial, repeated on its rows: where it stands, why it stopped (completed, diverged, error; schedulers add
# their own), the last error's message, how many times it failed and was retried, and the CPUs and GPU share it
# held (null when the runner did not say), so reports can turn epoch seconds into GPU-seconds.
TRIAL_COLUMNS = ["status", "stop_reason", "error", "failures", "cpus", "gpus"]
_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
# A trial file holds tens of rows: column statistics and dictionary pages buy nothing there, and skipping them makes
# each file ~40% cheaper to open and decode, which is what reading 20,000 trial files costs (benchmarks/analysis_scale.py).
WRITE_OPTIONS = {"write_statistics": False, "use_dictionary": False}


def _arrow_type(tp: Any) -> pa.DataType | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return _ARROW.get(tp)


class ParquetLogger(tune.Callback):
    """Writes `<logs folder>/<trial_id>.parquet` after every result; status: running, terminated or error.

    `config_types` (name → Python type, e.g. `Config.field_types()`) fixes the Arrow type of each
    `config/<name>` column, so files where an optional value is None still share one schema with the rest.
    `resources` ({"cpu": 2, "gpu": 0.25}, what `tune.with_resources` got) fills the cpus and gpus columns.
    `phase` ("search" or "confirm"), when given, fills a phase column.
    """

    def __init__(self, logs_dir: str | Path | None = None, config_types: dict[str, Any] | None = None,
                 early_stop_reason: Callable[[str], str] | None = None,
                 resources: dict[str, float] | None = None, phase: str | None = None):
        self.logs_dir = None if logs_dir is None else Path(logs_dir)
        self.phase = phase  # a search's "search" or "confirm" trials (sweeps/confirm.py); None: no phase column
        self._dirs: dict[str, Path] = {}  # trial_id → its logs folder, found when the trial first reports
        resources = resources or {}
        self.resources = {"cpus": _float_or_none(resources.get("cpu")), "gpus": _float_or_none(resources.get("gpu"))}
        # trial_id → why a trial that ended before its epoch budget was stopped (asha, plateau)
        self.early_stop_reason = early_stop_reason
        self.config_types = {k: t for k, v in (config_types or {}).items() if (t := _arrow_type(v)) is not None}
        self._rows: dict[str, dict[int, dict[str, Any]]] = {}
        self._trial: dict[str, dict[str, Any]] = {}  # TRIAL_COLUMNS per trial

    # -- Tune hooks -------------------------------------------------------------------------------------------
    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if "epoch" not in result:  # only per-epoch reports become rows
            return
        self._locate(trial)
        rows = self._trial_rows(trial.trial_id)
        rows[int(result["epoch"])] = self.make_row(trial.trial_id, trial.config, result)
        state = self._trial_state(trial)
        state["status"] = "running"
        if result.get("stop_reason"):
            state["stop_reason"] = result["stop_reason"]
        self._write(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._locate(trial)
        state = self._trial_state(trial)
        reason = state.get("stop_reason")
        if reason is None:
            rows = self._trial_rows(trial.trial_id)
            planned = trial.config.get("epochs")
            early = rows and planned is not None and max(rows) < planned
            reason = (self.early_stop_reason(trial.trial_id) if self.early_stop_reason else "stopped") \
                if early else "completed"
        state.update(status="terminated", stop_reason=reason)
        self._finish(trial.trial_id)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._locate(trial)
        self._trial_state(trial)["error"] = _last_error_line(trial)  # retried; the rows so far stay
        self._finish(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._locate(trial)
        self._trial_state(trial).update(status="error", stop_reason="error", error=_last_error_line(trial))
        self._finish(trial.trial_id)  # rows already written stay

    # -- rows ---------------------------------------------------------------------------------------------------
    @staticmethod
    def make_row(trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"trial_id": trial_id, "epoch": int(result["epoch"])}
        for key in METRIC_COLUMNS[2:]:
            row[key] = result.get(key)
        for key in FEATURE_COLUMNS:
            if key in result:
                row[key] = result[key]
        for key, value in sorted(config.items()):
            row[f"config/{key}"] = value
        for key, value in sorted(result.items()):  # per-variant metrics: test_acc/clean, test_loss/zoom, ...
            if key.startswith(("test_acc/", "test_loss/", "train_acc/", "train_loss/")):
                row[key] = value
        return row

    def _trial_rows(self, trial_id: str) -> dict[int, dict[str, Any]]:
        if trial_id not in self._rows:
            path = self._path(trial_id)
            previous: dict[int, dict[str, Any]] = {}
            if path.exists():  # a resumed sweep: continue from what the earlier driver wrote
                for row in pq.read_table(path).to_pylist():
                    for key in TRIAL_COLUMNS:
                        row.pop(key, None)
                    previous[int(row["epoch"])] = row
            self._rows[trial_id] = previous
        return self._rows[trial_id]

    def _trial_state(self, trial) -> dict[str, Any]:
        state = self._trial.setdefault(trial.trial_id, {"status": "running", "stop_reason": None, "error": None})
        state["failures"] = int(getattr(trial, "num_failures", 0) or 0)
        return state

    def _finish(self, trial_id: str) -> None:
        if self._trial_rows(trial_id):
            self._write(trial_id)

    def _locate(self, trial) -> None:
        if trial.trial_id not in self._dirs:
            self._dirs[trial.trial_id] = self.logs_dir or Path(trial.storage.experiment_fs_path).parent / "logs"

    def _path(self, trial_id: str) -> Path:
        return self._dirs[trial_id] / f"{trial_id}.parquet"

    def table(self, trial_id: str) -> pa.Table:
        """The trial's rows as written (after the trial has reported through a hook)."""
        state = self._trial.get(trial_id, {})
        trial_values = {"status": state.get("status", "running"), "stop_reason": state.get("stop_reason"),
                        "error": state.get("error"), "failures": state.get("failures", 0), **self.resources}
        if getattr(self, "phase", None) is not None:  # a logger pickled by an older version has no phase
            trial_values["phase"] = self.phase
        rows = [dict(r, **trial_values) for _, r in sorted(self._trial_rows(trial_id).items())]
        names = METRIC_COLUMNS + TRIAL_COLUMNS
        names += sorted({k for r in rows for k in r if k.startswith("config/")})
        names += sorted({k for r in rows for k in r if k not in names})
        fields = []
        for name in names:
            values = [r.get(name) for r in rows]
            if name in ("trial_id", "status", "stop_reason", "error", "phase", "feature_key"):
                tp = pa.string()
            elif name in ("epoch", "failures"):
                tp = pa.int64()
            elif name in ("cpus", "gpus", "feature_images"):
                tp = pa.float64()  # fractional GPU shares (0.25) are common
            elif name.startswith("config/") and name[7:] in self.config_types:
                tp = self.config_types[name[7:]]
            elif name in METRIC_COLUMNS or name.split("/")[0] in METRIC_COLUMNS:
                tp = pa.float64()  # metrics are always float, even when a value happens to be missing
            else:
                tp = pa.array(values).type
            fields.append((name, pa.array(values, type=tp)))
        return pa.table(dict(fields))

    def _write(self, trial_id: str) -> None:
        """Rewrite the trial's file through a hidden temporary file and a rename."""
        self._path(trial_id).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._path(trial_id)) as tmp:  # readers see the old file or the new one, never half
            pq.write_table(self.table(trial_id), tmp, **WRITE_OPTIONS)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _last_error_line(trial) -> str:
    """The message of the trial's latest exception (the last line of Tune's error trace)."""
    text = ""
    try:
        # Tune writes the error into the driver's staging folder first (error_file) and copies it to RUN_DIR/tune
        # later, where get_error() reads: the staging copy is there by the time this hook runs
        local = getattr(trial, "error_file", None)
        if isinstance(local, str) and Path(local).is_file():
            text = Path(local).read_text(errors="replace")
        if not text.strip():
            text = trial.get_error() or ""
    except Exception:  # the error file is not readable (yet): the status still says error
        pass
    if not isinstance(text, str):
        text = str(text)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "unknown error (see the trial folder in RUN_DIR/tune)"
