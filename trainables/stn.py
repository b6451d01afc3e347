"""The STN trainables: the tutorial's Spatial Transformer Network (affine, thin-plate spline or none) on MNIST,
plain (`train_stn`) or on the tripled clean + elastic + zoom sets (`train_stn_deformed`).

Run inside Ray Tune by `sweeps/stn_mnist.py` and `sweeps/stn_deformed.py`; callable directly too:

    from trainables.data import load_mnist
    from trainables.stn import STNConfig, train_stn, DeformedSTNConfig, train_stn_deformed
    from trainables.loop import MemoryReporter
    rep = MemoryReporter()
    train_stn({"epochs": 1, "train_per_class": 10}, data=load_mnist("../shared/data/mnist-5k"), reporter=rep)
    train_stn_deformed({"epochs": 1, "transformer": "tps"}, data=..., reporter=rep)   # rep.rows[-1]["test_acc/zoom"]

After the last epoch the trial's checkpoint also holds `inspection.npz` (what `python -m analysis.stn_inspect`
reads): for the first 64 test images of every variant the input and the transformer's output (uint8 pixels),
labels and predictions; for affine θ of every test image; for TPS the predicted control points.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from trainables.configs import DeformedSTNConfig, STNConfig
from trainables.data import MnistData, stratified_split
from trainables.deform import VARIANTS, DeformedMnist, deformed_mnist, to_pixels
from trainables.loop import (Reporter, Split, TuneReporter, fit, make_sgd, pick_device, pin_threads,
                             trial_resources)
from trainables.models import STN, AffineTransformer, TPSTransformer, build_stn

INSPECT_BATCH = 64  # images per variant shown before/after (the tutorial's batch size)


def _pixels(images: torch.Tensor) -> np.ndarray:
    """Normalized N×1×H×W → uint8 N×H×W, for pictures."""
    return np.rint(to_pixels(images.cpu()) * 255).astype(np.uint8)


@torch.inference_mode()
def inspection_arrays(model: STN, tests: Mapping[str, Split], batch: int = INSPECT_BATCH) -> dict[str, np.ndarray]:
    """What the transformer does, per test variant (see the module docstring for the keys)."""
    model.eval()
    device = next(model.parameters()).device
    tr = model.transformer
    kind = "affine" if isinstance(tr, AffineTransformer) else "tps" if isinstance(tr, TPSTransformer) else "none"
    out: dict[str, np.ndarray] = {"transformer": np.array(kind)}
    if kind == "tps":
        out["base"] = tr.base.cpu().numpy()
    for name, (x, y) in tests.items():
        xb = x[:batch].to(device)
        out[f"{name}/before"] = _pixels(xb)
        out[f"{name}/after"] = _pixels(tr(xb))
        out[f"{name}/labels"] = y[:batch].cpu().numpy()
        out[f"{name}/pred"] = model(xb).argmax(1).cpu().numpy()
        if kind == "affine":  # every test image: how many distinct transforms the model uses
            out[f"{name}/theta"] = torch.cat([tr.theta(x[i:i + 1000].to(device)).cpu()
                                              for i in range(0, len(x), 1000)]).numpy()
        elif kind == "tps":
            out[f"{name}/points"] = tr.control_points(xb).cpu().numpy()
    return out


def _train(cfg: STNConfig, train: Split, tests: dict[str, Split], reporter: Reporter | None,
           val: Split | None = None) -> None:
    reporter = reporter or TuneReporter()
    cpus, gpus = trial_resources()
    pin_threads(cpus)
    device = pick_device(gpus)
    torch.manual_seed(cfg.seed)
    model = build_stn(cfg.transformer, tps_grid=cfg.tps_grid)
    optimizer, scheduler = make_sgd(model.parameters(), cfg)
    fit(model, optimizer, scheduler, train=train, tests=tests, epochs=cfg.epochs, batch_size=cfg.batch_size,
        seed=cfg.seed, device=device, reporter=reporter, inspect=lambda m: inspection_arrays(m, tests),
        compile=cfg.compile, val=val)


def train_stn(config: dict[str, Any], data: MnistData, reporter: Reporter | None = None) -> None:
    """Ray Tune function trainable: one STN run on clean MNIST, one report (and checkpoint) per epoch."""
    cfg = STNConfig.from_dict(config)
    idx, val_idx = stratified_split(data.train_labels, cfg.train_per_class, cfg.seed, cfg.val_per_class)
    n_test = cfg.test_limit or len(data.test_labels)
    val = (data.train_images[val_idx], data.train_labels[val_idx]) if len(val_idx) else None
    _train(cfg, (data.train_images[idx], data.train_labels[idx]),
           {"test": (data.test_images[:n_test], data.test_labels[:n_test])}, reporter, val)


def train_stn_deformed(config: dict[str, Any], data: MnistData, deformed: Mapping[str, Any] | None = None,
                       reporter: Reporter | None = None) -> None:
    """Ray Tune function trainable: train on clean + elastic + zoom, report test_acc/<variant> per epoch.

    `deformed` maps DeformSpec.key → DeformedMnist (or a Ray ObjectRef to one, as sweeps/stn_deformed.py
    passes them); a missing key is computed here through the on-disk cache."""
    cfg = DeformedSTNConfig.from_dict(config)
    sets = (deformed or {}).get(cfg.deform_spec.key)
    if sets is None:
        sets = deformed_mnist(data, cfg.deform_spec)
    elif not isinstance(sets, DeformedMnist):  # an ObjectRef: fetch only this trial's deformed set
        import ray

        sets = ray.get(sets)
    # the same training digits in every variant, so the subset stays stratified and seeded
    idx, val_idx = stratified_split(data.train_labels, cfg.train_per_class, cfg.seed, cfg.val_per_class)
    train = (torch.cat([sets.train[v][0][idx] for v in VARIANTS]), torch.cat([sets.train[v][1][idx] for v in VARIANTS]))
    # validation as training: the held-out digits in every variant
    val = ((torch.cat([sets.train[v][0][val_idx] for v in VARIANTS]),
            torch.cat([sets.train[v][1][val_idx] for v in VARIANTS])) if len(val_idx) else None)
    n_test = cfg.test_limit or len(data.test_labels)
    tests = {v: (sets.test[v][0][:n_test], sets.test[v][1][:n_test]) for v in VARIANTS}
    _train(cfg, train, tests, reporter, val)
