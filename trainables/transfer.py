"""The transfer-learning trainable: a frozen torchvision backbone (ResNet50, VGG19, ...) with a new 10-way
head trained on a few MNIST images per digit, as the original study did.

Two backbone modes:
  tutorial  the original study exactly: backbone in train() mode (BatchNorm statistics drift, VGG dropout
            active), a full backbone forward for every batch of every epoch, test passes included
  cached    (default) backbone in eval mode; `prepare_features` runs every unique image through each
            (backbone, weights, image size, feature dtype) once per sweep, and trials train the head on those
            features

`feature_dtype` (auto: bf16 autocast on CUDA, fp32 on CPU) sets the backbone's compute dtype in both modes; the
feature cache is keyed by the dtype it resolves to on the device that computes the features, so fp32 and bf16
features never mix. Heads always train in float32.

    from trainables.transfer import train_transfer, prepare_features, TransferConfig
    feats = prepare_features(data, [TransferConfig(model="resnet18", weights="none", image_size=32)])
    train_transfer({"model": "resnet18", "weights": "none", "image_size": 32, "epochs": 2},
                   data=data, features=feats, reporter=MemoryReporter())
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from trainables.backbones import TransferNet, embed_batches, feature_settings, load_backbone
from trainables.configs import TransferConfig
from trainables.data import MnistData, stratified_split
from trainables.loop import Reporter, TuneReporter, fit, make_sgd, pick_device, pin_threads, trial_resources


@dataclass
class FeatureSet:
    """Head inputs of one (backbone, weights, image size): the sorted training indices it covers, their
    features, and the features of the first len(test) test images; `key` is the cache key they were computed
    for (a trial logs it, so the report can charge it its share of the feature pass)."""

    train_index: torch.Tensor
    train: torch.Tensor
    test: torch.Tensor
    key: str = ""


def feature_jobs(data: MnistData, configs: Iterable[TransferConfig],
                 device: torch.device | str | None = None) -> dict[str, tuple[torch.Tensor, int]]:
    """Per cache key of the cached configs, the features computed on `device` (default: where
    `prepare_features` would compute them): the union of their training subsets and validation splits, and how
    many test images."""
    device = device or pick_device(None)
    jobs: dict[str, tuple[set[int], int]] = {}
    for cfg in configs:
        if cfg.backbone_mode != "cached":
            continue
        key = cfg.cache_key(device)
        idx, n_test = jobs.get(key, (set(), 0))
        train_idx, val_idx = stratified_split(data.train_labels, cfg.train_per_class, cfg.seed, cfg.val_per_class)
        idx |= set(train_idx.tolist()) | set(val_idx.tolist())
        jobs[key] = (idx, max(n_test, cfg.test_limit or len(data.test_labels)))
    return {k: (torch.tensor(sorted(idx), dtype=torch.long), n) for k, (idx, n) in jobs.items()}


def feature_requests(configs: Iterable[TransferConfig], device: torch.device | str) -> dict[str, str]:
    """feature_key (what a trial asks for) → cache key (what it gets when the features are computed on `device`)."""
    return {cfg.feature_key: cfg.cache_key(device) for cfg in configs if cfg.backbone_mode == "cached"}


def split_feature_key(key: str) -> tuple[str, str, int, str]:
    """'resnet50|imagenet|224|fp32' → (model, weights, image size, dtype); a weights PATH may hold any character."""
    model, rest = key.split("|", 1)
    weights, size, dtype = rest.rsplit("|", 2)
    return model, weights, int(size), dtype


def feature_images(data: MnistData, train_index: torch.Tensor, n_test: int) -> torch.Tensor:
    """The images a feature pass runs, in the order its features are kept: the training images `train_index`,
    then the first `n_test` test images."""
    return torch.cat([data.train_images[train_index], data.test_images[:n_test]])


def iter_features(key: str, data: MnistData, train_index: torch.Tensor, n_test: int,
                  device: torch.device | None = None, start: int = 0) -> Iterator[torch.Tensor]:
    """Run the pass's images (`feature_images`) from `start` on through one backbone once (eval mode), in the
    dtype that the cache key names: yields their features one batch at a time (float32, CPU), in order. A pass
    resumed at a multiple of the batch size sees the same batches as an uninterrupted one."""
    model, weights, size, dtype = split_feature_key(key)
    device = device or pick_device(None)
    backbone, dim = load_backbone(model, weights)
    net = TransferNet(backbone, nn.Identity(), size, backbone_train=False)
    yield from embed_batches(net, feature_images(data, train_index, n_test)[start:], device=device,
                             feature_dtype=dtype)


def feature_set(key: str, train_index: torch.Tensor, features: torch.Tensor) -> FeatureSet:
    """The FeatureSet of a whole pass's features (`iter_features`' batches, concatenated)."""
    return FeatureSet(train_index, features[:len(train_index)], features[len(train_index):], key)


def features_for(key: str, data: MnistData, train_index: torch.Tensor, n_test: int,
                 device: torch.device | None = None) -> FeatureSet:
    """One whole pass (`iter_features`) as a FeatureSet."""
    batches = list(iter_features(key, data, train_index, n_test, device))
    return feature_set(key, train_index, torch.cat(batches) if batches else torch.empty(0))


def prepare_features(data: MnistData, configs: Iterable[TransferConfig],
                     device: torch.device | None = None) -> dict[str, FeatureSet]:
    """In-process version of the cache (notebooks, tests, benchmarks); sweeps run `features_for` as Ray tasks.
    Returns the features by `feature_key`, as train_transfer looks them up; configs that resolve to the same
    cache key share one FeatureSet."""
    configs, device = list(configs), device or pick_device(None)
    jobs = feature_jobs(data, configs, device)
    sets = {key: features_for(key, data, idx, n, device) for key, (idx, n) in jobs.items()}
    return {request: sets[key] for request, key in feature_requests(configs, device).items()}


def train_transfer(config: dict[str, Any], data: MnistData, features: dict[str, Any] | None = None,
                   reporter: Reporter | None = None) -> None:
    """Ray Tune function trainable: one (backbone, training-set size, seed), one report per epoch."""
    cfg = TransferConfig.from_dict(config)
    reporter = reporter or TuneReporter()
    cpus, gpus = trial_resources()
    pin_threads(cpus)
    device = pick_device(gpus)

    idx, val_idx = stratified_split(data.train_labels, cfg.train_per_class, cfg.seed, cfg.val_per_class)
    n_test = cfg.test_limit or len(data.test_labels)
    labels, test_labels = data.train_labels[idx], data.test_labels[:n_test]
    val, constants = None, {}
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
        if len(val_idx):
            val = (fs.train[torch.searchsorted(fs.train_index, val_idx)], data.train_labels[val_idx])
        # which feature pass this trial used and how many of its images: its share of that pass's compute
        constants = {"feature_key": fs.key, "feature_images": float(len(idx) + len(val_idx) + n_test)}
    else:
        backbone, dim = load_backbone(cfg.model, cfg.weights)
        torch.manual_seed(cfg.seed)
        head = nn.Linear(dim, 10)
        dtype, _, channels_last = feature_settings(device, cfg.feature_dtype, cfg.image_size)
        model = TransferNet(backbone, head, cfg.image_size, backbone_train=True, compute_dtype=dtype,
                            channels_last=channels_last)
        train, tests = (data.train_images[idx], labels), {"test": (data.test_images[:n_test], test_labels)}
        if len(val_idx):
            val = (data.train_images[val_idx], data.train_labels[val_idx])
    optimizer, scheduler = make_sgd(head.parameters(), cfg)
    fit(model, optimizer, scheduler, train=train, tests=tests, epochs=cfg.epochs, batch_size=cfg.batch_size,
        seed=cfg.seed, device=device, reporter=reporter, compile=cfg.compile, val=val, constants=constants)
