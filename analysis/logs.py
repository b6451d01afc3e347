"""Load the per-epoch Parquet logs that a sweep writes to RUN_DIR/logs/ (one file per trial).

    from analysis.logs import load_logs, group_columns
    df = load_logs("runs/stn_mnist")      # one row per (trial_id, epoch), sorted
    df.attrs["skipped"]                   # [{"file": ..., "reason": ...}] for unreadable files

A "group" is a configuration without its seed: every ``config/*`` column except ``config/seed``.
Nothing here imports ray or torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

CONFIG_PREFIX = "config/"
SEED_COLUMN = "config/seed"
REQUIRED_COLUMNS = ("trial_id", "epoch", "test_acc", "test_loss")


def _no_logs(run_dir: Path, detail: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"no logs in {run_dir} ({detail}): run a sweep first, e.g. python sweeps/stn_mnist.py --out {run_dir}"
    )


def _read_one(path: Path) -> pd.DataFrame:
    """Read one trial file; raise ValueError with a short reason when it is not a usable log."""
    part = pq.read_table(path).to_pandas()
    missing = [c for c in REQUIRED_COLUMNS if c not in part.columns]
    if missing:
        raise ValueError(f"not a trial log: missing columns {', '.join(missing)}")
    part = part.dropna(subset=["trial_id", "epoch"])
    if part.empty:
        raise ValueError("no rows")
    return part


def load_logs(run_dir: str | Path) -> pd.DataFrame:
    """Read RUN_DIR/logs file by file, skipping bad files, with (trial_id, epoch) unique and sorted."""
    run_dir = Path(run_dir)
    logs = run_dir / "logs"
    if not logs.is_dir():
        raise _no_logs(run_dir, f"{logs} does not exist")
    # Same files pyarrow's dataset reader would see (it ignores names starting with "." or "_", e.g.
    # temp files). Oldest first, so that "keep last" below prefers the most recently written row.
    files = [p for p in logs.rglob("*.parquet") if p.is_file() and not p.name.startswith((".", "_"))]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name))
    frames, skipped = [], []
    for path in files:
        try:
            frames.append(_read_one(path))
        except Exception as exc:  # one corrupt, empty or foreign file must not hide the other trials
            # pyarrow repeats the absolute path in its messages; the file name is listed already.
            reason = str(exc).replace(str(path), path.name).strip().split("\n")[0] or type(exc).__name__
            skipped.append({"file": str(path.relative_to(logs)), "reason": reason[:200]})
    if not frames:
        detail = f"{len(skipped)} unreadable file(s) in {logs}" if skipped else f"{logs} has no .parquet files"
        raise _no_logs(run_dir, detail)
    df = pd.concat(frames, ignore_index=True, sort=False)
    df["trial_id"] = df["trial_id"].astype(str)
    df["epoch"] = df["epoch"].astype("int64")
    # A trial restored from a checkpoint re-reports the epochs after it: the later report wins.
    df = df.drop_duplicates(["trial_id", "epoch"], keep="last")
    df = df.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    df.attrs["skipped"] = skipped
    return df


def config_columns(df: pd.DataFrame) -> list[str]:
    """All hyperparameter columns (``config/<name>``), in log order."""
    return [c for c in df.columns if c.startswith(CONFIG_PREFIX)]


def format_value(value, digits: int | None = None) -> str:
    """Exact text for a config value (nulls -> "None", 10.0 -> "10"); ``digits`` rounds floats for display."""
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "None"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # ints become floats in Parquet when some trials have nulls
    if isinstance(value, float) and digits:
        return f"{value:.{digits}g}"
    return str(value)  # str(float) is the shortest text that round-trips, so distinct values stay distinct


def group_columns(df: pd.DataFrame) -> list[str]:
    """Config columns that define a group: all but the seed, and only those that vary in this run."""
    return [c for c in config_columns(df) if c != SEED_COLUMN and df[c].map(format_value).nunique() > 1]


def group_label(row, columns: list[str] | None = None, digits: int | None = None) -> str:
    """Legend text such as "lr=0.01, batch_size=64" for one row (a Series or dict); "all trials" if empty.

    Without ``columns`` every config key of the row except the seed is used; pass ``group_columns(df)``
    to show only what varies. Labels are exact (they key the groups) unless ``digits`` rounds floats.
    """
    if columns is None:
        columns = [c for c in row.keys() if c.startswith(CONFIG_PREFIX) and c != SEED_COLUMN]
    parts = [f"{c.removeprefix(CONFIG_PREFIX)}={format_value(row[c], digits)}" for c in columns]
    return ", ".join(parts) or "all trials"
