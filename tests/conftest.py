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


# Each test file runs on one worker, and a file's tests stay together (--dist loadfile). Files go out in this order,
# the longest first (as measured in a full run here): a long file handed out last would run alone at the end while
# the other workers sit idle. Files not named follow in collection order. pyproject.toml turns off xdist's own
# reordering (most tests first), which put the long sweep files last.
LONGEST_FIRST = ["test_search.py", "test_interrupts.py", "test_gpu_scheduling.py", "test_e2e_transfer.py",
                 "test_search_resume.py", "test_bad_inputs.py", "test_node_loss.py", "test_feature_store.py",
                 "test_e2e_sweep.py", "test_e2e_deformed.py", "test_faults.py", "test_console.py",
                 "test_trial_overhead.py", "test_gpu_benchmark.py", "test_report_tradeoff.py", "test_resources.py"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort: each file's order is kept


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
