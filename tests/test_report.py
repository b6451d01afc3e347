"""Tests for analysis.logs and analysis.report on a small logs folder with hand-picked numbers (no ray, no torch
in the report; the fixture writes through the sweep's real ParquetLogger).

    python -m pytest tests/test_report.py -q

The fixture writes 2 groups (lr) x 3 seeds x 5 epochs, one Parquet file per trial, plus, by hand, what the
logger never writes: a stale duplicate file from before a restore, a corrupt file, an empty file and a
foreign-schema file. Every expected number below is worked out by hand from CURVES.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.logs import group_columns, group_label, group_labels, load_logs
from analysis.report import build_report
from helpers import PNG_MAGIC, ROOT, LogTrial, epoch_metrics, write_logs

EPOCHS = 5
CURVES = {  # trial_id -> (lr, seed, test_acc per epoch, test_loss per epoch)
    # a0: best acc 0.8 first reached at epoch 2 (tied at 4), best loss 0.5 at 3, final 0.75
    "a0": (0.01, 0, [0.5, 0.8, 0.7, 0.8, 0.75], [1.0, 0.6, 0.5, 0.55, 0.7]),
    "a1": (0.01, 1, [0.6, 0.7, 0.9, 0.85, 0.85], [0.9, 0.7, 0.4, 0.45, 0.5]),  # best 0.9 at 3, final 0.85
    "a2": (0.01, 2, [0.7, 0.65, 0.6, 0.6, 0.65], [0.5, 0.6, 0.7, 0.8, 0.9]),  # best 0.7 at 1, final 0.65
    "b0": (0.1, 0, [0.2, 0.4, 0.5, 0.6, 0.6], [2.0, 1.5, 1.2, 1.0, 1.1]),  # best 0.6 at 4, loss 1.0 at 4
    "b1": (0.1, 1, [0.3, 0.5, 0.7, 0.6, 0.7], [1.8, 1.2, 0.9, 1.0, 0.95]),  # best 0.7 at 3 (tied at 5)
    "b2": (0.1, 2, [0.1, 0.2, 0.3, 0.4, 0.5], [2.3, 2.0, 1.8, 1.6, 1.4]),  # best 0.5 at 5, loss 1.4 at 5
}
SKIPPED = ["empty.parquet", "foreign.parquet", "x.parquet"]


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    logs = tmp_path / "run" / "logs"
    trials = [LogTrial(tid, {"lr": lr, "seed": seed, "batch_size": 64, "train_per_class": None},  # None: all images
                       [epoch_metrics(a, l, 2.0, lr, **{"test_acc/elastic": a - 0.2}) for a, l in zip(acc, loss)])
              for tid, (lr, seed, acc, loss) in CURVES.items()]
    write_logs(logs, trials, config_types={"lr": float, "seed": int, "batch_size": int, "train_per_class": int})
    # A stale copy of a0 from before a restore, with another epoch 5. Its name sorts after a0.parquet, so only
    # the write time can tell that it must lose.
    stale = pq.read_table(logs / "a0.parquet").to_pandas()
    stale.loc[stale["epoch"] == 5, "test_acc"] = 0.99
    pq.write_table(pa.Table.from_pandas(stale, preserve_index=False), logs / "a0_before_restore.parquet")
    earlier = (logs / "a0.parquet").stat().st_mtime - 10
    os.utime(logs / "a0_before_restore.parquet", (earlier, earlier))
    (logs / "x.parquet").write_bytes(np.random.default_rng(1).bytes(300))
    (logs / "empty.parquet").write_bytes(b"")
    pd.DataFrame({"foo": [1, 2]}).to_parquet(logs / "foreign.parquet")
    return tmp_path / "run"


def test_load_logs_dedupes_and_skips_bad_files(run_dir):
    df = load_logs(run_dir)
    assert len(df) == 6 * EPOCHS  # the duplicated (a0, 1..5) counted once
    assert not df.duplicated(["trial_id", "epoch"]).any()
    assert df.loc[(df.trial_id == "a0") & (df.epoch == 5), "test_acc"].item() == 0.75  # the last write won
    assert list(df.groupby("trial_id").epoch.apply(list).iloc[0]) == [1, 2, 3, 4, 5]
    assert sorted(s["file"] for s in df.attrs["skipped"]) == SKIPPED
    assert group_columns(df) == ["config/lr"]  # seed excluded, constant batch_size / null column dropped
    assert group_label(df.iloc[0], ["config/lr"]) == "lr=0.01"
    assert group_label({"config/seed": 1, "config/train_per_class": None}) == "train_per_class=None"
    assert group_label(df.iloc[0], []) == "all trials"


def test_rounded_legend_labels_keep_distinct_values_apart():
    """Legends round floats (digits=3), but never so far that two searched learning rates read the same."""
    lrs = [0.0012341, 0.0012349, 0.01, 0.0123456789]
    frame = pd.DataFrame({"config/lr": lrs, "config/batch_size": [64, 64, 128, 128]})
    assert group_labels(frame, ["config/lr"], digits=3) == ["lr=0.001234", "lr=0.001235", "lr=0.01", "lr=0.0123"]
    assert group_labels(frame, ["config/lr"]) == [f"lr={v}" for v in lrs]  # exact without digits: they key groups
    assert group_labels(frame.iloc[2:], ["config/lr", "config/batch_size"], digits=3) == [
        "lr=0.01, batch_size=128", "lr=0.0123, batch_size=128"]


def test_report_tables_hold_hand_known_numbers(run_dir):
    index = build_report(run_dir)
    out = run_dir / "report"
    assert index == out / "index.html"
    trials = pd.read_csv(out / "trials.csv").set_index("trial_id")
    assert sorted(trials.index) == sorted(CURVES)
    cols = ["best_test_acc [fraction]", "best_acc_epoch", "best_test_loss", "best_loss_epoch",
            "final_test_acc [fraction]"]
    expected = {"a0": [0.8, 2, 0.5, 3, 0.75],  # earliest epoch on ties
                "a1": [0.9, 3, 0.4, 3, 0.85], "a2": [0.7, 1, 0.5, 1, 0.65],
                "b0": [0.6, 4, 1.0, 4, 0.6], "b1": [0.7, 3, 0.9, 3, 0.7], "b2": [0.5, 5, 1.4, 5, 0.5]}
    for tid, values in expected.items():
        row = trials.loc[tid]
        assert row[cols].tolist() == pytest.approx(values), tid
        assert row["final_test_acc/elastic [fraction]"] == pytest.approx(values[-1] - 0.2)
        assert (row["epochs"], row["status"], row["total_seconds"]) == (EPOCHS, "terminated", 10.0)
        lr, seed = CURVES[tid][:2]
        assert (row["config/lr"], row["config/seed"], row["group"]) == (lr, seed, f"lr={lr}")

    groups = pd.read_csv(out / "groups.csv").set_index("group")
    assert list(groups.index) == ["lr=0.01", "lr=0.1"]
    assert (groups["n_seeds"] == 3).all()
    # lr=0.01: best 0.8/0.9/0.7 at epochs 2/3/1, final 0.75/0.85/0.65; lr=0.1: best 0.6/0.7/0.5 at 4/3/5,
    # final 0.6/0.7/0.5. Every spread is ±0.1 (or ±1 epoch) around the mean: std (ddof=1) 0.1 (or 1).
    cols = ["best_test_acc_mean [fraction]", "best_test_acc_std [fraction]", "best_acc_epoch_mean",
            "best_acc_epoch_std", "final_test_acc_mean [fraction]", "final_test_acc_std [fraction]"]
    assert groups.loc["lr=0.01", cols].tolist() == pytest.approx([0.8, 0.1, 2, 1, 0.75, 0.1])
    assert groups.loc["lr=0.1", cols].tolist() == pytest.approx([0.6, 0.1, 4, 1, 0.6, 0.1])

    cur = pd.read_csv(out / "curves.csv")
    assert len(cur) == 2 * EPOCHS and not cur.duplicated(["group", "epoch"]).any()
    rows = cur[cur.group == "lr=0.1"].set_index("epoch")
    assert rows["n"].tolist() == [3] * EPOCHS
    cols = [f"test_acc_{s} [fraction]" for s in ("mean", "std", "min", "max")]
    assert rows.loc[1, cols].tolist() == pytest.approx([0.2, 0.1, 0.1, 0.3])  # 0.2, 0.3, 0.1
    assert rows.loc[5, cols].tolist() == pytest.approx([0.6, 0.1, 0.5, 0.7])  # 0.6, 0.7, 0.5


def test_report_pages_and_plots(run_dir):
    index = build_report(run_dir, run_dir / "elsewhere")
    out = index.parent
    assert out == run_dir / "elsewhere"
    page, md = index.read_text(), (out / "report.md").read_text()
    for png in ("test_acc.png", "test_loss.png"):
        data = (out / png).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)
        assert f"src='{png}'" in page and f"]({png})" in md
    assert "6 trials in 2 group(s)" in md and "6 trials in 2 group(s)" in page
    assert "hindsight" in md and "hindsight" in page
    for bad in ("x.parquet", "empty.parquet", "foreign.parquet"):
        assert bad in md and bad in page
    assert "| a0 |" in md and "<td>a0</td>" in page
    assert not list(out.glob(".*.tmp*"))  # atomic writes left no temp files behind


def test_cli_missing_logs_exits_2(tmp_path):
    missing = tmp_path / "no-such-run"
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(missing)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "no logs in" in proc.stderr and str(missing) in proc.stderr and "sweeps/" in proc.stderr


def test_cli_writes_report_without_ray_or_torch(run_dir):
    code = ("import sys; from analysis.report import main; rc = main(sys.argv[1:]); "
            "assert not {'ray', 'torch'} & set(sys.modules), 'analysis imported ray/torch'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("index.html") and Path(proc.stdout.strip()).is_file()


def test_only_bad_files_is_a_clear_error(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(FileNotFoundError, match="no logs in"):
        load_logs(tmp_path)


def test_parallel_reading_gives_the_same_frame(run_dir):
    """The reader processes used for large runs: same rows, same winner of the duplicate, same skipped files."""
    one, two = load_logs(run_dir, workers=1), load_logs(run_dir, workers=3)
    pd.testing.assert_frame_equal(one, two)
    assert sorted(s["file"] for s in two.attrs["skipped"]) == SKIPPED


def test_a_fixed_none_says_what_it_stands_for(tmp_path):
    """A None every trial shares ("test_limit=None") is followed by its meaning, which the sweep wrote into
    sweep.json (analysis reads no config class); without it, the value alone."""
    import json

    run = tmp_path / "run"
    write_logs(run / "logs", [LogTrial(f"t{s}", {"lr": 0.01, "seed": s, "test_limit": None, "epochs": 1},
                                       [epoch_metrics(0.5 + s / 10)]) for s in range(2)],
               config_types={"lr": float, "seed": int, "test_limit": int | None, "epochs": int})

    def fixed():
        md = (build_report(run).parent / "report.md").read_text()
        return next(line for line in md.splitlines() if line.startswith("- Fixed:"))

    assert fixed() == "- Fixed: epochs=1, lr=0.01, test_limit=None."
    (run / "sweep.json").write_text(json.dumps({"configs": [{"lr": 0.01, "seed": 0}],
                                                "none_means": {"test_limit": "the whole test set",
                                                               "lr": "never shown: lr is not None"}}))
    assert fixed() == "- Fixed: epochs=1, lr=0.01, test_limit=None (the whole test set)."
