"""Shared fixtures: the real MNIST folder (../shared/data/mnist-5k in CI, or $MNIST_DIR), loaded once per session.
Helpers (run_cli, the log factory) live in tests/helpers.py.

Run: pytest                 (everything; pyproject.toml runs three test files at a time, pytest-xdist)
     pytest -m "not slow"   (skips the end-to-end sweeps through real Ray)
     pytest -n 0 tests/test_loop.py   (one file, in this process)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from helpers import ROOT

DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist-5k"

# Test files run side by side (pytest-xdist). Each worker gets its own Ray temporary folder: a test that starts a
# multi-node Ray (ray.cluster_utils.Cluster) records its address there, and a plain ray.init() in another worker
# would join that cluster instead of starting its own. And one thread per torch process by default: three workers
# each running torch on every core would oversubscribe the machine (trials pin their own threads anyway).
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), f"ray-{worker}"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")


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
