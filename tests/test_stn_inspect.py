"""STN inspection arithmetic: θ decomposition, distinct transforms, the σ curve table (no Ray, no training)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.sigma_curve import sigma_table, write_sigma_curve
from analysis.stn_inspect import decompose_theta, distinct_transforms


def theta_of(angle_deg, sx, sy, shear, tx, ty):
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    A = rot @ np.diag([sx, sy]) @ np.array([[1, shear], [0, 1]])
    return np.concatenate([A, [[tx], [ty]]], axis=1)


def test_decomposition_recovers_the_parts():
    theta = np.stack([theta_of(30, 0.5, 0.25, 0.2, 0.1, -0.5), theta_of(-10, 1.0, -1.0, 0.0, 0, 0)])
    d = decompose_theta(theta)
    assert d.loc[0, "rotation_deg"] == pytest.approx(30)
    assert d.loc[0, "scale_x"] == pytest.approx(0.5) and d.loc[0, "scale_y"] == pytest.approx(0.25)
    assert d.loc[0, "shear"] == pytest.approx(0.2)
    assert d.loc[0, "tx_px"] == pytest.approx(1.4) and d.loc[0, "ty_px"] == pytest.approx(-7.0)
    assert d.loc[0, "magnification"] == pytest.approx(1 / math.sqrt(0.125))
    assert not d.loc[0, "reflection"] and d.loc[1, "reflection"]
    assert d.loc[1, "scale_y"] == pytest.approx(-1.0)


def test_distinct_transforms_rounds_to_two_decimals():
    base = theta_of(0, 1, 1, 0, 0, 0)
    theta = np.stack([base, base + 0.001, base + 0.02, base])
    assert distinct_transforms(theta) == 2


def test_sigma_table_means_final_epochs_and_joins_ink(tmp_path):
    rows = []
    for sigma, acc in ((0.0, 0.9), (2.0, 0.8), (30.0, 0.2)):
        for seed in (0, 1):
            for epoch in (1, 2):
                rows.append({"trial_id": f"s{sigma}-{seed}", "epoch": epoch, "config/sigma": sigma,
                             "config/transformer": "affine", "config/seed": seed,
                             "test_acc": acc, "test_acc/elastic": acc - 0.1 * (epoch == 1) + 0.02 * seed,
                             "test_acc/clean": 0.95})
    df = pd.DataFrame(rows)
    pd.DataFrame({"sigma": [0.0, 2.0, 30.0], "ink/elastic": [1.0, 1.01, 0.2]}).to_csv(
        tmp_path / "deformations.csv", index=False)
    table = sigma_table(df, tmp_path)
    assert table["sigma"].tolist() == [0.0, 2.0, 30.0]
    assert table["test_acc/elastic_mean"].round(6).tolist() == [0.91, 0.81, 0.21]  # final epoch, mean of seeds
    assert table["ink_in_frame"].tolist() == [1.0, 1.01, 0.2]
    assert (table["seeds"] == 2).all()
    assert write_sigma_curve(df, tmp_path, tmp_path / "out") == ["sigma_curve.png", "sigma_curve.csv"]
    assert (tmp_path / "out" / "sigma_curve.png").stat().st_size > 10_000
    assert sigma_table(df[df["config/sigma"] == 2.0], tmp_path) is None  # one σ: no curve


def test_report_includes_the_sigma_section_when_sigma_varies(tmp_path):
    from analysis.report import build_report

    logs = tmp_path / "logs"
    logs.mkdir()
    for i, sigma in enumerate((0.0, 2.0, 30.0)):
        pd.DataFrame({"trial_id": f"t{i}", "epoch": [1, 2], "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0,
                      "test_acc": [0.5, 0.6], "epoch_seconds": 1.0, "config/sigma": sigma,
                      "config/transformer": "affine", "config/seed": 0, "test_acc/clean": 0.9,
                      "test_acc/elastic": [0.5, 0.9 - i * 0.3], "test_acc/zoom": 0.8}).to_parquet(logs / f"t{i}.parquet")
    index = build_report(tmp_path)
    page = index.read_text()
    assert "sigma_curve.png" in page and "failed" not in page
    table = pd.read_csv(tmp_path / "report" / "sigma_curve.csv")
    assert table["test_acc/elastic_mean"].round(6).tolist() == [0.9, 0.6, 0.3]
    assert table["ink_in_frame"].isna().all()  # no deformations.csv: the plot shows no ink line


def test_find_inspection_matches_the_whole_trial_id(tmp_path):
    from analysis.stn_inspect import ARRAYS, find_inspection

    tune = tmp_path / "tune"
    # Optuna-searched trials get 8-hex-digit ids that can be all digits; another trial's folder holds the same
    # digits inside a parameter value and must not be taken for it.
    ours = tune / "train_stn_20261124_3_lr=0.01_2026-11-24_10-00-00" / "checkpoint_000002"
    other = tune / "train_stn_a1b2c3d4_4_lr=0.020261124_2026-11-24_10-00-00" / "checkpoint_000009"
    for ckpt in (ours, other):
        ckpt.mkdir(parents=True)
        (ckpt / ARRAYS).write_bytes(b"x")
    assert find_inspection(tmp_path, "20261124") == ours / ARRAYS
    assert find_inspection(tmp_path, "a1b2c3d4") == other / ARRAYS
    assert find_inspection(tmp_path, "ffffffff") is None
