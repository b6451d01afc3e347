"""Corrupt MNIST files are named before torchvision reads them: truncated, empty, wrong magic, header dimensions,
image/label counts and .gz archives each give one DataError line naming the file, its size and what was expected,
and no download runs over a file that exists. The last test runs the sweep command on a truncated copy (Ray is
imported, never started: the data is loaded before).

Run: pytest tests/test_data_files.py
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torchvision

from helpers import one_error_line, run_cli
from trainables.data import DataError, check_mnist_files, load_mnist

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}


@pytest.fixture
def copy(tmp_path, mnist_dir) -> Path:
    """A writable copy of the MNIST root (the shared one is read-only)."""
    root = tmp_path / "mnist"
    shutil.copytree(mnist_dir / "MNIST" / "raw", root / "MNIST" / "raw")
    for f in (root / "MNIST" / "raw").iterdir():
        f.chmod(0o644)
    return root


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if load_mnist asks torchvision to download."""
    real = torchvision.datasets.MNIST

    def guarded(root, train=True, download=False, **kw):
        assert not download, "a download was attempted"
        return real(root, train=train, download=False, **kw)

    monkeypatch.setattr(torchvision.datasets, "MNIST", guarded)


def raw(root: Path, name: str) -> Path:
    return root / "MNIST" / "raw" / name


def error_of(root: Path) -> str:
    with pytest.raises(DataError) as err:
        load_mnist(root)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_good_files_pass_and_nothing_is_missing(mnist_dir):
    assert check_mnist_files(mnist_dir / "MNIST" / "raw") == []


def test_truncated_images_name_the_file_and_sizes(copy, no_download):
    path = raw(copy, TRAIN_IMAGES)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    msg = error_of(copy)
    n = (len(data) - 16) // 784
    assert msg.startswith(f"{path} is {len(data) // 2:,} bytes, expected {len(data):,} for {n:,} images of 28×28 "
                          f"(header says {n:,}): the file is truncated or corrupt")
    assert "delete it to download again" in msg
    assert path.read_bytes() == data[:len(data) // 2]  # not downloaded over


def test_empty_label_file_names_the_file_and_the_size_the_images_imply(copy, no_download):
    path = raw(copy, TRAIN_LABELS)
    n = path.stat().st_size - 8
    path.write_bytes(b"")
    msg = error_of(copy)
    assert msg.startswith(f"{path} is 0 bytes (empty), expected {8 + n:,} bytes for {n:,} labels, as many as "
                          f"{TRAIN_IMAGES} next to it holds")
    assert path.stat().st_size == 0


def test_wrong_magic_names_the_file_and_both_numbers(copy, no_download):
    path = raw(copy, "t10k-images-idx3-ubyte")
    data = bytearray(path.read_bytes())
    data[2:4] = b"\x08\x01"  # a label file's magic, 2049
    path.write_bytes(bytes(data))
    msg = error_of(copy)
    assert msg.startswith(f"{path} is {len(data):,} bytes and starts with magic number 2049 (0x00000801), "
                          f"expected 2051 (0x00000803")
    assert "are the files swapped?" in msg


def test_gzip_where_the_unpacked_file_belongs_says_so(copy, no_download):
    path = raw(copy, TRAIN_LABELS)
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    msg = error_of(copy)
    assert msg.startswith(f"{path} is 24 bytes and starts with magic number") and "gzip-compressed" in msg


def test_images_not_28x28_are_refused(copy, no_download):
    path = raw(copy, TRAIN_IMAGES)
    data = bytearray(path.read_bytes())
    data[8:16] = (32).to_bytes(4, "big") + (32).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    assert error_of(copy).startswith(f"{path} is {len(data):,} bytes and its header says 5,000 images of 32×32, "
                                     f"expected images of 28×28")


def test_image_and_label_counts_must_agree(copy, no_download):
    path = raw(copy, TRAIN_LABELS)
    data = path.read_bytes()
    n = len(data) - 8 - 1000
    path.write_bytes(data[:4] + n.to_bytes(4, "big") + data[8:8 + n])  # a whole label file, 1,000 labels short
    images = raw(copy, TRAIN_IMAGES)
    msg = error_of(copy)
    assert msg.startswith(f"{images} holds {n + 1000:,} images ({images.stat().st_size:,} bytes) but {TRAIN_LABELS} "
                          f"next to it holds {n:,} labels ({n + 8:,} bytes), expected one label per image")


def test_longer_than_the_header_says(copy, no_download):
    path = raw(copy, "t10k-labels-idx1-ubyte")
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x00")
    assert error_of(copy).startswith(f"{path} is {size + 1:,} bytes, expected {size:,} for {size - 8:,} labels")


def test_corrupt_file_with_others_missing_is_named_before_any_download(copy, no_download):
    raw(copy, "t10k-labels-idx1-ubyte").unlink()
    raw(copy, TRAIN_IMAGES).write_bytes(b"\x00\x00\x08\x03")
    assert error_of(copy).startswith(f"{raw(copy, TRAIN_IMAGES)} is 4 bytes, shorter than its 16-byte header")


def test_missing_file_without_download_names_it(copy):
    raw(copy, "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"MNIST not found in .* \(missing t10k-labels-idx1-ubyte\)\. Expected "):
        load_mnist(copy, download=False)


def test_gz_torchvision_would_download_over_is_named(copy, no_download):
    raw(copy, "t10k-images-idx3-ubyte").unlink()
    gz = raw(copy, "t10k-images-idx3-ubyte.gz")
    gz.write_bytes(b"\x1f\x8b not the MNIST download")
    msg = error_of(copy)
    assert msg.startswith(f"{gz} is {gz.stat().st_size:,} bytes and is not the MNIST download torchvision expects (MD5 ")
    assert gz.read_bytes() == b"\x1f\x8b not the MNIST download"


def test_sweep_on_a_truncated_file_prints_one_error_line_and_downloads_nothing(copy, tmp_path):
    path = raw(copy, TRAIN_IMAGES)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in path.parent.iterdir()}
    proc = run_cli("sweeps/stn_mnist.py", "--data-dir", str(copy), "--out", str(tmp_path / "run"),
                   "--epochs", "1", "--seeds", "0", env=OFFLINE)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    n = (len(data) - 16) // 784
    assert errors == [f"error: {path} is {len(data) // 2:,} bytes, expected {len(data):,} for {n:,} images of 28×28 "
                      f"(header says {n:,}): the file is truncated or corrupt; delete it to download again, "
                      f"or restore it"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "download" not in proc.stdout.lower()  # no "downloading it there" notice
    assert {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in path.parent.iterdir()} == before


def test_sweep_on_an_empty_label_file_prints_one_error_line(copy, tmp_path):
    # the command line, not just load_mnist: this case used to end in a 38-line traceback
    path = raw(copy, TRAIN_LABELS)
    path.write_bytes(b"")
    proc = run_cli("sweeps/stn_mnist.py", "--data-dir", str(copy), "--out", str(tmp_path / "run"),
                   "--epochs", "1", "--seeds", "0", env=OFFLINE)
    one_error_line(proc, 2, str(path), "is 0 bytes (empty)")
    assert not (tmp_path / "run" / "logs").exists()
