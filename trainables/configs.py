"""The studies' trial configurations: `STNConfig` (sweeps/stn_mnist.py, stn_search.py), `DeformedSTNConfig`
(sweeps/stn_deformed.py) and `TransferConfig` (sweeps/transfer_grid.py, transfer_search.py), each a `TrialConfig`
whose fields are the study's hyperparameters (trainables/config.py says how a field becomes a flag).

They import neither torch nor torchvision: a sweep script builds its command line and validates every
configuration from them, so `--help` and a refused value answer at once. What needs the libraries (the model
list, weights files, the feature dtype a device resolves to) is imported when a check runs. The trainables
(`trainables.stn`, `trainables.transfer`) import them from here.

    from trainables.configs import STNConfig
    STNConfig.from_dict({"lr": 0.05, "transformer": "tps"})
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.config import ConfigError, SGDConfig

if TYPE_CHECKING:
    import torch

    from trainables.data import MnistData

TRANSFORMER_NAMES = ("affine", "tps", "none")  # trainables.models.TRANSFORMERS builds them
FEATURE_DTYPES = ("auto", "fp32", "bf16")  # auto: bf16 on CUDA, fp32 elsewhere
MODES = ("cached", "tutorial")  # transfer backbone modes (trainables/transfer.py)
FEATURE_CACHE_DIR = "features"  # RUN_DIR/features/<pass>/: a feature pass's chunks until the sweep has finished
# where stn_deformed caches its deformed sets (trainables/deform.py)
DEFAULT_DEFORM_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mnist-sweeps" / "deformed"


def resolve_feature_dtype(device: "torch.device | str", feature_dtype: str) -> str:
    """"fp32" or "bf16": what `feature_dtype` (auto, fp32, bf16) means on `device` (auto: bf16 on CUDA)."""
    if feature_dtype not in FEATURE_DTYPES:
        raise ValueError(f"feature_dtype {feature_dtype!r}: expected one of {', '.join(FEATURE_DTYPES)}")
    if feature_dtype == "auto":
        kind = getattr(device, "type", None) or str(device).split(":")[0]
        return "bf16" if kind == "cuda" else "fp32"
    return feature_dtype


@dataclass(frozen=True)
class DeformSpec:
    """Elastic: a `points` x `points` grid of random displacements, N(0, sigma) pixels each, cubic spline
    interpolation. Zoom: the image shrunk `zoom` times and centred on background. `seed` draws the grids."""

    sigma: float = 1.0
    points: int = 3
    zoom: float = 4.0
    seed: int = 0

    @property
    def key(self) -> str:
        return f"sigma={self.sigma:g},points={self.points},zoom={self.zoom:g},seed={self.seed}"


@dataclass(frozen=True)
class STNConfig(SGDConfig):
    """Defaults are the original study's, which took them from the PyTorch STN tutorial (plain SGD, lr 0.01,
    batch 64, 20 epochs): SGDConfig's own."""

    transformer: str = field(default="affine", metadata={
        "choices": TRANSFORMER_NAMES, "aliases": ("--transformers",),
        "help": "spatial transformer before the classifier"})
    tps_grid: int = field(default=4, metadata={
        "ge": 2, "le": 14, "help": "TPS control points per side (K x K grid; Jaderberg et al. used 4)"})


@dataclass(frozen=True)
class DeformedSTNConfig(STNConfig):
    """The deformed study's defaults: SGD lr 0.005 with momentum 0.9, decayed 10x after 10 epochs. The original
    study's plain SGD at lr 0.01 stays near 95% on clean MNIST-5k; lr 0.02 with momentum diverged by epoch 6."""

    lr: float = 0.005
    momentum: float = 0.9
    lr_step: int = 10
    # σ = 1: the largest σ of the measured curve (README, "Deformed MNIST") where elastic accuracy stays within
    # 2 points of clean; at σ = 2 the gap is 5 points, at 3 it is 14, at 8 the digits are gone.
    sigma: float = field(default=1.0, metadata={
        "ge": 0, "le": 100, "help": "elastic deformation: std of the random displacements, in pixels"})
    points: int = field(default=3, metadata={
        "ge": 2, "le": 28, "help": "elastic deformation: control points per side of the displacement grid"})
    zoom: float = field(default=4.0, metadata={
        "ge": 1, "le": 28, "help": "zoom-out factor: the image shrunk this many times and centred"})
    deform_seed: int = field(default=0, metadata={
        "ge": 0, "help": "draws the elastic grids; one deformed set serves every trial seed"})

    @property
    def deform_spec(self) -> DeformSpec:
        return DeformSpec(self.sigma, self.points, self.zoom, self.deform_seed)


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
    feature_dtype: str = field(default="auto", metadata={
        "choices": FEATURE_DTYPES, "help": "the frozen backbone's compute dtype: auto (bf16 autocast on CUDA, fp32 "
                                           "on CPU), fp32 or bf16; the head always trains in float32"})

    def extra_checks(self) -> None:
        from trainables.weights import classification_models

        models = classification_models()
        if self.model not in models:
            close = difflib.get_close_matches(self.model.lower(), models, n=3)
            names = " or ".join([", ".join(close[:-1]), close[-1]] if len(close) > 1 else close)
            raise ConfigError(f"config 'model' = {self.model!r} is not a torchvision classification model; "
                              + (f"did you mean {names}?" if close else
                                 "e.g. resnet50, vgg19, resnet18, efficientnet_b0, vit_b_16"))

    def check_data(self, data: "MnistData") -> None:
        """Enough images per digit, and weights that can be loaded (downloaded now if needed)."""
        from trainables.weights import check_input_size, ensure_weights

        super().check_data(data)
        check_input_size(self.model, self.image_size)
        ensure_weights(self.model, self.weights)

    @property
    def feature_key(self) -> str:
        """Which features this trial asks for, as configured (feature_dtype may be auto): the key of the
        mapping that `prepare_features` and sweeps/features.py hand to the trials."""
        return f"{self.model}|{self.weights}|{self.image_size}|{self.feature_dtype}"

    def cache_key(self, device: "torch.device | str") -> str:
        """The cached features this trial trains on when they are computed on `device`: same backbone, weights,
        image size and resolved dtype (fp32 or bf16) → same features."""
        return f"{self.model}|{self.weights}|{self.image_size}|{resolve_feature_dtype(device, self.feature_dtype)}"
