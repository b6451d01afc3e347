"""benchmarks/transfer_cache.py at a tiny size: both backbone modes run, and the forwards it counts are what each
mode must do (no timing is asserted here)."""
from __future__ import annotations

import json

from helpers import run_cli
from trainables.data import load_mnist, stratified_split
from trainables.transfer import TransferConfig


def test_transfer_cache_benchmark_counts_each_modes_forwards(mnist_dir, tmp_path):
    out = tmp_path / "cache.json"
    done = run_cli("benchmarks/transfer_cache.py", "--data-dir", str(mnist_dir), "--models", "resnet18",
                   "--sizes", "1", "2", "--seeds", "0", "--epochs", "2", "--test-limit", "10", "--threads", "1",
                   "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    # tutorial mode: every epoch of every trial runs the backbone over its training, validation and test images
    data = load_mnist(mnist_dir)
    per_epoch = 0
    for size in (1, 2):
        cfg = TransferConfig(model="resnet18", train_per_class=size, seed=0, test_limit=10)
        idx, val_idx = stratified_split(data.train_labels, size, 0, cfg.val_per_class)
        assert len(val_idx) > 0  # the sweep's default validation split is in the count
        per_epoch += len(idx) + len(val_idx) + 10
    assert sum(figures["tutorial"]["forwards"].values()) == 2 * per_epoch
    # cached mode: one forward per unique image, whatever the epochs
    assert sum(figures["cached"]["forwards"].values()) == sum(figures["unique_images"].values())
    assert figures["projected_original_study"]["ratio"] > 1
