"""Deformed MNIST: elastic (elasticdeform) and zoomed-out copies of every image, cached on disk.

The deformed-STN study trains and tests on clean + elastic + zoom (3x the images), as the original study did.
Deformations run on raw pixel values in [0, 1] with background 0 (the original study deformed normalized
images with fill 0, which is not the background there), then get clipped and normalized like the clean images.

    from trainables.deform import DeformSpec, deformed_mnist
    spec = DeformSpec(sigma=1.0, points=3, zoom=4.0, seed=0)
    sets = deformed_mnist(data, spec, cache_dir="~/.cache/mnist-sweeps/deformed")   # DeformedMnist
    sets.train["elastic"][0].shape    # (5000, 1, 28, 28) normalized, same labels as clean
    sets.ink                          # {"elastic": 0.97, "zoom": 1.0}: digit ink left in frame

A deformed set is computed once per (dataset, spec) and stored as uint8 in an .npz file named by a hash of
both; every trial and every later run reuses it (~24 MB for mnist-5k).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from analysis.files import atomic_path
from trainables.configs import DEFAULT_DEFORM_CACHE, DeformSpec
from trainables.data import MNIST_MEAN, MNIST_STD, MnistData

VARIANTS = ("clean", "elastic", "zoom")
CACHE_VERSION = 1  # bump when the deformation code changes, so old cache files are not reused
DEFAULT_CACHE = DEFAULT_DEFORM_CACHE  # trainables/configs.py: the scripts read it without torch
Split = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DeformedMnist:
    """Normalized N x 1 x 28 x 28 float32 images per variant, for both splits; labels shared across variants."""

    spec: DeformSpec
    train: dict[str, Split]
    test: dict[str, Split]
    ink: dict[str, float]  # mean fraction of a test digit's ink still in the 28 x 28 frame, per variant
    seconds: float  # time to compute (0 when read from the cache)
    path: str = ""


def to_pixels(normalized: torch.Tensor) -> np.ndarray:
    """Normalized N x 1 x 28 x 28 → float32 N x 28 x 28 in [0, 1] (background 0)."""
    return (normalized[:, 0] * MNIST_STD + MNIST_MEAN).clamp_(0, 1).numpy().astype(np.float32)


def from_pixels(pixels: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)) - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def elastic(pixels: np.ndarray, sigma: float, points: int, rng: np.random.Generator) -> np.ndarray:
    """Each image gets its own grid of displacements drawn from `rng`; float in, clipped float out."""
    out = np.empty_like(pixels, dtype=np.float32)
    if sigma == 0:
        out[:] = pixels
        return out
    # imported here: it brings scipy.ndimage, which every other STN driver and trial process would load for nothing
    import elasticdeform

    displacement = rng.standard_normal((len(pixels), 2, points, points)) * sigma
    for i, image in enumerate(pixels):
        # constant mode with cval 0 fills with the true background; cubic overshoot is clipped below
        out[i] = elasticdeform.deform_grid(image, displacement[i], order=3, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def zoom_out(pixels: np.ndarray, factor: float) -> np.ndarray:
    """Every image shrunk `factor` times (area-averaged, so thin strokes fade instead of vanishing) and
    centred on a background-filled frame of the same size."""
    n, h, w = pixels.shape
    sh, sw = max(1, round(h / factor)), max(1, round(w / factor))
    small = F.interpolate(torch.from_numpy(pixels)[:, None], size=(sh, sw), mode="area")[:, 0].numpy()
    out = np.zeros_like(pixels)
    top, left = (h - sh) // 2, (w - sw) // 2
    out[:, top:top + sh, left:left + sw] = small
    return out


def ink_in_frame(before: np.ndarray, after: np.ndarray) -> float:
    """Mean over images of (ink after / ink before): 1 = nothing pushed out of the frame. Small sigmas give
    slightly more than 1: the cubic spline spreads strokes a little."""
    ink = before.reshape(len(before), -1).sum(1)
    return float(np.mean(after.reshape(len(after), -1).sum(1) / np.maximum(ink, 1e-6)))


def _fingerprint(data: MnistData) -> str:
    h = hashlib.sha256()
    for t in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def cache_path(data: MnistData, spec: DeformSpec, cache_dir: str | Path) -> Path:
    key = json.dumps({"data": _fingerprint(data), "version": CACHE_VERSION, **asdict(spec)}, sort_keys=True)
    return Path(cache_dir).expanduser() / f"deformed-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def _compute(data: MnistData, spec: DeformSpec) -> dict[str, np.ndarray]:
    arrays = {}
    for split, images in (("train", data.train_images), ("test", data.test_images)):
        pixels = to_pixels(images)
        # train and test draw from separate streams of the same seed
        rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1])
        arrays[f"{split}/elastic"] = elastic(pixels, spec.sigma, spec.points, rng)
        arrays[f"{split}/zoom"] = zoom_out(pixels, spec.zoom)
        if split == "test":
            # shrinking scales ink by the area ratio by design; what matters is whether any left the frame
            h, w = pixels.shape[1:]
            area = h * w / (max(1, round(h / spec.zoom)) * max(1, round(w / spec.zoom)))
            arrays["ink"] = np.array([ink_in_frame(pixels, arrays["test/elastic"]),
                                      ink_in_frame(pixels, arrays["test/zoom"]) * area])
    return arrays


def deformed_mnist(data: MnistData, spec: DeformSpec, cache_dir: str | Path | None = DEFAULT_CACHE) -> DeformedMnist:
    """The tripled sets for `spec`, read from `cache_dir` when there, else computed and stored there
    (atomically: a temporary file, then a rename). `cache_dir=None` computes without storing."""
    path = cache_path(data, spec, cache_dir) if cache_dir is not None else None
    t0 = time.perf_counter()
    arrays = None
    if path is not None and path.exists():
        try:
            with np.load(path) as f:
                arrays = {k: (f[k].astype(np.float32) / 255.0 if k != "ink" else f[k]) for k in f.files}
        except Exception:  # a damaged cache file is recomputed, never fatal
            arrays = None
    seconds = 0.0
    if arrays is None:
        arrays = _compute(data, spec)
        seconds = time.perf_counter() - t0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # uint8, like MNIST itself: 4x smaller than float32, and 1/255 steps are far below what training sees
            with atomic_path(path) as tmp:
                np.savez(tmp, **{k: (np.rint(v * 255).astype(np.uint8) if k != "ink" else v)
                                 for k, v in arrays.items()})
        # what trials get is what a later run reads back from the cache
        arrays = {k: (np.rint(v * 255) / 255.0).astype(np.float32) if k != "ink" else v for k, v in arrays.items()}
    train = {"clean": (data.train_images, data.train_labels)}
    test = {"clean": (data.test_images, data.test_labels)}
    for v in VARIANTS[1:]:
        train[v] = (from_pixels(arrays[f"train/{v}"]), data.train_labels)
        test[v] = (from_pixels(arrays[f"test/{v}"]), data.test_labels)
    ink = {"clean": 1.0, **{v: float(x) for v, x in zip(VARIANTS[1:], arrays["ink"])}}
    return DeformedMnist(spec, train, test, ink, seconds, str(path or ""))
