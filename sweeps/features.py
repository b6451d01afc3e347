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
    extra = cached_features(data, configs, {"cpu": 1, "gpu": 0})   # {"features": {feature_key: ObjectRef}}
"""
from __future__ import annotations

import time
from typing import Any, Iterable

import ray

from trainables.loop import pick_device, pin_threads
from trainables.transfer import FeatureSet, TransferConfig, feature_jobs, feature_requests, features_for


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


def _task(key: str, data, train_index, n_test: int, cpus: float, gpus: float) -> FeatureSet:
    pin_threads(cpus)
    return features_for(key, data, train_index, n_test, device=pick_device(gpus))


def cached_features(data, configs, resources: dict[str, float], args=None) -> dict[str, Any]:
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
    t0 = time.perf_counter()
    refs = {key: task.remote(key, data_ref, idx, n, resources["cpu"], gpus) for key, (idx, n) in jobs.items()}
    print(f"features: {len(jobs)} task(s), each {resources['cpu']:g} CPU + {gpus:g} GPU", flush=True)
    for key, (idx, n) in jobs.items():
        print(f"features: {key.replace('|', ', ')}: {len(idx)} training + {n} test images, each through the "
              f"backbone once", flush=True)
    # Wait for every task before any trial starts (trials would hold the CPUs the tasks need) and surface a
    # failed one here, once; the trials get the object refs and each fetches only its own backbone's features.
    for key, ref in refs.items():
        dim = ray.get(ref).train.shape[1]
        print(f"features: {key.replace('|', ', ')} ready after {time.perf_counter() - t0:.1f} s ({dim} per image)",
              flush=True)
    return {"features": {request: refs[key] for request, key in feature_requests(configs, device).items()}}
