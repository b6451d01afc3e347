"""Shared fixtures: the real MNIST folder (../shared/data/mnist-5k in CI, or $MNIST_DIR), loaded once per session.
Helpers (run_cli, the log factory) live in tests/helpers.py.

Run: pytest            (everything; the end-to-end sweeps through real Ray take most of the time)
     pytest -m "not slow"   (skips the end-to-end sweeps through real Ray)
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import ROOT

DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist-5k"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """A torchvision MNIST root: $MNIST_DIR, else ../shared/data/mnist-5k, else downloaded into tests/.data."""
    if os.environ.get("MNIST_DIR"):
        return Path(os.environ["MNIST_DIR"]).resolve()
    if DEFAULT_MNIST.is_dir():
        return DEFAULT_MNIST
    return ROOT / "tests" / ".data"  # load_mnist downloads here when online, else fails with what to do


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from trainables.data import load_mnist

    return load_mnist(mnist_dir)
