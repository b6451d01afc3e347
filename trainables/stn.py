"""The STN trainable: the tutorial's affine Spatial Transformer Network on (a stratified subset of) MNIST.

Run inside Ray Tune by `sweeps/stn_mnist.py`; callable directly too:

    from trainables.data import load_mnist
    from trainables.stn import STNConfig, train_stn
    from trainables.loop import MemoryReporter
    rep = MemoryReporter()
    train_stn({"epochs": 1, "train_per_class": 10}, data=load_mnist("../shared/data/mnist-5k"), reporter=rep)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from trainables import config as C
from trainables.config import TrialConfig
from trainables.data import MnistData, check_per_class, stratified_subset
from trainables.loop import Reporter, TuneReporter, fit, make_sgd, pick_device, pin_threads, trial_resources
from trainables.models import TRANSFORMERS, build_stn


@dataclass(frozen=True)
class STNConfig(TrialConfig):
    """Defaults are the PyTorch STN tutorial's (plain SGD, lr 0.01, batch 64, 20 epochs)."""

    seed: int = field(default=0, metadata=C.SEED)
    epochs: int = field(default=20, metadata=C.EPOCHS)
    batch_size: int = field(default=64, metadata=C.BATCH_SIZE)
    lr: float = field(default=0.01, metadata=C.LR)
    momentum: float = field(default=0.0, metadata=C.MOMENTUM)
    lr_step: int = field(default=0, metadata=C.LR_STEP)
    gamma: float = field(default=0.1, metadata=C.GAMMA)
    train_per_class: int | None = field(default=None, metadata=C.TRAIN_PER_CLASS)
    test_limit: int | None = field(default=None, metadata=C.TEST_LIMIT)
    transformer: str = field(default="affine", metadata={
        "choices": tuple(TRANSFORMERS), "help": "spatial transformer before the classifier"})


def check_against_data(cfg: STNConfig, data: MnistData) -> None:
    """Rules that need the data: run on the driver before any trial starts."""
    check_per_class(cfg.train_per_class, data)


def train_stn(config: dict[str, Any], data: MnistData, reporter: Reporter | None = None) -> None:
    """Ray Tune function trainable: one STN run, one report (and checkpoint) per epoch."""
    cfg = STNConfig.from_dict(config)
    reporter = reporter or TuneReporter()
    cpus, gpus = trial_resources()
    pin_threads(cpus)
    device = pick_device(gpus)
    torch.manual_seed(cfg.seed)

    idx = stratified_subset(data.train_labels, cfg.train_per_class, cfg.seed)
    train = (data.train_images[idx], data.train_labels[idx])
    n_test = cfg.test_limit or len(data.test_labels)
    tests = {"test": (data.test_images[:n_test], data.test_labels[:n_test])}

    model = build_stn(cfg.transformer)
    optimizer, scheduler = make_sgd(model.parameters(), cfg)
    fit(model, optimizer, scheduler, train=train, tests=tests, epochs=cfg.epochs, batch_size=cfg.batch_size,
        seed=cfg.seed, device=device, reporter=reporter)

