"""Tests for the transfer-learning parts of analysis.report: the size-effect table and figure (the original
study's Table 2) and the per-model curve panels (its Tables 3 and 4), on small hand-made logs (no ray, no torch).

    python -m pytest tests/test_report_transfer.py -q

The fixture writes 2 models x 3 training-set sizes (10, 30, 100: text order would put 100 before 30)
x 2 seeds x 4 epochs, one Parquet file per trial, and checks the size-effect table against numpy.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODELS = ("vgg19", "resnet50")  # written in this order; the report sorts them
SIZES = (100, 10, 30)  # written out of order on purpose
SEEDS = (0, 1)
EPOCHS = 4


def _trials() -> dict[str, tuple[str, int, int, np.ndarray, np.ndarray]]:
    """trial_id -> (model, train_per_class, seed, test_acc per epoch, test_loss per epoch)."""
    rng = np.random.default_rng(7)
    out = {}
    for model in MODELS:
        for size in SIZES:
            for seed in SEEDS:
                acc = np.round(rng.uniform(0.1, 0.99, EPOCHS), 4)
                loss = np.round(rng.uniform(0.05, 2.3, EPOCHS), 4)
                out[f"{model}-{size}-{seed}"] = (model, size, seed, acc, loss)
    return out


def _frame(tid, config: dict, acc, loss) -> pd.DataFrame:
    frame = pd.DataFrame({
        "trial_id": tid, "epoch": range(1, len(acc) + 1),
        "train_loss": np.asarray(loss) * 0.5, "train_acc": np.minimum(np.asarray(acc) + 0.05, 1.0),
        "test_loss": loss, "test_acc": acc, "epoch_seconds": 1.5,
    })
    for key, value in config.items():
        frame[f"config/{key}"] = value
    return frame


def _write_logs(run: Path, trials: dict) -> Path:
    logs = run / "logs"
    logs.mkdir(parents=True)
    for tid, (model, size, seed, acc, loss) in trials.items():
        config = {"model": model, "train_per_class": size, "seed": seed, "weights": "imagenet",
                  "image_size": 64, "backbone_mode": "cached", "epochs": EPOCHS, "lr": 0.001}
        _frame(tid, config, acc, loss).to_parquet(logs / f"{tid}.parquet", index=False)
    return run


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    return struct.unpack(">II", data[16:24])  # IHDR width, height


@pytest.fixture(scope="module")
def transfer_report(tmp_path_factory) -> Path:
    run = _write_logs(tmp_path_factory.mktemp("transfer") / "run", _trials())
    return build_report(run).parent


def test_size_effect_table_matches_numpy(transfer_report):
    table = pd.read_csv(transfer_report / "size_effect.csv")
    assert len(table) == len(MODELS) * len(SIZES)
    expected_order = [(m, s) for m in sorted(MODELS) for s in sorted(SIZES)]  # 10 < 30 < 100, not text order
    assert list(zip(table["config/model"], table["config/train_per_class"])) == expected_order
    assert table["line"].tolist() == [f"model={m}" for m, _ in expected_order]
    assert (table["n_seeds"] == len(SEEDS)).all()
    trials = _trials()
    for row in table.itertuples(index=False):
        runs = [trials[f"{row[1]}-{row[2]}-{seed}"] for seed in SEEDS]
        values = {
            "best_test_acc": np.array([acc.max() for *_, acc, _ in runs]),
            "best_acc_epoch": np.array([np.argmax(acc) + 1 for *_, acc, _ in runs], dtype=float),
            "best_test_loss": np.array([loss.min() for *_, loss in runs]),
            "best_loss_epoch": np.array([np.argmin(loss) + 1 for *_, loss in runs], dtype=float),
        }
        got = row._asdict()
        for name, v in values.items():
            assert got[f"{name}_mean"] == pytest.approx(v.mean()), name
            assert got[f"{name}_std"] == pytest.approx(v.std(ddof=1)), name


def test_size_effect_and_model_panels_in_pages(transfer_report):
    out = transfer_report
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert "src='size_effect.png'" in page and "](size_effect.png)" in md
    assert "hindsight on the test set" in page.split("size_effect.png")[1].split("</figure>")[0]
    assert "size_effect.csv" in md and "href='size_effect.csv'" in page
    width, height = _png_size(out / "size_effect.png")
    assert width > 600 and height > 400
    for png in ("test_acc.png", "test_loss.png"):
        width, _ = _png_size(out / png)
        assert width > 1000  # two model panels side by side are wider than the single-axes plot
        assert f"src='{png}'" in page and f"]({png})" in md
    assert "one panel per model" in md
    groups = pd.read_csv(out / "groups.csv")
    # Groups keep the numeric size order too (the size-effect and curve legends follow it).
    assert groups["config/train_per_class"].tolist() == [s for _ in MODELS for s in sorted(SIZES)]


def test_only_size_varies_gives_one_all_trials_line(tmp_path):
    trials = {k: v for k, v in _trials().items() if v[0] == "resnet50"}
    out = build_report(_write_logs(tmp_path / "run", trials)).parent
    table = pd.read_csv(out / "size_effect.csv")
    assert table["line"].tolist() == ["all trials"] * len(SIZES)
    assert table["config/train_per_class"].tolist() == sorted(SIZES)
    assert "one panel per model" not in (out / "report.md").read_text()


def test_no_size_variation_writes_no_size_effect(tmp_path):
    # An STN-like run: only lr varies, train_per_class is constant or null, no model column.
    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for lr in (0.01, 0.1):
        for seed in SEEDS:
            acc, loss = rng.uniform(0.1, 0.99, EPOCHS), rng.uniform(0.05, 2.0, EPOCHS)
            config = {"lr": lr, "seed": seed, "train_per_class": pd.Series([None] * EPOCHS, dtype="Int64")}
            _frame(f"stn-{lr}-{seed}", config, acc, loss).to_parquet(logs / f"{lr}-{seed}.parquet", index=False)
    out = build_report(tmp_path / "run").parent
    assert not (out / "size_effect.csv").exists() and not (out / "size_effect.png").exists()
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert "size_effect" not in page and "size_effect" not in md
    assert "panel" not in md
    for png in ("test_acc.png", "test_loss.png"):
        width, _ = _png_size(out / png)
        assert width < 1100
