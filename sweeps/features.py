"""Driver side of the frozen-backbone feature cache: one Ray task per (backbone, weights, image size, feature
dtype), and the GPU share of the transfer studies' trials.

Each task runs the sweep's unique images (the union of every trial's training subset, plus the test images)
through its backbone once and returns the features. The GPU goes where it pays: a feature task takes a whole GPU
whenever the cluster has one (`feature_gpus`), while cached-mode trials, which only train a linear head, run on
CPU (`trial_gpu_share`, the studies' `gpu_share` under `--gpus-per-trial auto`), so a GPU node trains as many heads
at once as it has CPUs. An explicit `--gpus-per-trial G` still sets the trials' share only.

The driver then hands the features to every trial through `tune.with_parameters`, i.e. Ray's object store as one
object per cache key: a trial fetches only its own backbone's features, and each node fetches them once, whatever
the number of trials and epochs. We chose the object store over a node-local disk cache because it needs no
shared filesystem, no lock and no cleanup, and the features are small (2,048 floats per image for ResNet50,
4,096 for VGG19: ~0.2 GB for 12,700 images).

    Study(prepare=cached_features, gpu_share=trial_gpu_share, ...)   # the runner calls it once, after Ray starts:
    extra = cached_features(data, configs, {"cpu": 1, "gpu": 0}, args)   # {"features": {feature_key: ObjectRef}}

While the tasks run, the driver shows a progress bar per backbone (sweeps/console.py): each task is a Ray
generator that yields how far it is every second before it yields its features. Every finished pass is appended
to RUN_DIR/features.json (images, seconds, GPU share), which the report counts as compute.
"""
from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any, Iterable

import ray

from analysis.compute import FEATURES_FILE
from analysis.files import atomic_write
from sweeps.console import STATUS_EVERY_S, FeatureProgress, label
from trainables.loop import pick_device, pin_threads
from trainables.transfer import (FeatureSet, TransferConfig, feature_jobs, feature_requests, iter_features,
                                 split_feature_key)


def trial_gpu_share(configs: Iterable[TransferConfig]) -> float:
    """GPUs per transfer trial under `--gpus-per-trial auto` on a cluster with GPUs: none when every trial is
    cached (a linear head on a few hundred images is launch-bound: one CPU thread trains it faster than a GPU), a
    whole one when any runs the backbone every batch (tutorial mode)."""
    return 0.0 if all(cfg.backbone_mode == "cached" for cfg in configs) else 1.0


def feature_gpus(trial_gpus: float) -> float:
    """GPUs for one feature task: a whole one when the cluster has a GPU, or when the trials were given a share
    (an autoscaling cluster adds GPU nodes only when asked); else none. Not the trials' share: cached trials get
    none, and the backbone pass is the part a GPU speeds up."""
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 or trial_gpus > 0 else 0.0


PROGRESS_EVERY_S = 1.0  # how often a feature task tells the driver how far it is


def _task(key: str, data, train_index, n_test: int, cpus: float, gpus: float):
    """A Ray generator task: yields (images done, images in all, seconds so far) at most every second, then once
    (all, all, seconds, features per image), then the FeatureSet, which stays in the object store for the trials
    (the driver never fetches it: it knows the item after the last count is the features)."""
    t0 = time.perf_counter()
    pin_threads(cpus)
    last = t0
    for item in iter_features(key, data, train_index, n_test, device=pick_device(gpus)):
        if isinstance(item, FeatureSet):
            total = len(train_index) + n_test
            yield (total, total, time.perf_counter() - t0, item.train.shape[1])
            yield item
            return
        done, total = item
        if done < total and time.perf_counter() - last >= PROGRESS_EVERY_S:
            last = time.perf_counter()
            yield (done, total, last - t0)


def cached_features(data, configs, resources: dict[str, float], args=None) -> dict[str, Any]:
    """Run the feature tasks (a progress bar per backbone while they run), record each pass's seconds in
    RUN_DIR/features.json (the report's compute counts them), and return the trials' extra arguments."""
    configs = list(configs)
    gpus = feature_gpus(resources["gpu"])
    # The cache key holds the dtype resolved for the device the task will run on (bf16 on CUDA under auto), so
    # it is decided here, from the resources the task asks for.
    device = "cuda" if gpus > 0 else "cpu"
    jobs = feature_jobs(data, configs, device)
    if not jobs:  # tutorial mode only: nothing to cache
        return {}
    task = ray.remote(_task).options(num_cpus=resources["cpu"], num_gpus=gpus)
    data_ref = ray.put(data)
    gens = {key: task.remote(key, data_ref, idx, n, resources["cpu"], gpus) for key, (idx, n) in jobs.items()}
    print(f"features: {len(jobs)} backbone pass(es), each {resources['cpu']:g} CPU + {gpus:g} GPU; "
          + "; ".join(f"{label(key)}: {len(idx):,} training + {n:,} test images" for key, (idx, n) in jobs.items()),
          flush=True)
    # Wait for every task before any trial starts (trials would hold the CPUs the tasks need) and surface a
    # failed one here, once; the trials get the object refs and each fetches only its own backbone's features.
    run_dir = Path(args.out).expanduser().resolve() if getattr(args, "out", None) else None
    refs: dict[str, Any] = {}
    last: dict[str, tuple] = {}  # each task's latest count
    with FeatureProgress({key: len(idx) + n for key, (idx, n) in jobs.items()}) as bars:
        pending = dict(gens)
        while pending:
            ready, _ = ray.wait(list(pending.values()), num_returns=1, timeout=STATUS_EVERY_S)
            for gen in ready:
                key = next(k for k, g in pending.items() if g is gen)
                try:
                    ref = next(gen)
                except StopIteration:
                    del pending[key]
                    continue
                if len(last.get(key, ())) == 4:  # after the final count: the features, left in the object store
                    refs[key] = ref
                    continue
                last[key] = item = ray.get(ref)
                bars.update(key, item[0], item[2])
                if len(item) == 4:
                    _, total, seconds, dim = item
                    bars.line(f"features: {label(key)} ready: {total:,} images in {seconds:.1f} s "
                              f"({total / max(seconds, 1e-9):.0f} images/s, {dim} per image)")
                    if run_dir is not None:
                        record_pass(run_dir, key, total, seconds, gpus)
            bars.tick()
    return {"features": {request: refs[key] for request, key in feature_requests(configs, device).items()}}


def record_pass(run_dir: Path, key: str, images: int, seconds: float, gpus: float) -> None:
    """Append one finished feature pass to RUN_DIR/features.json (a resumed run that computes the features again
    appends again: that compute was spent too)."""
    path = Path(run_dir) / FEATURES_FILE
    try:
        passes = json.loads(path.read_text())["passes"]
    except (OSError, ValueError, KeyError, TypeError):
        passes = []
    model, weights, size, dtype = split_feature_key(key)
    passes.append({"key": key, "model": model, "weights": weights, "image_size": size, "feature_dtype": dtype,
                   "images": int(images), "seconds": round(seconds, 3), "gpus": gpus,
                   "gpu_seconds": round(seconds * gpus, 3),
                   "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    atomic_write(path, json.dumps({"passes": passes}, indent=1) + "\n")
