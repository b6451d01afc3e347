"""Deformed MNIST: elastic grids per image and seeded, true background, clipping, zoom-out, the on-disk cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.data import MnistData
from trainables.deform import (DeformSpec, cache_path, deformed_mnist, elastic, from_pixels, ink_in_frame,
                               to_pixels, zoom_out)


@pytest.fixture(scope="module")
def small(mnist) -> MnistData:
    return MnistData(mnist.train_images[::50], mnist.train_labels[::50], mnist.test_images[:200],
                     mnist.test_labels[:200], mnist.root)


def test_pixels_round_trip(small):
    px = to_pixels(small.test_images)
    assert px.min() == 0.0 and px.max() == pytest.approx(1.0) and px.shape == (200, 28, 28)
    assert torch.allclose(from_pixels(px), small.test_images, atol=1e-5)


def test_elastic_is_seeded_per_image_and_keeps_range_and_background(small):
    px = to_pixels(small.test_images[:20])
    a = elastic(px, 3.0, 3, np.random.default_rng(0))
    b = elastic(px, 3.0, 3, np.random.default_rng(0))
    c = elastic(px, 3.0, 3, np.random.default_rng(1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.dtype == np.float32
    # corners are background in MNIST and stay background: the fill is the true background (pixel 0)
    assert a[:, 0, 0].max() < 0.01 and a[:, -1, -1].max() < 0.01  # (cubic ringing leaves ~1e-3)
    # every image its own grid: the same image twice is deformed two ways
    twice = elastic(np.stack([px[0], px[0]]), 3.0, 3, np.random.default_rng(0))
    assert not np.allclose(twice[0], twice[1])
    assert np.array_equal(elastic(px, 0.0, 3, np.random.default_rng(0)), px)


def test_large_sigma_pushes_ink_out_of_frame(small):
    px = to_pixels(small.test_images[:100])
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    mild, wild = ink_in_frame(px, elastic(px, 2.0, 3, rng())), ink_in_frame(px, elastic(px, 30.0, 3, rng()))
    assert 0.95 < mild < 1.1
    assert wild < 0.5


def test_zoom_out_shrinks_and_centres(small):
    px = to_pixels(small.test_images[:10])
    z = zoom_out(px, 4.0)
    assert z.shape == px.shape
    assert np.count_nonzero(z[:, :10, :]) == 0 and np.count_nonzero(z[:, 18:, :]) == 0  # 7×7 in rows 10..16
    assert np.count_nonzero(z[:, :, :10]) == 0 and np.count_nonzero(z[:, :, 18:]) == 0
    # area averaging: the ink shrinks with the area, 16x
    assert z.sum() == pytest.approx(px.sum() / 16, rel=1e-4)
    assert np.array_equal(zoom_out(px, 1.0), px)


def test_cache_is_written_once_and_reused(small, tmp_path):
    spec = DeformSpec(sigma=2.0, points=3, zoom=4.0, seed=0)
    first = deformed_mnist(small, spec, tmp_path)
    assert first.seconds > 0 and first.path == str(cache_path(small, spec, tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == [cache_path(small, spec, tmp_path).name]  # no temp file left
    again = deformed_mnist(small, spec, tmp_path)
    assert again.seconds == 0
    for split in ("train", "test"):
        for v in ("clean", "elastic", "zoom"):
            assert torch.equal(getattr(first, split)[v][0], getattr(again, split)[v][0])
            assert torch.equal(getattr(first, split)[v][1], getattr(small, f"{split}_labels"))
    assert first.train["elastic"][0].shape == small.train_images.shape
    assert first.ink["zoom"] == pytest.approx(1.0, abs=1e-3)
    # another σ or seed is another file; a damaged file is recomputed
    other = deformed_mnist(small, DeformSpec(sigma=4.0), tmp_path)
    assert other.path != first.path and not torch.equal(other.test["elastic"][0], first.test["elastic"][0])
    cache_path(small, spec, tmp_path).write_bytes(b"not an npz")
    assert deformed_mnist(small, spec, tmp_path).seconds > 0
    # train and test are deformed with different grids
    assert not torch.equal(first.train["elastic"][0][:5], first.test["elastic"][0][:5])


@pytest.mark.parametrize("transformer", ["affine", "tps", "none"])
def test_deformed_trainable_reports_per_type_metrics_and_inspection(small, tmp_path, transformer):
    from trainables.loop import MemoryReporter
    from trainables.stn import DeformedSTNConfig, train_stn_deformed

    cfg = {"epochs": 2, "transformer": transformer, "train_per_class": 5, "test_limit": 40, "sigma": 2.0}
    sets = deformed_mnist(small, DeformedSTNConfig.from_dict(cfg).deform_spec, tmp_path)
    rep = MemoryReporter()
    train_stn_deformed(cfg, small, deformed={sets.spec.key: sets}, reporter=rep)
    assert [r["epoch"] for r in rep.rows] == [1, 2]
    for v in ("clean", "elastic", "zoom"):
        assert 0 <= rep.rows[-1][f"test_acc/{v}"] <= 1 and rep.rows[-1][f"test_loss/{v}"] > 0
    a = rep.arrays
    assert str(a["transformer"]) == transformer
    assert a["zoom/before"].shape == (40, 28, 28) and a["zoom/before"].dtype == np.uint8
    assert np.array_equal(a["clean/labels"], small.test_labels[:40].numpy())
    if transformer == "affine":
        assert a["elastic/theta"].shape == (40, 2, 3)
    if transformer == "tps":
        assert a["elastic/points"].shape == (40, 16, 2) and a["base"].shape == (16, 2)
    if transformer == "none":  # no transformer: the output is the input
        assert np.abs(a["elastic/after"].astype(int) - a["elastic/before"].astype(int)).max() <= 1


def test_stn_processes_load_elasticdeform_only_to_deform():
    # every STN driver and trial process imports trainables.stn; elasticdeform brings scipy.ndimage with it
    import subprocess
    import sys

    from helpers import ROOT

    probe = ("import sys, trainables.stn, trainables.deform; "
             "print(sorted(m for m in ('elasticdeform', 'scipy.ndimage') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
