"""Benchmark: the transfer studies' feature pass on this CPU, against the way it ran before, in one run.

On a machine without a GPU nearly all of the main job (`sweeps/transfer_grid.py`) is one pass of each backbone over
the grid's unique images at 224 px. This script times that pass three ways on the same images and weights:

  before   fp32, NCHW input, batches of 64: the CPU pass before it ran channels_last from 64 px (the baseline)
  fp32     the pass as the sweep runs it by default (`compute_features`, feature_dtype fp32)
  bf16     the same with --feature-dtype bf16 (bf16 autocast; the heads still train on float32 features)

and prints images/s, each against the baseline, how far each path's features are from the baseline's, and what
the main job's passes would take at these rates. Random weights run at the speed of ImageNet's, so nothing is
downloaded.

    python benchmarks/cpu_features.py --data-dir ../shared/data/mnist-5k                 # both backbones, 224 px
    python benchmarks/cpu_features.py --models resnet50 --images 128 --json /tmp/cpu.json

bf16 is fast only where the CPU computes it natively (AVX512-BF16 or AMX on x86, shown as `bf16 native`);
elsewhere it is emulated and slower than fp32. The exit status is 0 when the passes ran, whatever the figures.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from trainables.backbones import TransferNet, compute_features, cpu_has_native_bf16, feature_settings, load_backbone
from trainables.data import DataError, load_mnist
from trainables.transfer import TransferConfig, feature_jobs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist-5k"
# the main job's grid (sweeps/transfer_grid.py): its unique images are what each backbone's pass covers
PAPER_SIZES, PAPER_SEEDS, PAPER_TEST = (10, 30, 50, 70, 90), (0, 1, 2), 10_000


def paper_images(data, model: str, image_size: int) -> int:
    """Images in one backbone's pass for the main job's grid on this dataset."""
    configs = [TransferConfig(model=model, weights="none", image_size=image_size, train_per_class=n, seed=s,
                              test_limit=min(PAPER_TEST, len(data.test_labels)))
               for n in PAPER_SIZES for s in PAPER_SEEDS]
    return sum(len(idx) + n_test for idx, n_test in feature_jobs(data, configs, "cpu").values())


@torch.inference_mode()
def nchw_pass(net: TransferNet, images: torch.Tensor) -> torch.Tensor:
    """The baseline: fp32, NCHW, batches of 64, as the CPU pass ran before."""
    net.compute_dtype, net.channels_last = torch.float32, False
    net.eval().to(memory_format=torch.contiguous_format)
    return torch.cat([net.embed(images[i:i + 64]) for i in range(0, len(images), 64)])


def timed(fn) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(model: str, images: torch.Tensor, image_size: int, repeats: int) -> dict:
    """Each path `repeats` times, interleaved (a shared machine's speed drifts); images/s are medians."""
    cpu = torch.device("cpu")
    net = TransferNet(load_backbone(model, "none")[0], nn.Identity(), image_size, backbone_train=False)
    paths = {"before": lambda: nchw_pass(net, images),
             **{dtype: (lambda d=dtype: compute_features(net, images, device=cpu, feature_dtype=d))
                for dtype in ("fp32", "bf16")}}
    seconds: dict[str, list[float]] = {k: [] for k in paths}
    feats: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for key, run in paths.items():
            # warm: oneDNN builds its kernels for a layout and dtype on first use, and switching paths rebuilds
            if key == "before":
                nchw_pass(net, images[:8])
            else:
                compute_features(net, images[:8], device=cpu, feature_dtype=key)
            feats[key], s = timed(run)
            seconds[key].append(s)
    row = {"images": len(images), "repeats": repeats, "seconds": seconds}
    for key in paths:
        row[f"{key}_img_s"] = len(images) / statistics.median(seconds[key])
    for key in ("fp32", "bf16"):
        row[f"{key}_vs_before"] = row[f"{key}_img_s"] / row["before_img_s"]
        row[f"{key}_rel_diff_to_before"] = ((feats[key] - feats["before"]).norm() / feats["before"].norm()).item()
    row["channels_last"] = feature_settings(cpu, "fp32", image_size)[2]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help=f"torchvision MNIST root ({DEFAULT_DATA})")
    p.add_argument("--models", nargs="+", default=["resnet50", "vgg19"], help="backbones (default: resnet50 vgg19)")
    p.add_argument("--images", type=int, default=192, help="images per pass (default: 192, three batches of 64)")
    p.add_argument("--image-size", type=int, default=224, help="input size in px (default: 224, the studies')")
    p.add_argument("--repeats", type=int, default=3, help="passes per path, interleaved; medians (default: 3)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help=f"torch threads (default: {torch.get_num_threads()}, this machine's)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if min(args.images, args.repeats, args.threads) < 1 or args.image_size < 32:
        p.error("--images, --repeats and --threads must be >= 1, --image-size >= 32")
    torch.set_num_threads(args.threads)
    try:
        data = load_mnist(args.data_dir.expanduser().resolve())
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    images = data.train_images[:args.images]
    native = cpu_has_native_bf16()
    print(f"{platform.machine()}, {args.threads} thread(s), bf16 native: {'yes' if native else 'no'}; "
          f"{len(images)} images at {args.image_size} px per pass, {args.repeats} pass(es) per path (medians), "
          f"random weights")
    rows = {}
    for model in args.models:
        r = rows[model] = measure(model, images, args.image_size, args.repeats)
        r["paper_images"] = paper_images(data, model, args.image_size)
        hours = {k: r["paper_images"] / r[f"{k}_img_s"] / 3600 for k in ("before", "fp32", "bf16")}
        r.update({f"paper_{k}_h": v for k, v in hours.items()})
        print(f"  {model}: before {r['before_img_s']:.1f} img/s; fp32 {r['fp32_img_s']:.1f} img/s "
              f"({r['fp32_vs_before']:.2f}x, features {r['fp32_rel_diff_to_before']:.1e} from before); "
              f"bf16 {r['bf16_img_s']:.1f} img/s ({r['bf16_vs_before']:.2f}x, features "
              f"{r['bf16_rel_diff_to_before']:.1e} from before)")
        print(f"    the main job's pass over {r['paper_images']:,} images: before {hours['before']:.2f} h, "
              f"fp32 {hours['fp32']:.2f} h, bf16 {hours['bf16']:.2f} h")
    if len(rows) > 1:
        total = {k: sum(r[f"paper_{k}_h"] for r in rows.values()) for k in ("before", "fp32", "bf16")}
        print(f"  all passes: before {total['before']:.2f} h, fp32 {total['fp32']:.2f} h, bf16 {total['bf16']:.2f} h")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.machine(), "threads": args.threads,
                                         "bf16_native": native, "image_size": args.image_size,
                                         "backbones": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
