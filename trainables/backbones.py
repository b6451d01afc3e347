"""Frozen torchvision backbones with a new 10-way head, the MNIST → ImageNet input adapter, and features
computed once.

Any torchvision classification model works by name; its last `nn.Linear` (ResNet `fc`, VGG `classifier[-1]`,
EfficientNet `classifier[-1]`, ViT `heads.head`, ...) is replaced by a fresh `nn.Linear(in_features, 10)` with
PyTorch's default init, U(-sqrt(k), sqrt(k)) with k = 1/in_features. Everything else is frozen.

    from trainables.backbones import load_backbone, TransferNet, compute_features
    features, dim = load_backbone("resnet50", "imagenet")      # head replaced by nn.Identity, frozen
    net = TransferNet(features, torch.nn.Linear(dim, 10), image_size=224, backbone_train=False)
    feats = compute_features(net, images, device=torch.device("cpu"))   # N×dim, one forward per image

The backbone runs in channels_last (on CUDA, and on x86 CPUs from 64 px, where oneDNN is faster so) and, on CUDA
by default, under bf16 autocast (`feature_settings` decides, for the feature pass and for tutorial mode's per-batch
forward); on CPU it runs in fp32 unless bf16 is asked for. Features leave the backbone as float32, the dtype the
heads train in.

`FORWARD_IMAGES` counts the images every backbone has seen in this process (the benchmark reads it). Which models and
weights exist, and whether a model takes an image size, is trainables/weights.py.
"""
from __future__ import annotations

import collections
import platform
from typing import Iterator

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from trainables.configs import resolve_feature_dtype
from trainables.data import MNIST_MEAN, MNIST_STD
from trainables.weights import classification_models, imagenet_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FORWARD_IMAGES: collections.Counter[str] = collections.Counter()
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """(dotted name, layer) of the model's last nn.Linear: the classification head in torchvision's models."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"cannot find the classification head of {type(model).__name__}: it has no nn.Linear "
                         f"layer (e.g. SqueezeNet classifies with a convolution); choose another model")
    return found[-1]


def load_backbone(name: str, weights: str) -> tuple[nn.Module, int]:
    """The frozen model with its head replaced by nn.Identity, and the head's input size."""
    if name not in classification_models():
        raise ValueError(f"unknown model {name!r}: use a torchvision classification model such as resnet50, "
                         f"vgg19, resnet18, efficientnet_b0")
    with torch.random.fork_rng():  # 'none' is one fixed random backbone: every trial and the cache agree
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None)
    if weights == "imagenet":
        model.load_state_dict(imagenet_weights(name).get_state_dict(progress=False))
    elif weights != "none":
        # weights_only: a weights file is data, never code to run
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.requires_grad_(False)
    head_name, head = find_head(model)
    parent, _, attr = head_name.rpartition(".")
    setattr(model.get_submodule(parent), attr, nn.Identity())
    model.register_forward_hook(lambda m, inputs, out: FORWARD_IMAGES.update({name: inputs[0].shape[0]}))
    return model, head.in_features


class ImageNetInput(nn.Module):
    """MNIST-normalized N×1×28×28 → N×3×S×S in ImageNet normalization, batch by batch on the device, so the
    dataset stays 28 px in memory (224 px, 3 channels would be 64× larger)."""

    def __init__(self, image_size: int):
        super().__init__()
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * MNIST_STD + MNIST_MEAN  # back to [0, 1]
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (x.expand(-1, 3, -1, -1) - self.mean) / self.std


# oneDNN, which runs convolutions on x86 CPUs, is faster on channels_last input for these backbones from 64 px
# on, and no faster (ResNet50: slower) at 32 px (benchmarks/cpu_features.py). Elsewhere (an ARM laptop) the CPU
# keeps the layout it always had, unmeasured.
CPU_CHANNELS_LAST = platform.machine().lower() in ("x86_64", "amd64")
CPU_CHANNELS_LAST_MIN_PX = 64


def cpu_has_native_bf16() -> bool:
    """Whether this machine's CPU computes bf16 natively (AVX512-BF16 or AMX, as Linux reports them): there
    `feature_dtype` bf16 about halves a CPU feature pass (benchmarks/cpu_features.py); elsewhere it is emulated
    and slower than fp32. False where the flags cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def feature_settings(device: torch.device | str, feature_dtype: str = "auto",
                     image_size: int | None = None) -> tuple[torch.dtype, int, bool]:
    """(compute dtype, batch size, channels_last) of a backbone pass over `image_size` px input on `device`.
    CUDA: bf16 unless fp32 is asked for, batch 256 and channels_last, which keep its tensor cores busy; CPU: fp32
    unless bf16 is asked for, batch 64, channels_last on x86 from 64 px (the same fp32 features to rounding,
    computed faster), else NCHW as the CPU pass always ran (also when the size is not given)."""
    cuda = torch.device(device).type == "cuda"
    cpu_channels_last = CPU_CHANNELS_LAST and image_size is not None and image_size >= CPU_CHANNELS_LAST_MIN_PX
    return DTYPES[resolve_feature_dtype(device, feature_dtype)], (256 if cuda else 64), cuda or cpu_channels_last


class TransferNet(nn.Module):
    """input adapter → frozen backbone → trainable head. With backbone_train=False the backbone stays in eval
    mode whatever `.train()` says (fixed BatchNorm statistics, no dropout); True reproduces the tutorial.
    `compute_dtype` other than float32 runs the backbone under autocast to that dtype, and `channels_last` feeds
    it channels_last input (see `feature_settings`); its output, the head's input, is float32 either way."""

    def __init__(self, features: nn.Module, head: nn.Module, image_size: int, backbone_train: bool, *,
                 compute_dtype: torch.dtype = torch.float32, channels_last: bool = False):
        super().__init__()
        self.adapter = ImageNetInput(image_size)
        self.features = features
        self.head = head
        self.backbone_train = backbone_train
        self.compute_dtype = compute_dtype
        self.channels_last = channels_last

    def train(self, mode: bool = True) -> "TransferNet":
        super().train(mode)
        if not self.backbone_train:
            self.features.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapter(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.compute_dtype == torch.float32:
            return self.features(x)
        with torch.autocast(x.device.type, dtype=self.compute_dtype):
            return self.features(x).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@torch.inference_mode()
def embed_batches(net: TransferNet, images: torch.Tensor, *, device: torch.device,
                  feature_dtype: str = "auto") -> Iterator[torch.Tensor]:
    """Head inputs one batch at a time, backbone in eval mode, float32 on the CPU; `feature_dtype` (auto, fp32,
    bf16) and the device set the net's dtype, batch size and layout (`feature_settings`). One batch at a time so
    that a caller can report progress between batches."""
    net.compute_dtype, batch_size, net.channels_last = feature_settings(device, feature_dtype,
                                                                          net.adapter.image_size)
    net.eval().to(device, memory_format=torch.channels_last if net.channels_last else None)
    for i in range(0, len(images), batch_size):
        yield net.embed(images[i:i + batch_size].to(device)).float().cpu()


def compute_features(net: TransferNet, images: torch.Tensor, *, device: torch.device,
                     feature_dtype: str = "auto") -> torch.Tensor:
    """Head inputs for every image (`embed_batches`, concatenated): one forward pass per image."""
    out = list(embed_batches(net, images, device=device, feature_dtype=feature_dtype))
    return torch.cat(out) if out else torch.empty(0)
