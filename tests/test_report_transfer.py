"""Tests for the transfer-learning parts of analysis.report: the size-effect table and figure (the original
study's Table 2) and the per-model curve panels (its Tables 3 and 4), on small logs written through the sweep's
real ParquetLogger (no ray, no torch in the report).

    python -m pytest tests/test_report_transfer.py -q

The fixture writes 2 models x 3 training-set sizes (10, 30, 100: text order would put 100 before 30)
x 2 seeds x 4 epochs, one Parquet file per trial, with hand-picked best accuracies, and checks the size-effect
table against numbers worked out by hand.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import build_report
from helpers import PNG_MAGIC, LogTrial, epoch_metrics, write_logs

BEST = {  # (model, train_per_class) -> best test accuracy of seed 0 and of seed 1
    ("vgg19", 100): (0.80, 0.90), ("vgg19", 10): (0.40, 0.44), ("vgg19", 30): (0.60, 0.66),
    ("resnet50", 100): (0.90, 0.96), ("resnet50", 10): (0.50, 0.60), ("resnet50", 30): (0.70, 0.80),
}  # written in this order, models and sizes out of order on purpose: the report sorts them, sizes numerically
MODELS, SIZES = ("vgg19", "resnet50"), (100, 10, 30)
SEEDS = (0, 1)
EPOCHS = 4
SHAPE = {0: [-0.3, -0.1, 0.0, -0.05], 1: [-0.3, -0.2, -0.1, 0.0]}  # seed 0 peaks at epoch 3, seed 1 at epoch 4


def _trials(models=MODELS) -> list[LogTrial]:
    """Test loss is 1 - accuracy, so the best loss sits at the best accuracy's epoch."""
    config = {"weights": "imagenet", "image_size": 64, "backbone_mode": "cached", "epochs": EPOCHS, "lr": 0.001}
    return [LogTrial(f"{model}-{size}-{seed}", {"model": model, "train_per_class": size, "seed": seed, **config},
                     [epoch_metrics(best[seed] + d, seconds=1.5, lr=0.001) for d in SHAPE[seed]])
            for (model, size), best in BEST.items() if model in models for seed in SEEDS]


def _write_logs(run: Path, trials: list[LogTrial]) -> Path:
    write_logs(run / "logs", trials)
    return run


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    return struct.unpack(">II", data[16:24])  # IHDR width, height


@pytest.fixture(scope="module")
def transfer_report(tmp_path_factory) -> Path:
    run = _write_logs(tmp_path_factory.mktemp("transfer") / "run", _trials())
    return build_report(run).parent


def test_size_effect_table_holds_hand_known_numbers(transfer_report):
    table = pd.read_csv(transfer_report / "size_effect.csv")
    expected_order = [(m, s) for m in ("resnet50", "vgg19") for s in (10, 30, 100)]  # 10 < 30 < 100, not text order
    assert list(zip(table["config/model"], table["config/train_per_class"])) == expected_order
    assert table["line"].tolist() == [f"model={m}" for m, _ in expected_order]
    assert (table["n_seeds"] == len(SEEDS)).all()
    # mean and std (ddof=1) of the two seeds' best accuracies; two values a apart have std a / sqrt(2)
    assert table["best_test_acc_mean [fraction]"].tolist() == pytest.approx([0.55, 0.75, 0.93, 0.42, 0.63, 0.85])
    assert table["best_test_acc_std [fraction]"].tolist() == pytest.approx(
        [0.070711, 0.070711, 0.042426, 0.028284, 0.042426, 0.070711], abs=1e-6)
    assert table["best_test_loss_mean"].tolist() == pytest.approx([0.45, 0.25, 0.07, 0.58, 0.37, 0.15])
    # every size: seed 0 is best at epoch 3, seed 1 at epoch 4
    for name in ("best_acc_epoch", "best_loss_epoch"):
        assert table[f"{name}_mean"].tolist() == [3.5] * 6
        assert table[f"{name}_std"].tolist() == pytest.approx([0.707107] * 6, abs=1e-6)


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
    trials = _trials(models=("resnet50",))
    out = build_report(_write_logs(tmp_path / "run", trials)).parent
    table = pd.read_csv(out / "size_effect.csv")
    assert table["line"].tolist() == ["all trials"] * len(SIZES)
    assert table["config/train_per_class"].tolist() == sorted(SIZES)
    assert table["best_test_acc_mean [fraction]"].tolist() == pytest.approx([0.55, 0.75, 0.93])
    assert "one panel per model" not in (out / "report.md").read_text()


def test_no_size_variation_writes_no_size_effect(tmp_path):
    # An STN-like run: only lr varies, train_per_class is null ("all images"), no model column.
    trials = [LogTrial(f"stn-{lr}-{seed}", {"lr": lr, "seed": seed, "train_per_class": None},
                       [epoch_metrics(acc, lr=lr) for acc in (0.3, 0.5, 0.6, 0.7)])
              for lr in (0.01, 0.1) for seed in SEEDS]
    write_logs(tmp_path / "run" / "logs", trials, config_types={"train_per_class": int})
    out = build_report(tmp_path / "run").parent
    assert not (out / "size_effect.csv").exists() and not (out / "size_effect.png").exists()
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert "size_effect" not in page and "size_effect" not in md
    assert "panel" not in md
    for png in ("test_acc.png", "test_loss.png"):
        width, _ = _png_size(out / png)
        assert width < 1100


def test_epoch_panels_tick_whole_epochs_when_every_trial_peaks_at_the_same_epoch(tmp_path, monkeypatch):
    # every trial's best accuracy and best loss at its last epoch: flat epoch lines, which matplotlib would pad
    # by ±5% into ticks such as 3.975 and 4.025
    from analysis import plots

    figures = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or PNG_MAGIC)
    trials = [LogTrial(f"{size}-{seed}", {"model": "resnet50", "train_per_class": size, "seed": seed,
                                         "epochs": EPOCHS},
                       [epoch_metrics(0.5 + 0.1 * e + 0.01 * seed) for e in range(EPOCHS)])
              for size in SIZES for seed in SEEDS]
    build_report(_write_logs(tmp_path / "run", trials))
    size_figure = next(f for f in figures if [a.get_title() for a in f.axes][:4] == [
        "Best test accuracy", "Best test loss", "Epoch of best accuracy", "Epoch of best loss"])
    for ax in size_figure.axes[2:4]:
        low, high = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if low <= t <= high]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
        assert low <= EPOCHS <= high
