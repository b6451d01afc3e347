"""Benchmark: the project's GPU paths against their limits and baselines, in one prepared run sized for at most
6 minutes on one H100/H200. Prints a progress line per step and a table of every figure against its target;
--json PATH also writes the figures (each target: measured, target, met) with the device and the torch version.

  (a) features    the project's feature pass (`compute_features`: the 28 px → 224 px adapter, bf16 autocast,
                  channels_last, batch 256, features back on the host) against the limit measured in the same run:
                  the same backbone on ready 224 px input on the device, bf16 autocast, channels_last, batch 256,
                  inference_mode, cuDNN autotuning on. Both backbones (resnet50, vgg19), over the paper grid's
                  unique images. Target: the project's img/s >= 80% of the limit.
  (b) heads       the cached paper grid as the sweep runs it: `prepare_features` on the GPU (every unique image
                  through each backbone once), then all 30 head trials (2 backbones x 5 sizes (10-90 per digit)
                  x 3 seeds, 50 epochs, batch 4, 10,000 test images every epoch) through the real trainable
                  `train_transfer` in CPU worker processes, one per core, one torch thread each, the features
                  handed over as one memory-mapped file (as Ray's object store shares them). Target: features +
                  hand-over + heads <= 30 s; starting the workers is reported apart (a sweep's Ray workers are
                  already running).
  (c) stn         the affine STN, batch 64, 60,000 training images (mnist-5k tiled 12x) and 10,000 test images
                  per epoch, through `trainables.loop.fit` against the PyTorch tutorial's pipeline (per-sample
                  ToTensor + Normalize, DataLoader with 4 workers, batches moved to the GPU) on the same GPU; then
                  `fit` again with the config's `compile` (default reduce-overhead), compile seconds apart.
                  Targets: >= 3x the tutorial per epoch; 20 epochs <= 30 s; and, that speed never costs
                  accuracy, >= 95% test accuracy after the 20 epochs (a floor, not a race). On CUDA, diagnostics
                  without targets for the open question of uncompiled steps as CUDA graphs: `fit` with them
                  recorded (it trained to 56.5% on an H200); 150 steps recorded against eager ones from one
                  start, with and without dropout (where they part); and the forward + backward recorded by
                  torch.cuda.make_graphed_callables instead, the rest eager (speed and accuracy).
  (d) concurrent  four STN trainings at once on the one GPU, each its own process (what `--gpus-per-trial 0.25`
                  packs), against one alone; throughput = images trained and tested per second of wall time over
                  all processes. Target: >= 2.5x the throughput of one. Processes share a GPU side by side
                  only under MPS; without it the GPU switches between them. The run records whether an MPS
                  daemon was up; to measure both, run (d) again after starting one:
                    nvidia-cuda-mps-control -d; python benchmarks/gpu.py --sections concurrent; \
                    echo quit | nvidia-cuda-mps-control
  (e) dtype       the grid's heads (both backbones) trained on fp32 features and again on bf16 features of the
                  same images, same seeds, in the CPU workers of (b): how far the features differ (relative norm)
                  and the final test accuracy of each pair. Target (ours; the issue asks for the comparison):
                  bf16 features keep >= 99.5% of the fp32 heads' mean test accuracy.

    python benchmarks/gpu.py --json gpu.json                  # on the GPU machine (data: ../shared/data/mnist-5k)
    python benchmarks/gpu.py --sections stn concurrent        # some sections only
    python benchmarks/gpu.py --smoke --json /tmp/smoke.json   # the same code on the CPU at tiny sizes, < 1 minute

--smoke runs every section on the CPU (CUDA hidden) at 32 px with random backbone weights, a few images, 1-2 epochs
and 2 processes, and compiles with dynamo's aot_eager backend (inductor's C++ code generation alone takes over a
minute on a small CPU); its figures only show that the code runs, the targets apply to a GPU run.

Backbone weights: `--weights auto` (default) uses the ImageNet weights when both are in the torch hub cache
(`trainables.weights.weights_file`) and random ones (`none`) otherwise, so the run never needs the network;
throughput does not depend on the weights' values, and the JSON says which were used. The script imports
neither Ray, Optuna nor elasticdeform (the GPU machine has none of them): it calls `trainables` in this process
and in plain worker processes, as benchmarks/transfer_cache.py does, and never `sweeps/`. A section that raises is
reported with what it measured before, the others still run, and the exit code is 1.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torchvision
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Subset

from trainables.backbones import TransferNet, compute_features, feature_settings, load_backbone
from trainables.config import SGDConfig
from trainables.data import MNIST_MEAN, MNIST_STD, MnistData, load_mnist
from trainables.errors import UserError
from trainables.weights import ensure_weights, weights_file
from trainables import loop
from trainables.loop import MemoryReporter, fit, make_sgd, pick_device
from trainables.models import build_stn
from trainables.transfer import (FeatureSet, TransferConfig, feature_jobs, prepare_features, split_feature_key,
                                 train_transfer)

from stn_epoch import tutorial_epoch  # benchmarks/stn_epoch.py (this script's folder is on sys.path)

# The GPU machine's image has no Ray, Optuna or elasticdeform. None of the imports above may pull them in, and from
# here on importing them fails as it would there (in every worker process too: each imports this file again), so
# any run, the smoke test's included, proves the benchmark works without them; trainables.loop asks for Ray inside
# a try and does without it, as on that machine.
ABSENT_ON_GPU_MACHINE = ("ray", "optuna", "elasticdeform")
_pulled_in = [m for m in ABSENT_ON_GPU_MACHINE if sys.modules.get(m) is not None]
if _pulled_in:
    raise ImportError(f"benchmarks/gpu.py imported {', '.join(_pulled_in)}, which the GPU machine does not have")
for _name in ABSENT_ON_GPU_MACHINE:
    sys.modules[_name] = None

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist-5k"
SECTIONS = {"features": "(a)", "heads": "(b)", "stn": "(c)", "concurrent": "(d)", "dtype": "(e)"}
STN_ACC_PCT = 95.0  # (c)'s floor: the eager loop reached about 96% at the full run's sizes on an H200
BARRIER_TIMEOUT_S = 600  # a worker that never arrives ends its section with an error instead of hanging the run

# What a run measures: the paper's sizes on a GPU, and tiny ones for --smoke; an option given explicitly wins.
PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(models=["resnet50", "vgg19"], image_size=224, weights="auto", sizes=[10, 30, 50, 70, 90],
                 seeds=[0, 1, 2], head_epochs=50, test_limit=10_000, head_workers=None, stn_tile=12,
                 stn_train_limit=None, stn_test_limit=None, stn_epochs=20, tutorial_epochs=2, num_workers=4,
                 compile_mode="reduce-overhead", procs=4, proc_epochs=4, val_per_class=None,
                 dtype_models=["resnet50", "vgg19"]),
    "smoke": dict(models=["resnet50", "vgg19"], image_size=32, weights="none", sizes=[1, 2], seeds=[0, 1],
                  head_epochs=1, test_limit=20, head_workers=2, stn_tile=2, stn_train_limit=256,
                  stn_test_limit=200, stn_epochs=2, tutorial_epochs=1, num_workers=1, compile_mode="default",
                  procs=2, proc_epochs=1, val_per_class=1,
                  dtype_models=["resnet50"]),  # a CPU without native bf16 emulates it: VGG19 would dominate the run
}


def say(line: str) -> None:
    print(line, flush=True)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker_context() -> Any:
    """Worker processes fork from a server process that imported torch, torchvision and trainables once, so each
    starts in about a second instead of importing them again; none forks from this process, which may hold a CUDA
    context. The modules are named: Python 3.11's forkserver silently skips a "__main__" preload."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torchvision", "trainables.transfer", "trainables.models"])
    return ctx


def target(name: str, measured: float, op: str, goal: float, unit: str) -> dict[str, Any]:
    met = measured >= goal if op == ">=" else measured <= goal
    return {"name": name, "measured": measured, "op": op, "target": goal, "unit": unit, "met": bool(met)}


# ------------------------------------------------------------------------------------------------ (a) features

def grid_configs(a: argparse.Namespace, data: MnistData) -> list[TransferConfig]:
    """The paper grid (models x sizes x seeds) as the transfer sweep builds it, at this run's sizes (with the
    sweep's default validation split; one image per digit in --smoke)."""
    test_limit = min(a.test_limit, len(data.test_labels))
    return [TransferConfig(model=m, weights=a.weights, image_size=a.image_size, train_per_class=n, seed=s,
                           epochs=a.head_epochs, test_limit=test_limit, val_per_class=a.val_per_class)
            for m in a.models for n in a.sizes for s in a.seeds]


@torch.inference_mode()
def limit_img_s(backbone: nn.Module, n_images: int, image_size: int, device: torch.device, *,
                autotune: bool = True) -> float:
    """Images per second of the bare backbone on ready input already on the device: on CUDA bf16 autocast,
    channels_last, batch 256 (on the CPU as the CPU feature pass runs, `feature_settings`). The same number of
    images as the project's pass, in whole batches."""
    cuda = device.type == "cuda"
    _, batch, channels_last = feature_settings(device, image_size=image_size)
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        backbone.to(memory_format=torch.channels_last)
    backbone.eval()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cuda and autotune
    try:
        with amp:
            for _ in range(3 if cuda else 1):  # cuDNN picks its kernels on the first calls of a shape
                backbone(x)
            sync(device)
            batches = max(1, math.ceil(n_images / batch))
            t0 = time.perf_counter()
            for _ in range(batches):
                backbone(x)
            sync(device)
    finally:
        torch.backends.cudnn.benchmark = before
    return batches * batch / (time.perf_counter() - t0)


@torch.inference_mode()
def embed_on_device_img_s(net: TransferNet, images: torch.Tensor, device: torch.device) -> float:
    """Images per second of `net.embed` (as `compute_features` set it up) over `images` moved to the device once,
    the features never leaving it."""
    x = images.to(device)
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(x), 256):
        net.embed(x[i:i + 256])
    sync(device)
    return len(x) / (time.perf_counter() - t0)


def section_features(a: argparse.Namespace, data: MnistData, device: torch.device) -> dict[str, Any]:
    jobs = feature_jobs(data, grid_configs(a, data), device)
    out: dict[str, Any] = {"backbones": {}, "targets": []}
    for key, (idx, n_test) in jobs.items():
        name, weights, size, dtype = split_feature_key(key)
        images = torch.cat([data.train_images[idx], data.test_images[:n_test]])
        say(f"  {name}: {len(images):,} images at {size} px, {dtype}: the project's pass, then the limit")
        backbone, _ = load_backbone(name, weights)
        net = TransferNet(backbone, nn.Identity(), size, backbone_train=False)  # as features_for builds it
        # Warm: the CUDA context, the weights on the device, cuDNN's kernels for the full batch.
        compute_features(net, images[:256 if device.type == "cuda" else 8], device=device, feature_dtype=dtype)
        t0 = time.perf_counter()
        feats = compute_features(net, images, device=device, feature_dtype=dtype)  # ends on the host: synced
        project_s = time.perf_counter() - t0
        project = len(images) / project_s
        limit = limit_img_s(net.features, len(images), size, device)
        row = {"images": len(images), "feature_dim": feats.shape[1], "dtype": dtype, "project_s": project_s,
               "project_img_s": project, "limit_img_s": limit, "ratio": project / limit,
               "project_cudnn_autotune": torch.backends.cudnn.benchmark}
        if device.type == "cuda":  # how much of the gap cuDNN's autotuning alone explains
            row["limit_without_autotune_img_s"] = limit_img_s(net.features, len(images), size, device,
                                                              autotune=False)
            # and how much the copies back to the host: the same pass with the features left on the device
            row["project_without_host_copies_img_s"] = embed_on_device_img_s(net, images, device)
        out["backbones"][name] = row
        out["targets"].append(target(f"{name} feature pass / limit", project / limit, ">=", 0.8, "x"))
        say(f"  {name}: project {project:,.0f} img/s, limit {limit:,.0f} img/s ({project / limit:.2f}x)")
        del net, backbone, feats
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------------------------------- (b) heads

_HEAD_STATE: tuple[MnistData, dict[str, FeatureSet]] | None = None


def _head_worker_init(features_file: str, data_dir: str, barrier: Any) -> None:
    """A head worker: CPU only (a head trial gets no GPU share in the sweep), one torch thread, the data and the
    memory-mapped features loaded once; then it waits until every worker is ready."""
    global _HEAD_STATE
    try:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything asks CUDA, so pick_device says cpu
        torch.set_num_threads(1)
        saved = torch.load(features_file, mmap=True, weights_only=True)
        _HEAD_STATE = load_mnist(data_dir, download=False), {k: FeatureSet(**v) for k, v in saved.items()}
        barrier.wait(BARRIER_TIMEOUT_S)
    except BaseException:
        barrier.abort()  # the driver stops waiting at once
        raise


def _head_trial(config: dict[str, Any]) -> dict[str, Any]:
    data, feats = _HEAD_STATE
    rep = MemoryReporter()
    t0 = time.perf_counter()
    train_transfer(config, data, feats, rep)
    return {"seconds": time.perf_counter() - t0, "epochs": len(rep.rows), "test_acc": rep.rows[-1]["test_acc"],
            "device": pick_device(None).type}


def train_heads(configs: list[TransferConfig], feats: dict[str, FeatureSet], data: MnistData, workers: int
                ) -> dict[str, Any]:
    """Every config's head trial in `workers` CPU worker processes, the features handed over as one
    memory-mapped file. Returns the seconds of the hand-over, of starting the workers and of the heads, and each
    trial's result in the order of `configs`."""
    ctx = worker_context()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = Path(tmp) / "features.pt"
        torch.save({k: {"train_index": fs.train_index, "train": fs.train, "test": fs.test} for k, fs in feats.items()},
                   path)
        handoff_s = time.perf_counter() - t0
        barrier = ctx.Barrier(workers + 1)
        t0 = time.perf_counter()
        pool = ctx.Pool(workers, initializer=_head_worker_init, initargs=(str(path), data.root, barrier))
        try:
            barrier.wait(BARRIER_TIMEOUT_S)
            start_s = time.perf_counter() - t0
            say(f"  {workers} workers ready after {start_s:.1f} s; training the heads")
            t0 = time.perf_counter()
            trials = pool.map(_head_trial, [c.to_dict() for c in configs], chunksize=1)
            heads_s = time.perf_counter() - t0
        finally:
            pool.terminate()
            pool.join()
    epochs = {c.epochs for c in configs}
    if {t["device"] for t in trials} != {"cpu"} or {t["epochs"] for t in trials} != epochs:
        raise RuntimeError(f"head trials did not all train {epochs} epochs on the CPU: {trials}")
    return {"handoff_s": handoff_s, "workers_start_s": start_s, "heads_s": heads_s, "trials": trials}


def section_heads(a: argparse.Namespace, data: MnistData, device: torch.device) -> dict[str, Any]:
    configs = grid_configs(a, data)
    workers = a.head_workers or cores()
    say(f"  {len(configs)} trials x {a.head_epochs} epochs, batch {configs[0].batch_size}, "
        f"{configs[0].test_limit:,} test images; {workers} worker processes")
    t0 = time.perf_counter()
    feats = prepare_features(data, configs, device)
    features_s = time.perf_counter() - t0
    say(f"  features: {features_s:.1f} s")
    run = train_heads(configs, feats, data, workers)
    trials = run.pop("trials")
    total = features_s + run["handoff_s"] + run["heads_s"]
    say(f"  heads: {run['heads_s']:.1f} s; features + hand-over + heads = {total:.1f} s")
    accs = [t["test_acc"] for t in trials]
    return {"trials": len(configs), "epochs": a.head_epochs, "workers": workers, "features_s": features_s, **run,
            "total_s": total, "trial_cpu_s": sum(t["seconds"] for t in trials),
            "longest_trial_s": max(t["seconds"] for t in trials), "mean_test_acc": statistics.mean(accs),
            "targets": [target("grid: features + heads", total, "<=", 30.0, "s")]}


# ----------------------------------------------------------------------------------------------------- (c) stn

def stn_splits(data: MnistData, tile: int, train_limit: int | None, test_limit: int | None):
    """(train, test) tensors: the first train_limit training images tiled `tile` times, the first test_limit test
    images."""
    x, y = data.train_images[:train_limit], data.train_labels[:train_limit]
    return (x.repeat(tile, 1, 1, 1), y.repeat(tile)), (data.test_images[:test_limit], data.test_labels[:test_limit])


def tutorial_side(root: str, tile: int, train_limit: int | None, test_limit: int | None, device: torch.device,
                  epochs: int, num_workers: int, seed: int = 0) -> dict[str, Any]:
    """The tutorial's pipeline as benchmarks/stn_epoch.py's `tutorial` builds it (torchvision MNIST, per-sample
    ToTensor + Normalize, shuffled DataLoader of 64, test loader of 64, .item() per test batch), with the
    tutorial's `.to(device)` per batch and the training set tiled like ours. stn_epoch's function runs on the CPU
    over one MNIST root, so this is its loop with a device, not a call to it. Returns seconds per epoch (train
    + test pass), the DataLoaders built once before."""
    torch.manual_seed(seed)
    model = build_stn("affine").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tf = torchvision.transforms.Compose([torchvision.transforms.ToTensor(),
                                         torchvision.transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    t0 = time.perf_counter()
    train_set = torchvision.datasets.MNIST(root, train=True, transform=tf)
    test_set = torchvision.datasets.MNIST(root, train=False, transform=tf)
    train_set = ConcatDataset([Subset(train_set, range(min(train_limit or len(train_set), len(train_set))))] * tile)
    test_set = Subset(test_set, range(min(test_limit or len(test_set), len(test_set))))
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True, num_workers=num_workers)
    test_loader = DataLoader(test_set, batch_size=64, shuffle=False, num_workers=num_workers)
    build_s = time.perf_counter() - t0
    times, acc = [], 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        acc = tutorial_epoch(model, opt, train_loader, test_loader, device)
        times.append(time.perf_counter() - t0)
    # The first epoch also starts CUDA's and cuDNN's kernels for these shapes: left out when there are more.
    steady = times[1:] or times
    return {"train_images": len(train_set), "test_images": len(test_set), "build_s": build_s, "epochs_s": times,
            "epoch_s": statistics.median(steady), "test_acc": acc}


@contextmanager
def smoke_compiler(smoke: bool) -> Iterator[None]:
    """In --smoke, torch.compile uses dynamo's aot_eager backend: the same tracing and forward/backward split
    as inductor, without its C++ code generation (over a minute on a small CPU)."""
    if not smoke:
        yield
        return
    real = torch.compile
    torch.compile = lambda model, mode=None, dynamic=None: real(model, backend="aot_eager", dynamic=dynamic)
    try:
        yield
    finally:
        torch.compile = real


def fit_stn(train, test, epochs: int, device: torch.device, compile_mode: str = "off", seed: int = 0
            ) -> dict[str, Any]:
    """The STN study's trainable without its inspection arrays: the study's config (SGDConfig's defaults: SGD
    lr 0.01, batch 64), build_stn, make_sgd, fit."""
    cfg = SGDConfig.from_dict({"epochs": epochs, "seed": seed, "compile": compile_mode})
    torch.manual_seed(cfg.seed)
    model = build_stn("affine")
    optimizer, scheduler = make_sgd(model.parameters(), cfg)
    rep = MemoryReporter()
    t0 = time.perf_counter()
    fit(model, optimizer, scheduler, train=train, tests={"test": test}, epochs=cfg.epochs,
        batch_size=cfg.batch_size, seed=cfg.seed, device=device, reporter=rep, compile=cfg.compile)
    wall = time.perf_counter() - t0
    epochs_s = [r["epoch_seconds"] for r in rep.rows]
    out = {"epochs": len(rep.rows), "wall_s": wall, "epochs_s": epochs_s, "epoch_s": statistics.median(epochs_s),
           "test_acc": rep.rows[-1]["test_acc"]}
    if "compile_seconds" in rep.rows[0]:
        out["compile_s"] = rep.rows[0]["compile_seconds"]
        out["train_wall_s"] = wall - out["compile_s"]
    return out


def section_stn(a: argparse.Namespace, data: MnistData, device: torch.device) -> dict[str, Any]:
    train, test = stn_splits(data, a.stn_tile, a.stn_train_limit, a.stn_test_limit)
    say(f"  {len(train[1]):,} training images ({a.stn_tile}x tiled), {len(test[1]):,} test images, batch 64")
    say(f"  tutorial pipeline: {a.tutorial_epochs} epoch(s), DataLoader workers {a.num_workers}")
    tut = tutorial_side(data.root, a.stn_tile, a.stn_train_limit, a.stn_test_limit, device, a.tutorial_epochs,
                        a.num_workers)
    say(f"  tutorial: {tut['epoch_s']:.2f} s per epoch")
    say(f"  ours: {a.stn_epochs} epochs through trainables.loop.fit")
    ours = fit_stn(train, test, a.stn_epochs, device)
    say(f"  ours: {ours['epoch_s']:.2f} s per epoch, {ours['wall_s']:.1f} s for {a.stn_epochs} epochs")
    n = a.stn_epochs
    out = {"train_images": len(train[1]), "test_images": len(test[1]), "tutorial": tut, "ours": ours,
           "ratio": tut["epoch_s"] / ours["epoch_s"],
           "targets": [target("STN epoch: tutorial / ours", tut["epoch_s"] / ours["epoch_s"], ">=", 3.0, "x"),
                       target(f"STN {n} epochs, ours", ours["wall_s"], "<=", 30.0, "s"),
                       # speed that trains worse is no speed: the study's STN passes 95% at 20 epochs
                       target(f"STN test accuracy after {n} epochs, ours", 100 * ours["test_acc"], ">=",
                              STN_ACC_PCT, "%")]}
    say(f"  ours with compile={a.compile_mode}: compiling, then {a.stn_epochs} epochs")
    try:  # a compiler failure must not lose the uncompiled figures above
        with smoke_compiler(a.smoke):
            comp = fit_stn(train, test, a.stn_epochs, device, a.compile_mode)
    except Exception:
        out["error"] = traceback.format_exc()
        return out
    say(f"  compiled: {comp['compile_s']:.1f} s compiling, {comp['epoch_s']:.2f} s per epoch, "
        f"{comp['train_wall_s']:.1f} s for {a.stn_epochs} epochs")
    out["compiled"] = {**comp, "mode": a.compile_mode, "backend": "aot_eager" if a.smoke else "inductor"}
    out["compiled_ratio"] = tut["epoch_s"] / comp["epoch_s"]
    out["targets"] += [target("STN epoch: tutorial / ours, compiled", out["compiled_ratio"], ">=", 3.0, "x"),
                       target(f"STN {n} epochs, compiled (compile apart)", comp["train_wall_s"], "<=", 30.0, "s"),
                       target(f"STN test accuracy after {n} epochs, compiled", 100 * comp["test_acc"], ">=",
                              STN_ACC_PCT, "%")]
    if device.type == "cuda":  # a diagnostic, no target: what `fit` would do if it recorded uncompiled steps
        say(f"  diagnostic: uncompiled steps recorded as CUDA graphs (off in fit), {a.stn_epochs} epochs")
        try:
            with recorded_eager_steps():
                diag = fit_stn(train, test, a.stn_epochs, device)
            say(f"  recorded eager steps: {diag['epoch_s']:.2f} s per epoch, test accuracy {diag['test_acc']:.1%}")
            out["recorded_eager"] = diag
        except Exception:
            out["recorded_eager_error"] = traceback.format_exc()
        try:
            out["recorded_eager_bisect"] = bisect = {
                "without_dropout": recorded_vs_eager_steps(train, device, dropout=False),
                "with_dropout": recorded_vs_eager_steps(train, device, dropout=True)}
            say("  recorded against eager steps, same start and order: "
                + "; ".join(f"{k.replace('_', ' ')}: parameters {v['param_rel_diff']:.2e} apart, mean loss "
                            f"{v['eager_loss']:.4f} eager, {v['recorded_loss']:.4f} recorded"
                            for k, v in bisect.items()))
        except Exception:
            out["recorded_eager_bisect_error"] = traceback.format_exc()
        try:
            out["graphed_module"] = gm = graphed_module_stn(train, test, a.stn_epochs, device)
            gm["ratio"] = tut["epoch_s"] / gm["epoch_s"]
            say(f"  forward + backward recorded by torch.cuda.make_graphed_callables (rest eager): "
                f"{gm['epoch_s']:.2f} s per epoch ({gm['ratio']:.2f}x the tutorial), test accuracy "
                f"{gm['test_acc']:.1%} after {len(gm['epochs_s'])} epochs")
        except Exception:
            out["graphed_module_error"] = traceback.format_exc()
    return out


def graphed_module_stn(train, test, epochs: int, device: torch.device) -> dict[str, Any]:
    """The other way to a step that is not launch-bound without compiling (fit does not take it; a diagnostic):
    the STN's forward and backward recorded by PyTorch's own `torch.cuda.make_graphed_callables`, the batch
    gather, loss, metric sums and SGD step eager. The recording takes one shape, so it trains on the full batches
    of 64 only (the last 32 images are left out). Seconds per epoch (training + test pass, as `fit` times them),
    the test accuracy after `epochs`, and the recording's seconds."""
    n = len(train[1]) // 64 * 64
    x, y = (t[:n].to(device) for t in train)
    tx, ty = (t.to(device) for t in test)
    torch.manual_seed(0)
    model = loop.prepare_model(build_stn("affine"), device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    epochs_s = []
    with loop._cudnn_benchmark(device):
        t0 = time.perf_counter()
        model.train()  # recorded in training mode (dropout on); in eval mode the module runs its eager forward
        graphed = torch.cuda.make_graphed_callables(model, (x[:64].clone(),))
        sync(device)
        record_s = time.perf_counter() - t0
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            loop.train_one_epoch(graphed, x, y, optimizer, batch_size=64, device=device,
                                 generator=loop.epoch_generator(0, epoch, device))
            test_acc = loop.evaluate(graphed, tx, ty, device=device)["acc"]  # both end in a host sync
            epochs_s.append(time.perf_counter() - t0)
    return {"train_images": n, "record_s": record_s, "epochs_s": epochs_s, "epoch_s": statistics.median(epochs_s),
            "test_acc": test_acc}


def recorded_vs_eager_steps(train, device: torch.device, *, dropout: bool, steps: int = 150) -> dict[str, Any]:
    """Where recorded uncompiled steps part from eager ones: the affine STN from the same weights, `steps` SGD
    steps (batch 64) in the same order, once eagerly and once recorded (`loop.CudaGraphSteps`). Without dropout
    the two are the same computation, equal up to cuDNN's reordered sums, so a large gap there points at the
    convolutions, pooling, grid sampling or the optimizer, and none at the random masks. Returns how far the
    parameters ended apart (largest relative norm of a difference) and each run's mean training loss."""
    x, y = (t[:steps * 64].to(device) for t in train)
    real = torch.nn.functional.dropout, torch.nn.functional.dropout2d
    if not dropout:
        torch.nn.functional.dropout = torch.nn.functional.dropout2d = lambda t, *args, **kwargs: t
    runs = []
    try:
        for recorded in (False, True):
            torch.manual_seed(0)
            torch.cuda.manual_seed(0)
            model = loop.prepare_model(build_stn("affine"), device)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            stepper = loop.CudaGraphSteps(model, optimizer, x, y) if recorded else None
            with loop._cudnn_benchmark(device):
                metrics = loop.train_one_epoch(model, x, y, optimizer, batch_size=64, device=device,
                                               generator=loop.epoch_generator(0, 1, device), steps=stepper)
            runs.append((metrics["loss"], [p.detach().float().cpu() for p in model.parameters()]))
    finally:
        torch.nn.functional.dropout, torch.nn.functional.dropout2d = real
    (eager_loss, eager), (rec_loss, rec) = runs
    diff = max(float((a - b).norm() / a.norm().clamp_min(1e-12)) for a, b in zip(eager, rec))
    return {"steps": len(y) // 64, "param_rel_diff": diff, "eager_loss": eager_loss, "recorded_loss": rec_loss}


@contextmanager
def recorded_eager_steps() -> Iterator[None]:
    """`fit` records uncompiled steps too (`trainables.loop.use_cuda_graphs` says yes on CUDA whatever `compile`
    is): recorded that way the STN trained to 56.5% on an H200, so fit leaves them out; this measures it again."""
    real = loop.use_cuda_graphs
    loop.use_cuda_graphs = lambda device, optimizer, compile: real(device, optimizer, "default")
    try:
        yield
    finally:
        loop.use_cuda_graphs = real


# ---------------------------------------------------------------------------------------------- (d) concurrent

def _stn_process(rank: int, a: dict[str, Any], threads: int, barrier: Any, results: Any) -> None:
    """One STN training in its own process, as a fractional-GPU trial runs: set up and warm up (CUDA context,
    cuDNN's kernels), wait for the others, then `fit` for the timed epochs."""
    try:
        if a["smoke"]:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        torch.set_num_threads(threads)
        device = pick_device(None)
        data = load_mnist(a["data_dir"], download=False)
        train, test = stn_splits(data, a["stn_tile"], a["stn_train_limit"], a["stn_test_limit"])
        fit_stn((train[0][:640], train[1][:640]), (test[0][:500], test[1][:500]), 1, device)
        sync(device)
        barrier.wait(BARRIER_TIMEOUT_S)
        start = time.time()  # wall clock: the processes' spans are compared with each other and the driver's
        run = fit_stn(train, test, a["proc_epochs"], device, seed=rank)
        end = time.time()
        results.put({"rank": rank, "start": start, "end": end, "epoch_s": run["epoch_s"],
                     "images": run["epochs"] * (len(train[1]) + len(test[1])), "device": device.type})
    except BaseException:
        barrier.abort()
        results.put({"rank": rank, "error": traceback.format_exc()})


def run_processes(n: int, a: argparse.Namespace, threads: int) -> dict[str, Any]:
    ctx = worker_context()
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_stn_process, args=(r, vars(a), threads, barrier, results)) for r in range(n)]
    launched = time.time()
    for p in procs:
        p.start()
    try:
        runs = [results.get(timeout=BARRIER_TIMEOUT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} STN processes failed; the first:\n{errors[0]}")
    span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    images = sum(r["images"] for r in runs)
    return {"processes": n, "threads_each": threads, "ready_s": min(r["start"] for r in runs) - launched,
            "span_s": span, "images": images, "img_s": images / span,
            "epoch_s": statistics.median(r["epoch_s"] for r in runs), "device": runs[0]["device"]}


def section_concurrent(a: argparse.Namespace, data: MnistData, device: torch.device) -> dict[str, Any]:
    threads = max(1, cores() // a.procs)  # each process gets its share of the cores, alone or not
    say(f"  one STN training alone ({a.proc_epochs} epoch(s), {threads} thread(s))")
    one = run_processes(1, a, threads)
    say(f"  alone: ready after {one['ready_s']:.1f} s, {one['img_s']:,.0f} img/s; now {a.procs} at once")
    many = run_processes(a.procs, a, threads)
    ratio = many["img_s"] / one["img_s"]
    say(f"  {a.procs} at once: ready after {many['ready_s']:.1f} s, {many['img_s']:,.0f} img/s = {ratio:.2f}x one "
        f"alone")
    return {"alone": one, "shared": many, "ratio": ratio,
            "targets": [target(f"{a.procs} STN trainings on one device / one alone", ratio, ">=", 2.5, "x")]}


# --------------------------------------------------------------------------------------------------- (e) dtype

def section_dtype(a: argparse.Namespace, data: MnistData, device: torch.device) -> dict[str, Any]:
    """The paper grid's heads trained on fp32 features and on bf16 features of the same images (the same seeds,
    so a pair differs only in the backbone's compute dtype): the features' relative difference and the heads'
    final test accuracy, per backbone and paired per trial. On the CPU the bf16 pass is CPU autocast."""
    base = [c for c in grid_configs(a, data) if c.model in a.dtype_models]
    configs = {d: [replace(c, feature_dtype=d) for c in base] for d in ("fp32", "bf16")}
    workers = a.head_workers or cores()
    say(f"  {len(base)} trials x {a.head_epochs} epochs on fp32 features, the same on bf16 features; "
        f"{workers} worker processes")
    feats = prepare_features(data, configs["fp32"] + configs["bf16"], device)
    out: dict[str, Any] = {"trials": len(base), "epochs": a.head_epochs, "backbones": {}, "pairs": []}
    for model in a.dtype_models:
        f32, b16 = (feats[next(c for c in configs[d] if c.model == model).cache_key(device)] for d in configs)
        rel = lambda x, y: float((x - y).norm() / y.norm())  # noqa: E731
        out["backbones"][model] = {"feature_rel_diff_train": rel(b16.train, f32.train),
                                   "feature_rel_diff_test": rel(b16.test, f32.test)}
    trials = train_heads(configs["fp32"] + configs["bf16"], feats, data, workers)["trials"]  # one pool for both
    acc32, acc16 = [t["test_acc"] for t in trials[:len(base)]], [t["test_acc"] for t in trials[len(base):]]
    for c, x32, x16 in zip(base, acc32, acc16):
        out["pairs"].append({"model": c.model, "train_per_class": c.train_per_class, "seed": c.seed,
                             "fp32_test_acc": x32, "bf16_test_acc": x16})
    for model, row in out["backbones"].items():
        pairs = [p for p in out["pairs"] if p["model"] == model]
        row["fp32_mean_test_acc"] = statistics.mean(p["fp32_test_acc"] for p in pairs)
        row["bf16_mean_test_acc"] = statistics.mean(p["bf16_test_acc"] for p in pairs)
        diffs = [p["bf16_test_acc"] - p["fp32_test_acc"] for p in pairs]
        row["mean_diff_acc"], row["largest_abs_diff_acc"] = statistics.mean(diffs), max(map(abs, diffs))
        say(f"  {model}: features differ by {row['feature_rel_diff_test']:.2%} (relative norm); mean test accuracy "
            f"fp32 {row['fp32_mean_test_acc']:.2%}, bf16 {row['bf16_mean_test_acc']:.2%}, pairs differ by "
            f"{row['mean_diff_acc']:+.2%} on average, {row['largest_abs_diff_acc']:.2%} at most")
    ratio = statistics.mean(acc16) / max(statistics.mean(acc32), 1e-9)
    out["targets"] = [target("heads' mean test acc: bf16 / fp32 features", ratio, ">=", 0.995, "x")]
    return out


# ------------------------------------------------------------------------------------------------------- main

def resolve_weights(choice: str, models: list[str]) -> str:
    if choice != "auto":
        return choice
    return "imagenet" if all(weights_file(m).is_file() for m in models) else "none"


def mps_running() -> bool:
    """Whether NVIDIA's MPS daemon runs on this machine (then processes sharing the GPU run their kernels side by
    side): found by process name, as cluster.yaml checks before starting one; False where pgrep is missing."""
    if shutil.which("pgrep") is None:
        return False
    return subprocess.run(["pgrep", "-x", "nvidia-cuda-mps"], capture_output=True).returncode == 0


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {cores()} cores)"


def table(targets: list[dict[str, Any]]) -> str:
    rows = [("", "figure", "measured", "target", "met")]
    for t in targets:
        fmt = ".2f" if t["unit"] == "x" else ".1f"
        rows.append((t["section"], t["name"], f"{t['measured']:{fmt}} {t['unit']}", f"{t['op']} {t['target']:g} "
                     f"{t['unit']}", "yes" if t["met"] else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}"
                     for r in rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                   help=f"torchvision MNIST root (default: {DEFAULT_DATA})")
    p.add_argument("--json", type=Path, help="also write the figures here (rewritten after every section)")
    p.add_argument("--smoke", action="store_true", help="every section on the CPU at tiny sizes, in under a minute")
    p.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    g = p.add_argument_group("sizes (default: the GPU run's; --smoke: tiny ones)")
    g.add_argument("--models", nargs="+")
    g.add_argument("--image-size", type=int)
    g.add_argument("--weights", help="auto (imagenet when cached, else none), imagenet, none or a state_dict PATH")
    g.add_argument("--sizes", type=int, nargs="+", help="training images per digit in the grid")
    g.add_argument("--seeds", type=int, nargs="+")
    g.add_argument("--head-epochs", type=int)
    g.add_argument("--test-limit", type=int, help="test images per head epoch")
    g.add_argument("--head-workers", type=int, help="head worker processes (default: one per core)")
    g.add_argument("--stn-tile", type=int, help="times the STN's training images are repeated")
    g.add_argument("--stn-train-limit", type=int, help="STN training images before tiling (default: all)")
    g.add_argument("--stn-test-limit", type=int, help="STN test images (default: all)")
    g.add_argument("--stn-epochs", type=int)
    g.add_argument("--tutorial-epochs", type=int)
    g.add_argument("--num-workers", type=int, help="the tutorial's DataLoader workers")
    g.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune"])
    g.add_argument("--procs", type=int, help="STN trainings sharing the device in (d)")
    g.add_argument("--proc-epochs", type=int, help="timed epochs of each STN training in (d)")
    g.add_argument("--val-per-class", type=int,
                   help="the grid's validation images per digit (default: the sweep's, a tenth of the smallest digit)")
    g.add_argument("--dtype-models", nargs="+", help="backbones whose heads (e) trains on fp32 and bf16 features")
    a = p.parse_args(argv)
    for key, value in PRESETS["smoke" if a.smoke else "full"].items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    a.data_dir = str(a.data_dir.expanduser().resolve())
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.smoke:  # hidden before anything asks CUDA; the worker processes inherit it
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        torch.set_num_threads(1)  # beside 2 worker processes, more threads only fight over a small CPU
    t_start = time.perf_counter()
    device = pick_device(None)
    a.weights = resolve_weights(a.weights, a.models)
    try:
        data = load_mnist(a.data_dir, download=False)
        for model in a.models:  # one line saying what to do, before any section starts
            ensure_weights(model, a.weights)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {
        "smoke": a.smoke, "device": describe_device(device), "device_type": device.type, "torch": torch.__version__,
        "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None, "cpus": cores(),
        "mps": mps_running(),
        "python": platform.python_version(), "weights": a.weights, "data": data.describe(),
        "args": {k: v for k, v in vars(a).items() if k not in ("json",)}, "sections": {}, "errors": {},
    }
    say(f"device {out['device']}, torch {torch.__version__}, {cores()} cores"
        + ("; MPS daemon up" if out["mps"] and device.type == "cuda" else "")
        + f"; weights {a.weights}; {data.describe()}"
        + ("; smoke run (CPU, tiny sizes)" if a.smoke else ""))

    def write() -> None:
        out["targets"] = [{"section": SECTIONS[s], **t} for s, r in out["sections"].items() for t in r["targets"]]
        out["wall_s"] = time.perf_counter() - t_start
        if a.json:
            tmp = a.json.with_name(a.json.name + ".tmp")
            tmp.write_text(json.dumps(out, indent=2))
            tmp.replace(a.json)

    run = {"features": section_features, "heads": section_heads, "stn": section_stn, "concurrent": section_concurrent,
           "dtype": section_dtype}
    for name in a.sections:
        say(f"{SECTIONS[name]} {name} ({time.perf_counter() - t_start:.0f} s into the run)")
        t0 = time.perf_counter()
        try:
            result = run[name](a, data, device)
        except Exception:
            result = {"error": traceback.format_exc()}
        if "error" in result:  # a section may fail after measuring part of it: what it measured is kept
            out["errors"][name] = result.pop("error")
            say(f"{SECTIONS[name]} {name} FAILED:\n{out['errors'][name]}")
        if result:
            out["sections"][name] = {**result, "section_s": time.perf_counter() - t0}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write()

    say(f"\n{out['device']}, torch {torch.__version__}, {out['wall_s']:.0f} s"
        + (" (smoke: the code runs; targets apply to a GPU run)" if a.smoke else ""))
    say(table(out["targets"]))
    for name in out["errors"]:
        say(f"{SECTIONS[name]} {name}: failed, see above")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
