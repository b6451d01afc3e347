"""Tests for analysis.logs and analysis.report on a small hand-made logs folder (no ray, no torch).

    python -m pytest tests/test_report.py -q

The fixture writes 2 groups (lr) x 3 seeds x 5 epochs, one Parquet file per trial, plus a stale duplicate
row, a corrupt file, an empty file and a foreign-schema file, then checks every table against numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.logs import group_columns, group_label, load_logs
from analysis.report import build_report

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPOCHS = 5
# Hand-picked curves for one trial: best acc 0.8 first reached at epoch 2 (tied at 4), best loss at 3.
A0_ACC = [0.5, 0.8, 0.7, 0.8, 0.75]
A0_LOSS = [1.0, 0.6, 0.5, 0.55, 0.7]


def _curves() -> dict[str, tuple[float, int, np.ndarray, np.ndarray]]:
    """trial_id -> (lr, seed, test_acc per epoch, test_loss per epoch)."""
    rng = np.random.default_rng(0)
    out = {}
    for lr, name in ((0.01, "a"), (0.1, "b")):
        for seed in range(3):
            acc = np.round(rng.uniform(0.1, 0.99, EPOCHS), 4)
            loss = np.round(rng.uniform(0.05, 2.0, EPOCHS), 4)
            out[f"{name}{seed}"] = (lr, seed, acc, loss)
    out["a0"] = (0.01, 0, np.array(A0_ACC), np.array(A0_LOSS))
    return out


def _frame(trial_id, lr, seed, acc, loss, epochs=range(1, EPOCHS + 1)) -> pd.DataFrame:
    epochs = list(epochs)
    return pd.DataFrame({
        "trial_id": trial_id, "epoch": epochs,
        "train_loss": np.asarray(loss) * 0.5, "train_acc": np.minimum(np.asarray(acc) + 0.1, 1.0),
        "test_loss": loss, "test_acc": acc, "test_acc/elastic": np.asarray(acc) - 0.2,
        "epoch_seconds": 2.0, "status": ["running"] * (len(epochs) - 1) + ["terminated"],
        "config/seed": seed, "config/lr": lr, "config/batch_size": 64,
        "config/train_per_class": pd.Series([None] * len(epochs), dtype="Int64"),  # null: "all images"
    })


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    for tid, (lr, seed, acc, loss) in _curves().items():
        frame = _frame(tid, lr, seed, acc, loss)
        if tid == "a0":  # a stale report of epoch 5 from before a restore, overwritten by the retry file below
            frame.loc[frame["epoch"] == 5, "test_acc"] = 0.99
        frame.to_parquet(logs / f"{tid}.parquet", index=False)
    retry = logs / "a0-retry.parquet"
    _frame("a0", 0.01, 0, [A0_ACC[-1]], [A0_LOSS[-1]], epochs=[5]).to_parquet(retry, index=False)
    later = (logs / "a0.parquet").stat().st_mtime + 10
    os.utime(retry, (later, later))  # the retry is the most recent write, so it must win
    (logs / "x.parquet").write_bytes(np.random.default_rng(1).bytes(300))
    (logs / "empty.parquet").write_bytes(b"")
    pd.DataFrame({"foo": [1, 2]}).to_parquet(logs / "foreign.parquet")
    return tmp_path / "run"


def test_load_logs_dedupes_and_skips_bad_files(run_dir):
    df = load_logs(run_dir)
    assert len(df) == 6 * EPOCHS  # the duplicated (a0, 5) counted once
    assert not df.duplicated(["trial_id", "epoch"]).any()
    assert df.loc[(df.trial_id == "a0") & (df.epoch == 5), "test_acc"].item() == A0_ACC[-1]  # last write won
    assert list(df.groupby("trial_id").epoch.apply(list).iloc[0]) == [1, 2, 3, 4, 5]
    assert sorted(s["file"] for s in df.attrs["skipped"]) == ["empty.parquet", "foreign.parquet", "x.parquet"]
    assert group_columns(df) == ["config/lr"]  # seed excluded, constant batch_size / null column dropped
    assert group_label(df.iloc[0], ["config/lr"]) == "lr=0.01"
    assert group_label({"config/seed": 1, "config/train_per_class": None}) == "train_per_class=None"
    assert group_label(df.iloc[0], []) == "all trials"


def test_report_tables_match_numpy(run_dir):
    index = build_report(run_dir)
    out = run_dir / "report"
    assert index == out / "index.html"
    trials = pd.read_csv(out / "trials.csv").set_index("trial_id")
    curves = _curves()
    assert set(trials.index) == set(curves)
    for tid, (lr, seed, acc, loss) in curves.items():
        row = trials.loc[tid]
        assert row["best_test_acc"] == pytest.approx(acc.max())
        assert row["best_acc_epoch"] == np.argmax(acc) + 1  # earliest epoch on ties
        assert row["best_test_loss"] == pytest.approx(loss.min())
        assert row["best_loss_epoch"] == np.argmin(loss) + 1
        assert row["final_test_acc"] == pytest.approx(acc[-1])
        assert row["final_test_acc/elastic"] == pytest.approx(acc[-1] - 0.2)
        assert (row["epochs"], row["status"], row["total_seconds"]) == (EPOCHS, "terminated", 2.0 * EPOCHS)
        assert (row["config/lr"], row["config/seed"], row["group"]) == (lr, seed, f"lr={lr}")
    a0 = trials.loc["a0"]
    assert (a0["best_test_acc"], a0["best_acc_epoch"], a0["best_loss_epoch"]) == (0.8, 2, 3)

    groups = pd.read_csv(out / "groups.csv").set_index("group")
    assert list(groups.index) == ["lr=0.01", "lr=0.1"]
    for name, label in (("a", "lr=0.01"), ("b", "lr=0.1")):
        accs = [curves[f"{name}{s}"][2] for s in range(3)]
        best = np.array([a.max() for a in accs])
        epoch = np.array([np.argmax(a) + 1 for a in accs])
        final = np.array([a[-1] for a in accs])
        g = groups.loc[label]
        assert g["n_seeds"] == 3
        assert g["best_test_acc_mean"] == pytest.approx(best.mean())
        assert g["best_test_acc_std"] == pytest.approx(best.std(ddof=1))
        assert g["best_acc_epoch_mean"] == pytest.approx(epoch.mean())
        assert g["best_acc_epoch_std"] == pytest.approx(epoch.std(ddof=1))
        assert g["final_test_acc_mean"] == pytest.approx(final.mean())
        assert g["final_test_acc_std"] == pytest.approx(final.std(ddof=1))

    cur = pd.read_csv(out / "curves.csv")
    assert len(cur) == 2 * EPOCHS and not cur.duplicated(["group", "epoch"]).any()
    b = np.stack([curves[f"b{s}"][2] for s in range(3)])
    rows = cur[cur.group == "lr=0.1"].sort_values("epoch")
    assert rows["n"].tolist() == [3] * EPOCHS
    np.testing.assert_allclose(rows["test_acc_mean"], b.mean(axis=0))
    np.testing.assert_allclose(rows["test_acc_std"], b.std(axis=0, ddof=1))
    np.testing.assert_allclose(rows["test_acc_min"], b.min(axis=0))
    np.testing.assert_allclose(rows["test_acc_max"], b.max(axis=0))


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
    assert sorted(s["file"] for s in two.attrs["skipped"]) == ["empty.parquet", "foreign.parquet", "x.parquet"]
