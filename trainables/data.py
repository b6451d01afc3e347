"""MNIST as tensors: read once from the IDX files, normalize once, take stratified subsets by index.

The training path never runs per-sample transforms: a 5k-60k image set is a few hundred MB of float32 at most,
so batches are slices of one tensor. Before anything is read, the raw IDX files that exist are checked
(magic number, header, size, image/label counts): a truncated or corrupt file is a DataError naming it, its size
and what was expected, and is never downloaded over; only missing files are downloaded (by torchvision).

    from trainables.data import load_mnist, stratified_subset
    data = load_mnist("../shared/data/mnist-5k")          # MnistData: train/test images N×1×28×28, labels N
    idx = stratified_subset(data.train_labels, per_class=10, seed=0)   # 100 indices, 10 per digit
    check_mnist_files("../shared/data/mnist-5k/MNIST/raw")   # [] (nothing missing), or DataError naming a file
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.errors import ConfigError, UserError

# The tutorial's Normalize((0.1307,), (0.3081,)): full-MNIST pixel mean and std.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
NUM_CLASSES = 10


class DataError(UserError, RuntimeError):
    """Data that cannot be loaded; the message says what was expected and what to do."""


_LAYOUT = ("{root}/MNIST/raw/ holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
           "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (torchvision's MNIST layout; .gz files are unpacked)")

# Each split's (images, labels) file in torchvision's MNIST/raw/ folder, training split first.
SPLIT_FILES = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
SIDE = 28  # MNIST images are 28×28; the models' layer sizes assume it


@dataclass(frozen=True)
class _Kind:
    """What an IDX file of one kind must look like: its magic number (0x08 = unsigned bytes, then the dimension
    count), its header (the magic, then one big-endian int32 per dimension) and its bytes per item."""

    noun: str       # "images" / "labels"
    ndim: int
    item_bytes: int

    @property
    def magic(self) -> int:
        return 0x0800 + self.ndim

    @property
    def header(self) -> int:
        return 4 * (1 + self.ndim)

    def describe(self, n: int) -> str:
        return f"{n:,} images of {SIDE}×{SIDE}" if self.noun == "images" else f"{n:,} labels"


_IMAGES = _Kind("images", 3, SIDE * SIDE)  # magic 2051, 16-byte header
_LABELS = _Kind("labels", 1, 1)            # magic 2049, 8-byte header
_FIX = "delete it to download again, or restore it"


@dataclass
class _Header:
    path: Path
    kind: _Kind
    size: int
    magic: int | None = None     # None when the file is shorter than 4 bytes
    dims: tuple[int, ...] = ()   # () when the header is cut short

    @property
    def count(self) -> int | None:
        """The item count the header states, when the header is whole and of this kind."""
        return self.dims[0] if self.magic == self.kind.magic and self.dims else None


def _read_header(path: Path, kind: _Kind) -> _Header:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(kind.header)
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror}): fix its permissions, or {_FIX}") from None
    h = _Header(path, kind, size)
    if len(head) >= 4:
        h.magic = int.from_bytes(head[:4], "big")
    if h.magic == kind.magic and len(head) == kind.header:
        h.dims = tuple(int.from_bytes(head[i:i + 4], "big") for i in range(4, kind.header, 4))
    return h


def _expected_size(kind: _Kind, n: int) -> int:
    return kind.header + n * kind.item_bytes


def _check_file(h: _Header, partner: _Header | None) -> None:
    """DataError (one line naming the file, its size and what was expected) unless `h` is a whole IDX file."""
    kind, path, size = h.kind, h.path, h.size
    # What a file of the partner's count would weigh, for files whose own header cannot say.
    hint = (f"{_expected_size(kind, partner.count):,} bytes for {kind.describe(partner.count)}, as many as "
            f"{partner.path.name} next to it holds" if partner is not None and partner.count is not None
            else f"an IDX file of MNIST {kind.noun} (a {kind.header}-byte header, then "
                 f"{kind.item_bytes:,} byte{'s' if kind.item_bytes > 1 else ''} per {kind.noun[:-1]})")
    if size == 0:
        raise DataError(f"{path} is 0 bytes (empty), expected {hint}: the file is truncated or corrupt; {_FIX}")
    if h.magic is not None and h.magic != kind.magic:
        other = _LABELS if kind is _IMAGES else _IMAGES
        why = ("it is gzip-compressed: unpack it (gunzip), or" if h.magic >> 16 == 0x1F8B
               else f"that is the magic of MNIST {other.noun}: are the files swapped? Otherwise"
               if h.magic == other.magic else "the file is not MNIST data or is corrupt;")
        raise DataError(f"{path} is {size:,} bytes and starts with magic number {h.magic} (0x{h.magic:08X}), "
                        f"expected {kind.magic} (0x{kind.magic:08X}: unsigned bytes in {kind.ndim} "
                        f"dimension{'s' if kind.ndim > 1 else ''}, MNIST {kind.noun}): {why} {_FIX}")
    if not h.dims:
        raise DataError(f"{path} is {size:,} bytes, shorter than its {kind.header}-byte header; expected {hint}: "
                        f"the file is truncated or corrupt; {_FIX}")
    n = h.dims[0]
    if kind is _IMAGES and h.dims[1:] != (SIDE, SIDE):
        raise DataError(f"{path} is {size:,} bytes and its header says {n:,} images of {h.dims[1]}×{h.dims[2]}, "
                        f"expected images of {SIDE}×{SIDE} (MNIST): the file is not MNIST or is corrupt; {_FIX}")
    if n == 0:
        raise DataError(f"{path} is {size:,} bytes and its header says it holds no {kind.noun}, expected at least "
                        f"one: {_FIX}")
    want = _expected_size(kind, n)
    if size != want:
        why = "the file is truncated or corrupt" if size < want else "the file is longer than its header says: corrupt"
        raise DataError(f"{path} is {size:,} bytes, expected {want:,} for {kind.describe(n)} "
                        f"(header says {n:,}): {why}; {_FIX}")


def check_mnist_files(raw_dir: str | Path) -> list[str]:
    """Check the four IDX files in a torchvision MNIST/raw/ folder before torchvision reads them.

    Every file that exists must have its magic number (2051 images, 2049 labels), a whole header, 28×28 images and
    exactly header + n×28×28 (images) or header + n (labels) bytes, and each split's images and labels must agree
    in count; otherwise DataError, one line naming the file, its size and what was expected. Returns the names of
    the files that are missing (not a file), in SPLIT_FILES order.
    """
    raw = Path(raw_dir)
    missing: list[str] = []
    for images_name, labels_name in SPLIT_FILES:
        headers = {}
        for name, kind in ((images_name, _IMAGES), (labels_name, _LABELS)):
            path = raw / name
            if path.is_file():
                headers[kind.noun] = _read_header(path, kind)
            elif path.exists():
                raise DataError(f"{path} is a folder, expected the file {name}: move it away, and put the file there")
            else:
                missing.append(name)
        imgs, labs = headers.get("images"), headers.get("labels")
        for h, partner in ((imgs, labs), (labs, imgs)):
            if h is not None:
                _check_file(h, partner)
        if imgs is not None and labs is not None and imgs.count != labs.count:
            raise DataError(
                f"{imgs.path} holds {imgs.count:,} images ({imgs.size:,} bytes) but {labs.path.name} next to it holds "
                f"{labs.count:,} labels ({labs.size:,} bytes), expected one label per image: the two files come from "
                f"different sets; restore both from the same source, or delete both to download again")
    return missing


def _check_archives(raw: Path) -> list[str]:
    """Before a download: DataError for any .gz torchvision would download over (its MD5 differs from the MNIST
    download's). Returns the names of the .gz files torchvision will unpack as they are."""
    from torchvision.datasets.mnist import MNIST as TorchvisionMNIST  # the class, even where a test replaced it
    from torchvision.datasets.utils import check_md5

    usable = []
    for gz_name, md5 in TorchvisionMNIST.resources:
        gz = raw / gz_name
        if not gz.is_file():
            continue
        if not check_md5(str(gz), md5):
            name = gz_name.removesuffix(".gz")
            raise DataError(
                f"{gz} is {gz.stat().st_size:,} bytes and is not the MNIST download torchvision expects (MD5 {md5}), "
                f"so the download would replace it: unpack it into {name} yourself (gunzip -k) if it holds your "
                f"data, or delete it to download again")
        usable.append(gz_name)
    return usable


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


def _legacy(root: Path) -> bool:
    """True when torchvision would load its old processed/*.pt files instead of the raw IDX files."""
    return all((root / "MNIST" / "processed" / f).is_file() for f in ("training.pt", "test.pt"))


def _download(root: Path, missing: list[str]) -> None:
    raw = root / "MNIST" / "raw"
    archives = _check_archives(raw)
    if all(f"{name}.gz" in archives for name in missing):
        print(f"MNIST in {root}: unpacking {', '.join(missing)} from the .gz files there", flush=True)
    else:
        print(f"MNIST not found in {root}: downloading it there (about 12 MB)...", flush=True)
    try:
        # torchvision fetches (or reuses a verified .gz of) all four files and unpacks them into raw/
        import torchvision

        torchvision.datasets.MNIST(str(root), train=True, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError depending on the failure
        # torchvision lists every mirror it tried; the last line holds the cause (e.g. no network)
        cause = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(
            f"MNIST not found in {root} and the download failed ({cause}). "
            f"Expected {_LAYOUT.format(root=root)}. Copy those files there, or pass --data-dir with a folder that "
            f"has them (for example ../shared/data/mnist-5k)."
        ) from None
    still = check_mnist_files(raw)
    if still:
        raise DataError(f"MNIST in {root}: the download finished but {', '.join(still)} is still missing in {raw}. "
                        f"Expected {_LAYOUT.format(root=root)}.")


def _read_legacy_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, labels) from torchvision's old processed/*.pt files."""
    import torchvision

    try:
        ds = torchvision.datasets.MNIST(str(root), train=train, download=False)
    except Exception as err:
        cause = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(f"MNIST in {root} could not be read ({type(err).__name__}: {cause}). "
                        f"Expected {_LAYOUT.format(root=root)}.") from None
    return ds.data, ds.targets


def _read_idx(path: Path, kind: _Kind) -> torch.Tensor:
    """The items of an IDX file that `check_mnist_files` passed (so its header and size are known good). Read
    directly rather than through torchvision's dataset class, whose import a sweep would otherwise pay for
    nothing but this."""
    h = _read_header(path, kind)
    items = np.fromfile(path, dtype=np.uint8, offset=kind.header)
    return torch.from_numpy(items.reshape(h.dims))


def _read_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if _legacy(root):
        return _read_legacy_split(root, train)
    images, labels = SPLIT_FILES[0 if train else 1]
    raw = root / "MNIST" / "raw"
    return _read_idx(raw / images, _IMAGES), _read_idx(raw / labels, _LABELS)


def load_mnist(data_dir: str | Path, download: bool = True) -> MnistData:
    """Both MNIST splits from a torchvision MNIST root, downloading into it when missing and possible.

    The raw files that exist are checked first (`check_mnist_files`): a corrupt one is a DataError naming it,
    never a reason to download over it.
    """
    root = Path(data_dir).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise DataError(f"--data-dir {root} is a file; expected a folder: {_LAYOUT.format(root=root)}.")
    if not _legacy(root):
        missing = check_mnist_files(root / "MNIST" / "raw")
        if missing and not download:
            some = f" (missing {', '.join(missing)})" if len(missing) < 4 else ""
            raise DataError(f"MNIST not found in {root}{some}. Expected {_LAYOUT.format(root=root)}.")
        if missing:
            _download(root, missing)
    (train_x, train_y), (test_x, test_y) = _read_split(root, True), _read_split(root, False)
    return MnistData(normalize(train_x), train_y.long(), normalize(test_x), test_y.long(), str(root))


def check_per_class(per_class: int | None, data: MnistData, val_per_class: int | None = 0) -> None:
    """A config asking for more training (plus validation) images per digit than `data` has → ConfigError
    (before any trial)."""
    have = int(torch.bincount(data.train_labels, minlength=NUM_CLASSES).min())
    v = val_size(data.train_labels, val_per_class)
    if per_class is not None and per_class + v > have:
        held = f" plus the {v} per digit held out for validation (val_per_class)" if v else ""
        raise ConfigError(f"config 'train_per_class' = {per_class}{held} is more than the training set has: "
                          f"at most {have} images per digit in {data.root}")
    if v >= have:
        raise ConfigError(f"config 'val_per_class' = {v} leaves no training images: the training set has at most "
                          f"{have} images per digit in {data.root}")


VAL_FRACTION = 0.1  # the default validation split: this share of the smallest digit's training images, per digit


def val_size(labels: torch.Tensor, val_per_class: int | None) -> int:
    """Validation images per digit: `val_per_class`, or for None 10% of the smallest digit's count in `labels`."""
    if val_per_class is None:
        return int(int(torch.bincount(labels, minlength=NUM_CLASSES).min()) * VAL_FRACTION)
    return int(val_per_class)


def stratified_split(labels: torch.Tensor, per_class: int | None, seed: int,
                     val_per_class: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices), both sorted and stratified, drawn with `seed`.

    Each class gets one seeded permutation: the validation images are its last `val_size` entries, the training
    subset its first `per_class` entries (None: all the others). So for one seed the validation split is the same
    for every training size and disjoint from all of them, and a training subset is the same with or without a
    validation split (nested across sizes, as before)."""
    v = val_size(labels, val_per_class)
    if per_class is not None and per_class < 1:
        raise DataError(f"per_class = {per_class}: must be at least 1 image per digit")
    gen = torch.Generator().manual_seed(int(seed))
    train, val = [], []
    for cls in range(NUM_CLASSES):
        idx = torch.nonzero(labels == cls, as_tuple=True)[0]
        # Draw the permutation for every class even when an error follows, so the stream never depends on n.
        perm = idx[torch.randperm(len(idx), generator=gen)]
        if (per_class or 0) + v > len(idx) or v >= len(idx):
            counts = torch.bincount(labels, minlength=NUM_CLASSES)
            held = f" (plus {v} per digit held out for validation)" if v else ""
            raise DataError(
                f"asked for {per_class if per_class is not None else 'all'} images per digit{held}, but "
                f"digit {cls} has only {len(idx)} (this training set has at most {int(counts.min())} per digit); "
                f"lower train_per_class" + (" or val_per_class" if v else ""))
        train.append(perm[:per_class] if per_class is not None else perm[:len(idx) - v])
        val.append(perm[len(idx) - v:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


def stratified_subset(labels: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of `per_class` images of every class, drawn with `seed`; None → every index.

    Each class gets one seeded permutation and the subset is its first `per_class` entries, so for one seed
    the 10-per-class subset lies inside the 30-per-class one (nested), and different seeds draw differently.
    The training part of `stratified_split` (which also holds out a validation split) is this same subset.
    """
    return stratified_split(labels, per_class, seed, 0)[0]
