"""Spatial Transformer Network for 28×28 MNIST, as the PyTorch STN tutorial (Jaderberg et al. 2015) builds it.

`STN` = a transformer (warps the input) followed by the tutorial's classifier. The affine transformer's
localization net ends in a layer with zero weights and an identity bias, so at initialization the warp is the
identity and the network starts as the plain classifier.

    from trainables.models import build_stn
    model = build_stn("affine")          # logits = model(x) for x of shape N×1×28×28
    theta = model.transformer.theta(x)   # N×2×3 affine matrices
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class Classifier(nn.Module):
    """The tutorial's classifier: conv 1→10 k5, conv 10→20 k5 + Dropout2d, fc 320→50→10 (returns logits)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


class AffineTransformer(nn.Module):
    """Localization conv 1→8 k7, pool, relu, conv 8→10 k5, pool, relu → 90 → fc 32 → 6 (θ), then grid_sample."""

    def __init__(self):
        super().__init__()
        self.localization = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=7), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
        )
        self.fc_loc = nn.Sequential(nn.Linear(10 * 3 * 3, 32), nn.ReLU(True), nn.Linear(32, 3 * 2))
        # Zero weights + identity bias: training starts from "no warp" instead of a random one.
        self.fc_loc[2].weight.data.zero_()
        self.fc_loc[2].bias.data.copy_(torch.tensor(IDENTITY_THETA))

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_loc(self.localization(x).flatten(1)).view(-1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(self.theta(x), list(x.size()), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)


class STN(nn.Module):
    """A transformer (or none) composed with the classifier."""

    def __init__(self, transformer: nn.Module | None, classifier: nn.Module):
        super().__init__()
        self.transformer = transformer if transformer is not None else nn.Identity()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.transformer(x))


TRANSFORMERS = {"affine": AffineTransformer, "none": lambda: None}


def build_stn(transformer: str = "affine", num_classes: int = 10) -> STN:
    if transformer not in TRANSFORMERS:
        raise ValueError(f"unknown transformer {transformer!r}: choose one of {', '.join(TRANSFORMERS)}")
    return STN(TRANSFORMERS[transformer](), Classifier(num_classes))
