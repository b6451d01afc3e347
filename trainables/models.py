"""Spatial Transformer Network for 28×28 MNIST, as the PyTorch STN tutorial (Jaderberg et al. 2015) builds it.

`STN` = a transformer (warps the input) followed by the tutorial's classifier. Transformers: `affine` (the
tutorial's), `tps` (a thin-plate spline through a K×K grid of control points, Jaderberg et al.'s 4×4 by default)
and `none` (the bare classifier, the baseline). Both localization nets end in a layer with zero weights and an
identity bias, so at initialization the warp is the identity and the network starts as the plain classifier.

    from trainables.models import build_stn
    model = build_stn("affine")          # logits = model(x) for x of shape N×1×28×28
    theta = model.transformer.theta(x)   # N×2×3 affine matrices
    model = build_stn("tps", tps_grid=4)
    points = model.transformer.control_points(x)   # N×16×2 source positions of the 4×4 grid, in [-1, 1] coords
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


def _localization(outputs: int, identity: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """The tutorial's localization net: conv 1→8 k7, pool, relu, conv 8→10 k5, pool, relu → 90 → fc 32 → outputs."""
    features = nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=7), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
        nn.Conv2d(8, 10, kernel_size=5), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
    )
    head = nn.Sequential(nn.Linear(10 * 3 * 3, 32), nn.ReLU(True), nn.Linear(32, outputs))
    # Zero weights + identity bias: training starts from "no warp" instead of a random one.
    head[2].weight.data.zero_()
    head[2].bias.data.copy_(identity.flatten())
    return features, head


class AffineTransformer(nn.Module):
    """The localization net predicts θ (2×3, output → input coordinates), then affine_grid + grid_sample."""

    def __init__(self):
        super().__init__()
        self.localization, self.fc_loc = _localization(6, torch.tensor(IDENTITY_THETA))

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_loc(self.localization(x).flatten(1)).view(-1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(self.theta(x), list(x.size()), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)


def _tps_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """U(r) = r² log r² between every point of a (N×2) and b (M×2); U(0) = 0."""
    d2 = torch.cdist(a, b).square()
    return d2 * torch.log(d2.clamp_min(1e-12))


class TPSTransformer(nn.Module):
    """Thin-plate-spline STN: the localization net predicts where each of a K×K grid of control points (spread
    evenly over [-1, 1]²) samples the input; the spline through them gives every output pixel its sampling
    position. The spline's linear algebra depends only on the control grid and the image size, so it is solved
    once: sampling grid = M @ predicted points, with M (H·W × K²) a buffer."""

    def __init__(self, grid: int = 4, size: tuple[int, int] = (28, 28)):
        super().__init__()
        if grid < 2:
            raise ValueError(f"tps_grid = {grid}: a thin-plate spline needs at least a 2×2 grid of control points")
        self.grid = grid
        lin = torch.linspace(-1.0, 1.0, grid, dtype=torch.float64)
        ys, xs = torch.meshgrid(lin, lin, indexing="ij")
        base = torch.stack([xs.flatten(), ys.flatten()], dim=1)  # (K², 2) as (x, y), grid_sample's order
        self.register_buffer("base", base.float())
        self.localization, self.fc_loc = _localization(2 * grid * grid, base.float())
        self.register_buffer("M", self._solve(base, size).float())
        self.size = tuple(size)

    @staticmethod
    def _solve(base: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # Interpolant f(p) = Σ w_i U(|p - P_i|) + a0 + a1 x + a2 y with f(P_i) = P'_i, Σ w = 0, Σ w P = 0:
        # L @ [w; a] = [P'; 0] with L = [[U(P, P), 1, P], [(1, P)ᵀ, 0]], so f(T) = [U(T, P), 1, T] @ L⁻¹[:, :K²] @ P'.
        n = len(base)
        ones = torch.ones(n, 1, dtype=base.dtype)
        top = torch.cat([_tps_kernel(base, base), ones, base], dim=1)
        bottom = torch.cat([torch.cat([ones, base], dim=1).T, torch.zeros(3, 3, dtype=base.dtype)], dim=1)
        l_inv = torch.linalg.inv(torch.cat([top, bottom], dim=0))
        h, w = size
        # pixel centres in grid_sample's align_corners=False coordinates
        ys = (torch.arange(h, dtype=base.dtype) * 2 + 1) / h - 1
        xs = (torch.arange(w, dtype=base.dtype) * 2 + 1) / w - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        target = torch.stack([gx.flatten(), gy.flatten()], dim=1)
        a_out = torch.cat([_tps_kernel(target, base), torch.ones(len(target), 1, dtype=base.dtype), target], dim=1)
        return a_out @ l_inv[:, :n]

    def control_points(self, x: torch.Tensor) -> torch.Tensor:
        """N×K²×2: where each control point of the output samples the input, (x, y) in [-1, 1]."""
        return self.fc_loc(self.localization(x).flatten(1)).view(-1, self.grid * self.grid, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if (h, w) != self.size:
            raise ValueError(f"this TPS transformer was built for {self.size[0]}×{self.size[1]} images, got {h}×{w}")
        grid = torch.matmul(self.M, self.control_points(x)).view(n, h, w, 2)
        return F.grid_sample(x, grid, align_corners=False)


class STN(nn.Module):
    """A transformer (or none) composed with the classifier."""

    def __init__(self, transformer: nn.Module | None, classifier: nn.Module):
        super().__init__()
        self.transformer = transformer if transformer is not None else nn.Identity()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.transformer(x))


TRANSFORMERS = {"affine": lambda **_: AffineTransformer(),
                "tps": lambda tps_grid=4, **_: TPSTransformer(tps_grid),
                "none": lambda **_: None}


def build_stn(transformer: str = "affine", num_classes: int = 10, tps_grid: int = 4) -> STN:
    if transformer not in TRANSFORMERS:
        raise ValueError(f"unknown transformer {transformer!r}: choose one of {', '.join(TRANSFORMERS)}")
    return STN(TRANSFORMERS[transformer](tps_grid=tps_grid), Classifier(num_classes))
