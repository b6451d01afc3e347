"""End to end: the deformed-STN smoke sweep through real Ray Tune on real MNIST: per-type metrics in the logs,
the deformation record, inspection arrays in the final checkpoints and `python -m analysis.stn_inspect`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import ONE_SLOT, run_cli, run_main, SWEEP_TIMEOUT

pytestmark = pytest.mark.slow
VARIANTS = ["clean", "elastic", "zoom"]


@pytest.fixture(scope="module")
def deformed_run(mnist_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deformed")
    run = tmp / "RUN"
    proc = run_cli("sweeps/stn_deformed.py", "--smoke-test", "--data-dir", str(mnist_dir), "--out", str(run),
                   "--cache-dir", str(tmp / "cache"), env=ONE_SLOT, timeout=SWEEP_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run, tmp / "cache", proc


def test_logs_carry_per_type_metrics(deformed_run):
    run, _, _ = deformed_run
    df = pd.read_parquet(run / "logs")
    assert sorted(df["config/transformer"].unique()) == ["affine", "none", "tps"]
    assert len(df) == 3 * 2 and not df.duplicated(["trial_id", "epoch"]).any()
    for v in VARIANTS:
        assert df[f"test_acc/{v}"].between(0, 1).all() and (df[f"test_loss/{v}"] > 0).all()
    # the combined accuracy is the mean of three equally sized test sets (500 images each in the smoke test)
    mean = df[[f"test_acc/{v}" for v in VARIANTS]].mean(axis=1)
    assert np.allclose(df["test_acc"], mean)
    assert (df["config/sigma"] == 1.0).all() and (df["config/zoom"] == 4.0).all() and (df["config/points"] == 3).all()


def test_deformed_set_is_cached_and_recorded(deformed_run):
    run, cache, proc = deformed_run
    files = list(cache.glob("deformed-*.npz"))
    assert len(files) == 1
    rec = pd.read_csv(run / "deformations.csv")
    assert len(rec) == 1 and rec.loc[0, "cache_file"] == str(files[0])
    assert 0.95 < rec.loc[0, "ink/elastic"] < 1.1 and rec.loc[0, "ink/zoom"] == pytest.approx(1.0, abs=1e-3)
    assert "computed in" in proc.stdout


def test_inspection_artefacts_for_affine_and_tps(deformed_run, tmp_path):
    run, _, _ = deformed_run
    proc = run_cli("-m", "analysis.stn_inspect", str(run), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    affine = next(tmp_path.glob("affine-*"))
    tps = next(tmp_path.glob("tps-*"))
    for d in (affine, tps):
        for v in VARIANTS:
            assert (d / f"before_after_{v}.png").stat().st_size > 10_000
    theta = pd.read_csv(affine / "theta.csv")
    assert len(theta) == 3 * 64 and set(theta["variant"]) == set(VARIANTS)
    assert {"tx_px", "ty_px", "scale_x", "scale_y", "rotation_deg", "shear", "reflection"} <= set(theta)
    distinct = pd.read_csv(affine / "distinct.csv")
    assert (distinct["test_images"] == 500).all()
    assert ((distinct["distinct_in_batch"] >= 1) & (distinct["distinct_in_batch"] <= 64)).all()
    assert (affine / "theta_hist.png").exists()
    for v in VARIANTS:
        assert (tps / f"tps_grid_{v}.png").stat().st_size > 10_000
    html = (tmp_path / "index.html").read_text()
    assert "theta_hist.png" in html and "tps_grid_elastic.png" in html


def test_bad_sigma_is_refused_before_ray(mnist_dir, tmp_path):
    proc = run_main("stn_deformed", "--sigma", "-1", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "config 'sigma' = -1.0 is out of range: must be >= 0" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_original_study_setting_dry_run():
    proc = run_main("stn_deformed", "--dry-run", "--sigma", "30", "--points", "3", "--transformers", "affine")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if '"sigma": 30.0' in line]
    assert len(lines) == 3 and all('"points": 3' in line and '"transformer": "affine"' in line for line in lines)


def test_report_shows_the_inspection(deformed_run):
    run, _, _ = deformed_run
    page = (run / "report" / "index.html").read_text()
    assert "STN inspection: affine STN" in page and "STN inspection: tps STN" in page
    assert "failed" not in page
    pngs = list((run / "report" / "stn_inspect").glob("*/*.png"))
    assert len(pngs) == 3 + 1 + 3 + 3  # before/after x3 + θ histograms (affine), before/after x3 + grids x3 (TPS)
    for png in pngs:
        assert f"stn_inspect/{png.parent.name}/{png.name}" in page
