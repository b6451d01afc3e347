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

from trainables.config import ConfigError, TrialConfig
from trainables.data import MnistData, stratified_subset
from trainables.loop import Reporter, TuneReporter, fit, pick_device, pin_threads, trial_resources
from trainables.models import TRANSFORMERS, build_stn


@dataclass(frozen=True)
class STNConfig(TrialConfig):
    """Defaults are the PyTorch STN tutorial's (plain SGD, lr 0.01, batch 64, 20 epochs)."""

    seed: int = field(default=0, metadata={"ge": 0, "help": "model init, data order and subset draw"})
    epochs: int = field(default=20, metadata={"ge": 1, "le": 10_000, "help": "training epochs"})
    batch_size: int = field(default=64, metadata={"ge": 1, "help": "SGD mini-batch size"})
    lr: float = field(default=0.01, metadata={"gt": 0, "le": 10, "help": "SGD learning rate"})
    momentum: float = field(default=0.0, metadata={"ge": 0, "lt": 1, "help": "SGD momentum (tutorial: none)"})
    lr_step: int = field(default=0, metadata={"ge": 0, "help": "StepLR step in epochs; 0 keeps lr constant"})
    gamma: float = field(default=0.1, metadata={"gt": 0, "le": 1, "help": "StepLR decay factor"})
    train_per_class: int | None = field(default=None, metadata={
        "ge": 1, "help": "training images per digit (stratified, seeded); None = the whole training set"})
    test_limit: int | None = field(default=None, metadata={
        "ge": 1, "help": "evaluate on the first N test images; None = the whole test set"})
    transformer: str = field(default="affine", metadata={
        "choices": tuple(TRANSFORMERS), "help": "spatial transformer before the classifier"})


def check_against_data(cfg: STNConfig, data: MnistData) -> None:
    """Rules that need the data: run on the driver before any trial starts."""
    if cfg.train_per_class is not None:
        have = int(torch.bincount(data.train_labels, minlength=10).min())
        if cfg.train_per_class > have:
            raise ConfigError(f"config 'train_per_class' = {cfg.train_per_class} is more than the training set "
                              f"has: at most {have} images per digit in {data.root}")


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
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, cfg.gamma) if cfg.lr_step else None
    fit(model, optimizer, scheduler, train=train, tests=tests, epochs=cfg.epochs, batch_size=cfg.batch_size,
        seed=cfg.seed, device=device, reporter=reporter)

