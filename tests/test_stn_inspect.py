"""STN inspection and the σ curve: θ decomposition, distinct transforms, the σ curve table, and the inspection page
from stand-in checkpoint arrays, through the CLI and in the report (no Ray, no training).

    python -m pytest tests/test_stn_inspect.py -q
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report
from analysis.sigma_curve import sigma_table, write_sigma_curve
from analysis.stn_inspect import ARRAYS, decompose_theta, distinct_transforms, find_inspection
from helpers import PNG_MAGIC, LogTrial, epoch_metrics, run_cli, write_logs


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
    trials = [LogTrial(f"t{i}", {"sigma": sigma, "transformer": "affine", "seed": 0},
                       [epoch_metrics(acc, 1.0, **{"test_acc/clean": 0.9, "test_acc/elastic": elastic,
                                                   "test_acc/zoom": 0.8})
                        for acc, elastic in ((0.5, 0.5), (0.6, 0.9 - i * 0.3))])
              for i, sigma in enumerate((0.0, 2.0, 30.0))]
    write_logs(tmp_path / "logs", trials)
    index = build_report(tmp_path)
    page = index.read_text()
    assert "sigma_curve.png" in page and "failed" not in page
    table = pd.read_csv(tmp_path / "report" / "sigma_curve.csv")
    assert table["test_acc/elastic_mean [fraction]"].round(6).tolist() == [0.9, 0.6, 0.3]
    assert table["ink_in_frame"].isna().all()  # no deformations.csv: the plot shows no ink line


def test_find_inspection_matches_the_whole_trial_id(tmp_path):
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


def _inspection_arrays(kind: str, n: int = 8, test_images: int = 20) -> dict[str, np.ndarray]:
    """Stand-ins for what trainables/stn.py stores: N images per variant (all classified correctly). Affine θ:
    clean is the identity for every test image; elastic samples a half-size region (magnification 2), its last
    quarter reflected. TPS: a 3×3 control grid."""
    rng = np.random.default_rng(0)
    arrays = {"transformer": np.array(kind)}
    if kind == "tps":
        g = np.linspace(-1, 1, 3)
        arrays["base"] = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    for v in ("clean", "elastic"):
        arrays[f"{v}/before"] = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        arrays[f"{v}/after"] = arrays[f"{v}/before"][:, ::-1]
        arrays[f"{v}/labels"] = arrays[f"{v}/pred"] = np.arange(n) % 10
        if kind == "affine" and v == "clean":
            arrays[f"{v}/theta"] = np.repeat(theta_of(0, 1, 1, 0, 0, 0)[None], test_images, axis=0)
        elif kind == "affine":
            flipped = test_images // 4
            arrays[f"{v}/theta"] = np.stack([theta_of(0, 0.5, 0.5, 0, 0, 0)] * (test_images - flipped)
                                            + [theta_of(0, 0.5, -0.5, 0, 0, 0)] * flipped)
        else:
            arrays[f"{v}/points"] = np.repeat(arrays["base"][None] * 0.8, n, axis=0)
    return arrays


@pytest.fixture(scope="module")
def stn_run(tmp_path_factory) -> Path:
    """aff2 is the most accurate affine trial but has no arrays (stopped before its last epoch)."""
    run = tmp_path_factory.mktemp("stn") / "run"
    trials = {"aff1": ("affine", 0.9), "aff2": ("affine", 0.95), "tps1": ("tps", 0.8)}
    write_logs(run / "logs", [LogTrial(tid, {"transformer": kind, "lr": 0.01, "seed": i},
                                       [epoch_metrics(acc - 0.1), epoch_metrics(acc, **{"test_acc/clean": acc})])
                              for i, (tid, (kind, acc)) in enumerate(trials.items())])
    for i, tid in ((0, "aff1"), (2, "tps1")):
        ckpt = run / "tune" / f"train_stn_{tid}_{i}_lr=0.01_2026-11-24_10-00-00" / "checkpoint_000001"
        ckpt.mkdir(parents=True)
        np.savez(ckpt / ARRAYS, **_inspection_arrays(trials[tid][0]))
    return run


def test_inspection_cli_writes_its_page_through_the_shared_writer(stn_run):
    proc = run_cli("-m", "analysis.stn_inspect", str(stn_run), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = stn_run / "report" / "stn_inspect"
    assert proc.stdout.strip() == str(out / "index.html")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["affine-aff1", "tps-tps1"]  # not aff2
    distinct = pd.read_csv(out / "affine-aff1" / "distinct.csv").set_index("variant")
    assert distinct.loc["clean", ["batch_images", "distinct_in_batch", "test_images", "distinct_in_test_set",
                                  "median_magnification", "reflected_pct"]].tolist() == [8, 1, 20, 1, 1, 0]
    assert distinct.loc["elastic", ["distinct_in_batch", "distinct_in_test_set", "median_scale_x",
                                    "median_magnification", "reflected_pct"]].tolist() == [1, 2, 0.5, 2, 25]
    for png in ("affine-aff1/before_after_clean.png", "affine-aff1/theta_hist.png", "tps-tps1/tps_grid_elastic.png"):
        assert (out / png).read_bytes().startswith(PNG_MAGIC)
    page, md = (out / "index.html").read_text(), (out / "inspect.md").read_text()
    assert "<h1>STN inspection</h1>" in page and "src='tps-tps1/tps_grid_elastic.png'" in page
    assert "](affine-aff1/theta_hist.png)" in md and "href='affine-aff1/distinct.csv'" in page
    assert "affine STN, trial aff1 (epoch 2; final accuracy clean 90.0%)" in md
    assert "tps STN, trial tps1 (epoch 2; final accuracy clean 80.0%)" in md
    assert not list(out.rglob(".*.tmp*"))


def test_report_includes_the_inspection(stn_run, tmp_path):
    page = build_report(stn_run, tmp_path).read_text()
    assert "STN inspection: affine STN, trial aff1" in page and "failed" not in page
    assert "src='stn_inspect/tps-tps1/tps_grid_clean.png'" in page
    assert (tmp_path / "stn_inspect" / "affine-aff1" / "theta.csv").is_file()
