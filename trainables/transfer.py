"""The transfer-learning trainable: a frozen torchvision backbone (ResNet50, VGG19, ...) with a new 10-way
head trained on a few MNIST images per digit, as the original study did.

Two backbone modes:
  tutorial  the original study exactly: backbone in train() mode (BatchNorm statistics drift, VGG dropout
            active), a full backbone forward for every batch of every epoch, test passes included
  cached    (default) backbone in eval mode; `prepare_features` runs every unique image through each
            (backbone, weights, image size) once per sweep, and trials train the head on those features

    from trainables.transfer import train_transfer, prepare_features, TransferConfig
    feats = prepare_features(data, [TransferConfig(model="resnet18", weights="none", image_size=32)])
    train_transfer({"model": "resnet18", "weights": "none", "image_size": 32, "epochs": 2},
                   data=data, features=feats, reporter=MemoryReporter())
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from trainables.backbones import (TransferNet, check_input_size, classification_models, compute_features,
                                  ensure_weights, load_backbone)
from trainables.config import ConfigError, SGDConfig
from trainables.data import MnistData, stratified_subset
from trainables.loop import Reporter, TuneReporter, fit, make_sgd, pick_device, pin_threads, trial_resources

MODES = ("cached", "tutorial")


@dataclass(frozen=True)
class TransferConfig(SGDConfig):
    """Defaults are the original study's (Table 1): SGD lr 0.001, momentum 0.9, batch 4, StepLR(7, 0.1), 50 epochs,
    224 px, 3 channels, 10 images per digit."""

    epochs: int = 50
    batch_size: int = 4
    lr: float = 0.001
    momentum: float = 0.9
    lr_step: int = 7
    train_per_class: int = 10
    model: str = field(default="resnet50", metadata={
        "aliases": ("--models",), "help": "torchvision classification model (resnet50, vgg19, resnet18, ...)"})
    weights: str = field(default="imagenet", metadata={
        "help": "imagenet (torchvision's ImageNet weights, downloaded once into the torch cache), none (random "
                "init) or PATH to a state_dict"})
    image_size: int = field(default=224, metadata={"ge": 32, "le": 1024, "help": "backbone input size in px"})
    backbone_mode: str = field(default="cached", metadata={
        "choices": MODES, "help": "cached: each image through the frozen backbone once, in eval mode, heads train "
                                  "on the features; tutorial: the original study's pipeline, the backbone in train "
                                  "mode and run for every batch of every epoch"})

    def extra_checks(self) -> None:
        if self.model not in classification_models():
            raise ConfigError(f"config 'model' = {self.model!r} is not a torchvision classification model; "
                              f"e.g. resnet50, vgg19, resnet18, efficientnet_b0, vit_b_16")

    def check_data(self, data: MnistData) -> None:
        """Enough images per digit, and weights that can be loaded (downloaded now if needed)."""
        super().check_data(data)
        check_input_size(self.model, self.image_size)
        ensure_weights(self.model, self.weights)

    @property
    def feature_key(self) -> str:
        """Which cached features this trial trains on: same backbone, weights and image size → same features."""
        return f"{self.model}|{self.weights}|{self.image_size}"


@dataclass
class FeatureSet:
    """Head inputs of one (backbone, weights, image size): the sorted training indices it covers, their
    features, and the features of the first len(test) test images."""

    train_index: torch.Tensor
    train: torch.Tensor
    test: torch.Tensor


def feature_jobs(data: MnistData, configs: Iterable[TransferConfig]) -> dict[str, tuple[torch.Tensor, int]]:
    """Per feature key of the cached configs: the union of their training subsets and how many test images."""
    jobs: dict[str, tuple[set[int], int]] = {}
    for cfg in configs:
        if cfg.backbone_mode != "cached":
            continue
        idx, n_test = jobs.get(cfg.feature_key, (set(), 0))
        idx |= set(stratified_subset(data.train_labels, cfg.train_per_class, cfg.seed).tolist())
        jobs[cfg.feature_key] = (idx, max(n_test, cfg.test_limit or len(data.test_labels)))
    return {k: (torch.tensor(sorted(idx), dtype=torch.long), n) for k, (idx, n) in jobs.items()}


def features_for(key: str, data: MnistData, train_index: torch.Tensor, n_test: int,
                 device: torch.device | None = None) -> FeatureSet:
    """Run the unique images through one backbone once (eval mode)."""
    model, weights, size = key.split("|")
    device = device or pick_device(None)
    backbone, dim = load_backbone(model, weights)
    net = TransferNet(backbone, nn.Identity(), int(size), backbone_train=False)
    images = torch.cat([data.train_images[train_index], data.test_images[:n_test]])
    feats = compute_features(net, images, device=device)
    return FeatureSet(train_index, feats[:len(train_index)], feats[len(train_index):])


def prepare_features(data: MnistData, configs: Iterable[TransferConfig]) -> dict[str, FeatureSet]:
    """In-process version of the cache (notebooks, tests, benchmarks); sweeps run `features_for` as Ray tasks."""
    return {key: features_for(key, data, idx, n) for key, (idx, n) in feature_jobs(data, configs).items()}


def train_transfer(config: dict[str, Any], data: MnistData, features: dict[str, Any] | None = None,
                   reporter: Reporter | None = None) -> None:
    """Ray Tune function trainable: one (backbone, training-set size, seed), one report per epoch."""
    cfg = TransferConfig.from_dict(config)
    reporter = reporter or TuneReporter()
    cpus, gpus = trial_resources()
    pin_threads(cpus)
    device = pick_device(gpus)

    idx = stratified_subset(data.train_labels, cfg.train_per_class, cfg.seed)
    n_test = cfg.test_limit or len(data.test_labels)
    labels, test_labels = data.train_labels[idx], data.test_labels[:n_test]
    if cfg.backbone_mode == "cached":
        if features is None or cfg.feature_key not in features:
            raise RuntimeError(f"no cached features for {cfg.feature_key}: run through prepare_features first")
        fs = features[cfg.feature_key]
        if not isinstance(fs, FeatureSet):  # a Ray ObjectRef (sweeps/features.py): fetch this backbone's only
            import ray

            fs = ray.get(fs)
        rows = torch.searchsorted(fs.train_index, idx)
        torch.manual_seed(cfg.seed)  # the head's init: identical in both modes for one seed
        model = head = nn.Linear(fs.train.shape[1], 10)
        train, tests = (fs.train[rows], labels), {"test": (fs.test[:n_test], test_labels)}
    else:
        backbone, dim = load_backbone(cfg.model, cfg.weights)
        torch.manual_seed(cfg.seed)
        head = nn.Linear(dim, 10)
        model = TransferNet(backbone, head, cfg.image_size, backbone_train=True)
        train, tests = (data.train_images[idx], labels), {"test": (data.test_images[:n_test], test_labels)}
    optimizer, scheduler = make_sgd(head.parameters(), cfg)
    fit(model, optimizer, scheduler, train=train, tests=tests, epochs=cfg.epochs, batch_size=cfg.batch_size,
        seed=cfg.seed, device=device, reporter=reporter, compile=cfg.compile)
