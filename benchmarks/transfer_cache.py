"""Benchmark: the transfer grid in tutorial mode and in cached mode, in one run, on the same data.

Counts backbone forward passes per mode with the forward hook every backbone carries
(`trainables.backbones.FORWARD_IMAGES`), times each mode, and times one plain backbone pass over the grid's
unique images (the least any mode must do). Trials run in this process through the real trainable
(`train_transfer`) without Ray, so the figures compare the two pipelines, not Ray's scheduling.

    python benchmarks/transfer_cache.py --data-dir ../shared/data/mnist-5k          # its grid shape, 32 px
    python benchmarks/transfer_cache.py --epochs 50 --test-limit 10000 --image-size 224   # its whole grid (GPU)

Defaults are the original study's grid shape (2 backbones x 5 sizes x 3 seeds) scaled down for a 2-core CPU: 32 px,
random weights, 1 epoch, 100 test images. Tutorial-mode forwards grow with epochs and test images; cached-mode
forwards do not, so the script also prints the counts projected to the original study's 50 epochs and 10,000
test images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from trainables import backbones
from trainables.backbones import TransferNet, compute_features, load_backbone
from trainables.data import load_mnist, stratified_split
from trainables.loop import MemoryReporter
from trainables.transfer import TransferConfig, feature_jobs, prepare_features, train_transfer


def run_mode(mode: str, data, configs: list[TransferConfig]) -> dict:
    backbones.FORWARD_IMAGES.clear()
    t0 = time.perf_counter()
    feats = prepare_features(data, configs) if mode == "cached" else None
    t_features = time.perf_counter() - t0
    for i, cfg in enumerate(configs, 1):
        train_transfer(cfg.to_dict(), data, feats, MemoryReporter())
        if sys.stdout.isatty():
            print(f"  {mode}: trial {i}/{len(configs)} done after {time.perf_counter() - t0:.0f} s", end="\r")
    wall = time.perf_counter() - t0
    print(f"  {mode}: {wall:.1f} s, {sum(backbones.FORWARD_IMAGES.values()):,} backbone forwards" + " " * 20,
          flush=True)
    return {"wall_s": wall, "features_s": t_features, "forwards": dict(backbones.FORWARD_IMAGES)}


def one_pass(data, configs: list[TransferConfig]) -> tuple[float, float]:
    """One eval-mode forward of every unique image through each backbone, the floor for any pipeline:
    (seconds of forward passes alone, seconds including building/loading the backbones)."""
    jobs = feature_jobs(data, configs)
    t0 = time.perf_counter()
    models = {}
    for key in jobs:
        model, weights, size, _ = key.split("|")
        models[key] = TransferNet(load_backbone(model, weights)[0], torch.nn.Identity(), int(size), False)
    t1 = time.perf_counter()
    for key, (idx, n_test) in jobs.items():
        images = torch.cat([data.train_images[idx], data.test_images[:n_test]])
        compute_features(models[key], images, device=torch.device("cpu"))
    t2 = time.perf_counter()
    return t2 - t1, t2 - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="torchvision MNIST root")
    p.add_argument("--models", nargs="+", default=["resnet50", "vgg19"])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 50, 70, 90], help="images per digit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--test-limit", type=int, default=100)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--weights", default="none")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--skip-tutorial", action="store_true", help="measure the cached mode only")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_mnist(args.data_dir)
    configs = [TransferConfig(model=m, weights=args.weights, image_size=args.image_size, train_per_class=n,
                              seed=s, epochs=args.epochs, test_limit=args.test_limit)
               for m in args.models for n in args.sizes for s in args.seeds]
    jobs = feature_jobs(data, configs)
    unique = {k: len(idx) + n for k, (idx, n) in jobs.items()}
    print(f"{len(configs)} trials x {args.epochs} epoch(s), {args.image_size} px, {args.test_limit} test images, "
          f"{args.threads} thread(s); unique images per backbone: {unique}")

    out = {"trials": len(configs), "epochs": args.epochs, "image_size": args.image_size,
           "test_limit": args.test_limit, "unique_images": unique}
    out["one_pass_s"], out["one_pass_with_load_s"] = one_pass(data, configs)
    print(f"  one backbone pass over the unique images: {out['one_pass_s']:.1f} s of forwards, "
          f"{out['one_pass_with_load_s']:.1f} s with building the backbones")
    out["cached"] = run_mode("cached", data, configs)
    if not args.skip_tutorial:
        out["tutorial"] = run_mode("tutorial", data, [TransferConfig(**{**c.to_dict(), "backbone_mode": "tutorial"})
                                                      for c in configs])

    f_cached = sum(out["cached"]["forwards"].values())
    c = out["cached"]
    print(f"\ncached: {f_cached:,} forwards, {c['wall_s']:.1f} s (features {c['features_s']:.1f} s, heads "
          f"{c['wall_s'] - c['features_s']:.1f} s) = {c['wall_s'] / out['one_pass_with_load_s']:.2f}x one pass with "
          f"loading, {c['wall_s'] / out['one_pass_s']:.2f}x the forwards alone (target <= 1.3x)")
    if "tutorial" in out:
        f_tut = sum(out["tutorial"]["forwards"].values())
        out["forward_ratio"] = f_tut / f_cached
        out["wall_ratio"] = out["tutorial"]["wall_s"] / out["cached"]["wall_s"]
        print(f"tutorial: {f_tut:,} forwards, {out['tutorial']['wall_s']:.1f} s")
        print(f"measured: {out['forward_ratio']:.1f}x fewer backbone forwards, {out['wall_ratio']:.1f}x less wall time")
        # Tutorial forwards per trial are epochs x (training + validation + test images); cached ones do not grow
        # with epochs.
        train_imgs = sum(sum(map(len, stratified_split(data.train_labels, c.train_per_class, c.seed,
                                                       c.val_per_class))) for c in configs)
        per_epoch = f_tut / args.epochs
        assert per_epoch == train_imgs + len(configs) * args.test_limit, "tutorial count is not per-epoch uniform"
        orig_tut = 50 * (train_imgs + len(configs) * 10_000)
        orig_cached = sum(len(idx) + 10_000 for idx, _ in jobs.values())
        out["projected_original_study"] = {"tutorial": orig_tut, "cached": orig_cached, "ratio": orig_tut / orig_cached}
        print(f"projected to the original study's 50 epochs and 10,000 test images: tutorial {orig_tut:,} vs cached "
              f"{orig_cached:,} forwards = {orig_tut / orig_cached:.0f}x (target >= 300x)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
