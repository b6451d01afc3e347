"""Benchmark: one STN training epoch + one test pass, our tensor pipeline vs the PyTorch tutorial's pipeline.

Both sides train the same affine STN (same init, same SGD settings, batch 64) on the same MNIST files:
  ours      images loaded once as a normalized float tensor; batches are index slices (`trainables.loop`),
            the test pass runs in batches of 500, channels_last layout
  tutorial  torchvision.datasets.MNIST with per-sample ToTensor + Normalize, DataLoader(batch 64, shuffle,
            num_workers as in the tutorial), test loader batch 64

    python benchmarks/stn_epoch.py --data-dir ../shared/data/mnist-5k [--repeats 3] [--threads 2] [--json out.json]

Prints the median time of each side, and the ratio tutorial / ours (higher = we are faster).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader

from trainables.data import MNIST_MEAN, MNIST_STD, load_mnist
from trainables.loop import evaluate, prepare_model, train_one_epoch
from trainables.models import build_stn


def ours(data, seed: int) -> float:
    torch.manual_seed(seed)
    model = prepare_model(build_stn("affine"), torch.device("cpu"))  # as trainables.loop.fit does
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    t0 = time.perf_counter()
    train_one_epoch(model, data.train_images, data.train_labels, opt, batch_size=64,
                    generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))
    evaluate(model, data.test_images, data.test_labels, device=torch.device("cpu"))
    return time.perf_counter() - t0


def tutorial(root: Path, seed: int, num_workers: int) -> float:
    """The tutorial's loop, including building its DataLoaders (they are rebuilt by the notebook too)."""
    torch.manual_seed(seed)
    model = build_stn("affine")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tf = torchvision.transforms.Compose([torchvision.transforms.ToTensor(),
                                         torchvision.transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    t0 = time.perf_counter()
    train_loader = DataLoader(torchvision.datasets.MNIST(str(root), train=True, transform=tf),
                              batch_size=64, shuffle=True, num_workers=num_workers)
    test_loader = DataLoader(torchvision.datasets.MNIST(str(root), train=False, transform=tf),
                             batch_size=64, shuffle=False, num_workers=num_workers)
    tutorial_epoch(model, opt, train_loader, test_loader)
    return time.perf_counter() - t0


def tutorial_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, train_loader: DataLoader,
                   test_loader: DataLoader, device: torch.device | None = None) -> float:
    """One epoch of the tutorial's loop: a training pass over its loader, then the test pass, each batch moved to
    `device` on its own and each test batch's sums read back, as the tutorial does. Returns the test accuracy."""
    model.train()
    for x, y in train_loader:
        if device is not None:
            x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    correct, total, n = 0, 0.0, 0
    with torch.no_grad():
        for x, y in test_loader:
            if device is not None:
                x, y = x.to(device), y.to(device)
            out = model(x)
            total += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return correct / max(n, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="torchvision MNIST root")
    p.add_argument("--repeats", type=int, default=3, help="runs per side; the median is reported (default: 3)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads for both sides (default: all cores)")
    p.add_argument("--num-workers", type=int, default=4, help="tutorial DataLoader workers (the tutorial: 4)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    root = args.data_dir.expanduser().resolve()
    t_load = time.perf_counter()
    data = load_mnist(root)
    t_load = time.perf_counter() - t_load
    print(f"{data.describe()}; tensors loaded once in {t_load:.2f} s; {args.threads} thread(s)")
    times = {"ours": [], "tutorial": []}
    for r in range(args.repeats):  # interleaved, so drift in machine load hits both sides alike
        times["tutorial"].append(tutorial(root, r, args.num_workers))
        times["ours"].append(ours(data, r))
        print(f"  run {r + 1}: tutorial {times['tutorial'][-1]:.2f} s, ours {times['ours'][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["tutorial"] / med["ours"]
    print(f"epoch + test pass (median of {args.repeats}): tutorial {med['tutorial']:.2f} s, ours {med['ours']:.2f} s"
          f"  ->  {ratio:.2f}x faster (target >= 3x)")
    if args.json:
        args.json.write_text(json.dumps({"median_s": med, "runs_s": times, "ratio": ratio, "threads": args.threads,
                                         "num_workers": args.num_workers, "load_s": t_load,
                                         "train_images": len(data.train_labels),
                                         "test_images": len(data.test_labels)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
