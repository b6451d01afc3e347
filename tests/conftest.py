"""Shared fixtures: the real MNIST folder (../shared/data/mnist-5k in CI, or $MNIST_DIR), loaded once per session.
Helpers (run_cli, the log factory) live in tests/helpers.py.

Run: pytest                 (everything; pyproject.toml runs the test files in parallel processes, pytest-xdist)
     pytest -m "not slow"   (skips the end-to-end sweeps through real Ray)
     pytest -n 0 tests/test_loop.py   (one file, in this process)
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import ROOT

DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist-5k"

# Test files run side by side (pytest-xdist): each worker process gets its own Ray temporary folder, because a
# test that starts a multi-node Ray (ray.cluster_utils.Cluster) records its address in that folder, and a plain
# ray.init() in any other test would join that cluster instead of starting its own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("RAY_TMPDIR", f"/tmp/ray-{os.environ['PYTEST_XDIST_WORKER']}")


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
