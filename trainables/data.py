"""MNIST as tensors: read once with torchvision, normalize once, take stratified subsets by index.

The training path never runs per-sample transforms: a 5k-60k image set is a few hundred MB of float32 at most,
so batches are slices of one tensor.

    from trainables.data import load_mnist, stratified_subset
    data = load_mnist("../shared/data/mnist-5k")          # MnistData: train/test images N×1×28×28, labels N
    idx = stratified_subset(data.train_labels, per_class=10, seed=0)   # 100 indices, 10 per digit
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from trainables.errors import ConfigError, UserError

# The tutorial's Normalize((0.1307,), (0.3081,)): full-MNIST pixel mean and std.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
NUM_CLASSES = 10

_LAYOUT = ("{root}/MNIST/raw/ holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
           "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (torchvision's MNIST layout; .gz files are unpacked)")


class DataError(UserError, RuntimeError):
    """Data that cannot be loaded; the message says what was expected and what to do."""


@dataclass
class MnistData:
    """Normalized images (float32, N×1×28×28) and labels (int64, N) for both splits, on the CPU."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    root: str = ""

    def describe(self) -> str:
        return f"MNIST at {self.root}: {len(self.train_labels)} training and {len(self.test_labels)} test images"


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 N×28×28 → float32 N×1×28×28, scaled to [0, 1] then standardized like the tutorial."""
    return ((images_uint8.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1).contiguous()


def _read_split(root: Path, train: bool, download: bool) -> torchvision.datasets.MNIST:
    try:
        return torchvision.datasets.MNIST(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise DataError(f"MNIST not found in {root}. Expected {_LAYOUT.format(root=root)}.") from None
    try:
        print(f"MNIST not found in {root}: downloading it there (about 12 MB)...", flush=True)
        return torchvision.datasets.MNIST(str(root), train=train, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError depending on the failure
        # torchvision lists every mirror it tried; the last line holds the cause (e.g. no network)
        cause = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(
            f"MNIST not found in {root} and the download failed ({cause}). "
            f"Expected {_LAYOUT.format(root=root)}. Copy those files there, or pass --data-dir with a folder that "
            f"has them (for example ../shared/data/mnist-5k)."
        ) from None


def load_mnist(data_dir: str | Path, download: bool = True) -> MnistData:
    """Both MNIST splits from a torchvision MNIST root, downloading into it when missing and possible."""
    root = Path(data_dir).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise DataError(f"--data-dir {root} is a file; expected a folder: {_LAYOUT.format(root=root)}.")
    train = _read_split(root, True, download)
    test = _read_split(root, False, download)
    return MnistData(normalize(train.data), train.targets.long(), normalize(test.data), test.targets.long(), str(root))


def check_per_class(per_class: int | None, data: MnistData) -> None:
    """A config asking for more training images per digit than `data` has → ConfigError (before any trial)."""
    if per_class is not None:
        have = int(torch.bincount(data.train_labels, minlength=NUM_CLASSES).min())
        if per_class > have:
            raise ConfigError(f"config 'train_per_class' = {per_class} is more than the training set has: "
                              f"at most {have} images per digit in {data.root}")


def stratified_subset(labels: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of `per_class` images of every class, drawn with `seed`; None → every index.

    Each class gets one seeded permutation and the subset is its first `per_class` entries, so for one seed
    the 10-per-class subset lies inside the 30-per-class one (nested), and different seeds draw differently.
    """
    if per_class is None:
        return torch.arange(len(labels))
    if per_class < 1:
        raise DataError(f"per_class = {per_class}: must be at least 1 image per digit")
    gen = torch.Generator().manual_seed(int(seed))
    chosen = []
    for cls in range(NUM_CLASSES):
        idx = torch.nonzero(labels == cls, as_tuple=True)[0]
        # Draw the permutation for every class even when an error follows, so the stream never depends on n.
        perm = idx[torch.randperm(len(idx), generator=gen)]
        if per_class > len(idx):
            counts = torch.bincount(labels, minlength=NUM_CLASSES)
            raise DataError(
                f"asked for {per_class} images per digit, but digit {cls} has only {len(idx)} "
                f"(this training set has at most {int(counts.min())} per digit); lower train_per_class"
            )
        chosen.append(perm[:per_class])
    return torch.sort(torch.cat(chosen)).values
