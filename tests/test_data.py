"""MNIST tensors and stratified subsets: normalization, determinism, nesting, stratification, clear errors."""
from __future__ import annotations

import pytest
import torch
import torchvision

from trainables.data import DataError, load_mnist, normalize, stratified_split, stratified_subset


def test_loaded_once_as_normalized_tensors(mnist, mnist_dir):
    assert mnist.train_images.dtype == torch.float32 and mnist.train_images.shape[1:] == (1, 28, 28)
    assert mnist.test_images.shape == (len(mnist.test_labels), 1, 28, 28)
    assert mnist.train_labels.dtype == torch.int64 and set(mnist.train_labels.tolist()) == set(range(10))
    # Same numbers as the tutorial's per-sample ToTensor + Normalize((0.1307,), (0.3081,)).
    tf = torchvision.transforms.Compose([torchvision.transforms.ToTensor(),
                                         torchvision.transforms.Normalize((0.1307,), (0.3081,))])
    ds = torchvision.datasets.MNIST(str(mnist_dir), train=False, transform=tf)
    for i in (0, 17, 9999 % len(ds)):
        img, label = ds[i]
        torch.testing.assert_close(mnist.test_images[i], img)
        assert mnist.test_labels[i].item() == label


def test_normalize_maps_background_and_ink():
    x = normalize(torch.tensor([[[0, 255]]], dtype=torch.uint8))
    assert x.shape == (1, 1, 1, 2)
    assert x[0, 0, 0, 0].item() == pytest.approx(-0.1307 / 0.3081, rel=1e-6)
    assert x[0, 0, 0, 1].item() == pytest.approx((1 - 0.1307) / 0.3081, rel=1e-6)


def test_subset_is_stratified(mnist):
    idx = stratified_subset(mnist.train_labels, 30, seed=3)
    assert len(idx) == 300 and len(set(idx.tolist())) == 300
    assert torch.bincount(mnist.train_labels[idx], minlength=10).tolist() == [30] * 10


def test_subset_is_deterministic_per_seed_and_differs_across_seeds(mnist):
    a = stratified_subset(mnist.train_labels, 10, seed=0)
    assert torch.equal(a, stratified_subset(mnist.train_labels, 10, seed=0))
    others = [set(stratified_subset(mnist.train_labels, 10, seed=s).tolist()) for s in (1, 2)]
    assert all(o != set(a.tolist()) for o in others)
    assert others[0] != others[1]


def test_subsets_are_nested_for_one_seed(mnist):
    for seed in (0, 1, 2):
        sets = [set(stratified_subset(mnist.train_labels, n, seed).tolist()) for n in (10, 30, 50, 70, 90)]
        assert all(small < big for small, big in zip(sets, sets[1:]))


def test_subset_none_is_everything(mnist):
    assert torch.equal(stratified_subset(mnist.train_labels, None, 0), torch.arange(len(mnist.train_labels)))


def test_more_per_digit_than_exist_is_a_clear_error(mnist):
    have = int(torch.bincount(mnist.train_labels).min())
    with pytest.raises(DataError, match=rf"asked for {have + 100} images per digit.*at most {have} per digit"):
        stratified_subset(mnist.train_labels, have + 100, seed=0)


def test_validation_split_is_held_out_of_every_training_subset_of_its_seed(mnist):
    labels = mnist.train_labels
    have = int(labels.bincount().min())
    splits = {n: stratified_split(labels, n, seed=3, val_per_class=None) for n in (10, 30, None)}
    val = splits[10][1]
    assert labels[val].bincount(minlength=10).tolist() == [have // 10] * 10  # default: a tenth, per digit
    for n, (train, v) in splits.items():
        assert torch.equal(v, val)  # one validation split per seed, whatever the training size
        assert not set(train.tolist()) & set(val.tolist())
        if n is not None:  # the training subset is the one drawn without a validation split
            assert torch.equal(train, stratified_subset(labels, n, seed=3))
    assert len(splits[None][0]) + len(val) == len(labels)  # "all": everything not held out
    assert not torch.equal(stratified_split(labels, 10, seed=4, val_per_class=None)[1], val)
    assert len(stratified_split(labels, 10, seed=3, val_per_class=0)[1]) == 0
    assert labels[stratified_split(labels, 10, seed=3, val_per_class=7)[1]].bincount().tolist() == [7] * 10


def test_fit_logs_validation_metrics_and_leaves_test_metrics_as_they_were(mnist):
    from trainables.loop import MemoryReporter
    from trainables.stn import train_stn

    config = {"epochs": 1, "train_per_class": 10, "test_limit": 50, "seed": 0}
    with_val, without = MemoryReporter(), MemoryReporter()
    train_stn({**config, "val_per_class": 5}, mnist, with_val)
    train_stn({**config, "val_per_class": 0}, mnist, without)
    (a,), (b,) = with_val.rows, without.rows
    assert 0 <= a["val_acc"] <= 1 and a["val_loss"] > 0 and "val_acc" not in b
    assert (a["test_acc"], a["test_loss"], a["train_loss"]) == (b["test_acc"], b["test_loss"], b["train_loss"])


def test_missing_files_without_download_name_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"MNIST not found in .*MNIST/raw/ holding train-images-idx3-ubyte"):
        load_mnist(tmp_path, download=False)


def test_failed_download_is_one_clear_message(tmp_path, monkeypatch):
    real = torchvision.datasets.MNIST

    def offline(root, train=True, download=False, **kw):
        if download:  # what torchvision raises when no mirror can be reached
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://example/, got:\n"
                               "<urlopen error [Errno -2] Name or service not known>")
        return real(root, train=train, download=False, **kw)

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path / "empty")
    msg = str(err.value)
    assert "download failed (<urlopen error [Errno -2] Name or service not known>)" in msg
    assert "MNIST/raw/" in msg and "--data-dir" in msg
