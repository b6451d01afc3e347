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

    parts() -> {"prepare": cached_features, "gpu_share": trial_gpu_share, ...}   # sweeps/transfer_grid.py
    # the runner calls it once, after Ray starts:
    extra = cached_features(data, configs, {"cpu": 1, "gpu": 0}, args)   # {"features": {feature_key: ObjectRef}}

While the tasks run, the driver shows a progress bar per backbone (sweeps/console.py): each task is a Ray
generator that yields how far it is every second, and the features computed so far every 30 s, before it yields
all its features. The driver keeps those chunks in RUN_DIR/features/ (`FeatureStore`), so an interrupted pass
resumes where it stopped and a resumed sweep whose passes had finished does not run them again; the folder is
removed once the sweep has finished. Every task's work, finished or not, is recorded in RUN_DIR/features.json
(images, seconds, GPU share), which the report counts as compute; a running task's entry is brought up to date
at each chunk, so a driver killed mid-pass leaves the seconds behind the chunks it kept.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import ray
import torch

from analysis.compute import FEATURES_FILE
from analysis.files import atomic_path, atomic_write
from sweeps.console import STATUS_EVERY_S, FeatureProgress, label
from sweeps.node_watch import NoNodeLeft, NoNodeWatch
from trainables.backbones import cpu_has_native_bf16
from trainables.configs import FEATURE_CACHE_DIR
from trainables.loop import pick_device, pin_threads
from trainables.transfer import (TransferConfig, feature_images, feature_jobs, feature_requests, feature_set,
                                 iter_features, split_feature_key)


def bf16_hint(configs: Iterable[TransferConfig], device: str, local: bool) -> str | None:
    """A note for a local CPU feature pass that runs fp32 only by default (`feature_dtype` auto) on a CPU that
    computes bf16 natively, at the sizes where the pass is long (from 64 px): the option that about halves it."""
    if device != "cpu" or not local or not cpu_has_native_bf16():
        return None
    if not any(c.backbone_mode == "cached" and c.feature_dtype == "auto" and c.image_size >= 64 for c in configs):
        return None
    return ("note: this CPU computes bf16 natively: --feature-dtype bf16 about halves the feature pass (features "
            "within about 1% of fp32; python benchmarks/cpu_features.py measures both here)")


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
# How often a task hands the driver the features computed since the last time, which the driver keeps in
# RUN_DIR/features/: what an interrupt (or a lost node) can cost of a pass. SWEEPS_FEATURE_CHUNK_S overrides it.
CHUNK_EVERY_S = 30.0


@dataclass(frozen=True)
class Progress:
    done: int  # images of the pass done, those read back from RUN_DIR/features included
    total: int
    seconds: float  # this task's time so far


@dataclass(frozen=True)
class Chunk:
    start: int  # the pass's images [start, start + len(features)) in `feature_images` order
    features: np.ndarray  # float32, one row per image
    seconds: float  # this task's time so far


@dataclass(frozen=True)
class Finished:
    total: int
    seconds: float
    dim: int  # features per image


def chunk_every_s() -> float:
    return float(os.environ.get("SWEEPS_FEATURE_CHUNK_S", CHUNK_EVERY_S))


def _task(key: str, data, train_index, n_test: int, cpus: float, gpus: float, start: int = 0, before=None,
          chunk_s: float = CHUNK_EVERY_S):
    """A Ray generator task over the pass's images from `start` on (`before`: the features of those before it,
    read back from RUN_DIR/features): yields a Progress at most every second, a Chunk of new features at most
    every `chunk_s` and at the end, then Finished, then the whole FeatureSet, which stays in the object store for
    the trials (the driver never fetches it: it knows the item after Finished is the features)."""
    t0 = last = last_chunk = time.perf_counter()
    pin_threads(cpus)
    total = len(train_index) + n_test
    parts = [before] if before is not None and len(before) else []
    pending: list[torch.Tensor] = []
    done = chunk_start = start
    for batch in iter_features(key, data, train_index, n_test, device=pick_device(gpus), start=start):
        pending.append(batch)
        done += len(batch)
        now = time.perf_counter()
        if done == total or now - last_chunk >= chunk_s:
            new = torch.cat(pending)
            parts.append(new)
            yield Chunk(chunk_start, new.numpy(), now - t0)
            pending, chunk_start, last_chunk = [], done, now
        elif now - last >= PROGRESS_EVERY_S:  # a chunk tells the driver how far the task is too
            last = now
            yield Progress(done, total, now - t0)
    features = torch.cat(parts) if parts else torch.empty(0)
    yield Finished(total, time.perf_counter() - t0, features.shape[1] if features.ndim == 2 else 0)
    yield feature_set(key, train_index, features)


class FeatureStore:
    """One pass's features on the driver's disk, RUN_DIR/features/<digest>/, as .npy chunks named by their first
    image: a pass interrupted (Ctrl-C, a lost node, the driver killed) resumes after its last whole chunk, and a
    resumed sweep whose passes had finished reads them instead of running the backbone again. The digest covers
    the cache key, the weights file (a PATH: its size and time), and the pass's images themselves, so features of
    other images, other weights or another dtype are never read. Chunks are written atomically; one that does not
    read back ends what is used (the pass recomputes from there)."""

    def __init__(self, run_dir: Path, key: str, data, train_index, n_test: int):
        digest = hashlib.sha256(key.encode())
        weights = split_feature_key(key)[1]
        if weights not in ("none", "imagenet") and Path(weights).is_file():
            stat = Path(weights).stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        digest.update(np.ascontiguousarray(feature_images(data, train_index, n_test).numpy()).tobytes())
        self.key, self.total = key, len(train_index) + n_test
        self.dir = Path(run_dir) / FEATURE_CACHE_DIR / digest.hexdigest()[:16]

    def load(self) -> np.ndarray | None:
        """The features of the pass's first images, as far as whole chunks reach from image 0 (None: none)."""
        parts, done = [], 0
        while done < self.total:
            try:
                part = np.load(self.dir / f"{done:08d}.npy", allow_pickle=False)
            except (OSError, ValueError, EOFError):
                break
            if part.ndim != 2 or part.dtype != np.float32 or not 0 < len(part) <= self.total - done \
                    or (parts and part.shape[1] != parts[0].shape[1]):
                break
            parts.append(part)
            done += len(part)
        return np.concatenate(parts) if parts else None

    def save(self, chunk: Chunk) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / f"{chunk.start:08d}.npy") as tmp:
            np.save(tmp, chunk.features, allow_pickle=False)


def cached_features(data, configs, resources: dict[str, float], args=None) -> dict[str, Any]:
    """Run the feature tasks (a progress bar per backbone while they run) and return the trials' extra arguments.
    With a RUN_DIR (`args.out`), each pass's features are kept in RUN_DIR/features/ as they come (`FeatureStore`):
    a pass starts where an earlier run of the sweep left it, or is read back whole, and each task's seconds are
    recorded in RUN_DIR/features.json (the report's compute counts them), an interrupted task's too."""
    configs = list(configs)
    gpus = feature_gpus(resources["gpu"])
    # The cache key holds the dtype resolved for the device the task will run on (bf16 on CUDA under auto), so
    # it is decided here, from the resources the task asks for.
    device = "cuda" if gpus > 0 else "cpu"
    jobs = feature_jobs(data, configs, device)
    if not jobs:  # tutorial mode only: nothing to cache
        return {}
    run_dir = Path(args.out).expanduser().resolve() if getattr(args, "out", None) else None
    stores = {key: FeatureStore(run_dir, key, data, idx, n) for key, (idx, n) in jobs.items()} if run_dir else {}
    kept = {key: store.load() for key, store in stores.items()}
    starts = {key: len(kept[key]) if kept.get(key) is not None else 0 for key in jobs}
    print(f"features: {len(jobs)} backbone pass(es), each {resources['cpu']:g} CPU + {gpus:g} GPU; "
          + "; ".join(f"{label(key)}: {len(idx):,} training + {n:,} test images" for key, (idx, n) in jobs.items()),
          flush=True)
    if any(starts[key] < len(idx) + n for key, (idx, n) in jobs.items()) and \
            (hint := bf16_hint(configs, device, local=not getattr(args, "address", None))):
        print(hint, flush=True)
    refs: dict[str, Any] = {}
    for key, (idx, n) in jobs.items():
        if starts[key] == len(idx) + n:  # finished by an earlier run of this sweep
            refs[key] = ray.put(feature_set(key, idx, torch.from_numpy(kept[key])))
            print(f"features: {label(key)}: all {starts[key]:,} images read back from {stores[key].dir}")
        elif starts[key]:
            print(f"features: {label(key)}: resuming at image {starts[key]:,} of {len(idx) + n:,} (the ones "
                  f"before are in {stores[key].dir})")
    task = ray.remote(_task).options(num_cpus=resources["cpu"], num_gpus=gpus)
    data_ref = ray.put(data)
    chunk_s = chunk_every_s()
    gens = {key: task.remote(key, data_ref, idx, n, resources["cpu"], gpus, starts[key],
                             torch.from_numpy(kept[key]) if starts[key] else None, chunk_s)
            for key, (idx, n) in jobs.items() if key not in refs}
    # Wait for every task before any trial starts (trials would hold the CPUs the tasks need) and surface a
    # failed one here, once; the trials get the object refs and each fetches only its own backbone's features.
    last: dict[str, Progress] = {}  # each unfinished task's latest count
    # on a cluster, a task that no node can hold any more (its node lost) ends the sweep instead of waiting for ever
    watch = NoNodeWatch({"cpu": resources["cpu"], "gpu": gpus}, what="feature task", kept="chunk") \
        if getattr(args, "address", None) else None
    # each task's one entry in features.json, replaced as it goes (at each chunk, then at its end)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
    tasks = {key: f"{key}@{started}" for key in gens}
    kept_to = {key: starts[key] for key in gens}  # each pass's images whose features are on disk
    finished: set[str] = set()
    try:
        with FeatureProgress({key: len(idx) + n for key, (idx, n) in jobs.items() if key in gens},
                             initial={key: starts[key] for key in gens}) as bars:
            pending = dict(gens)
            if watch is not None:
                watch.say = bars.line
            wait_s = STATUS_EVERY_S if watch is None else min(STATUS_EVERY_S, watch.every)
            while pending:
                ready, _ = ray.wait(list(pending.values()), num_returns=1, timeout=wait_s)
                if watch is not None and watch.poll(waiting=True):
                    raise NoNodeLeft(watch.reason)
                for gen in ready:
                    key = next(k for k, g in pending.items() if g is gen)
                    try:
                        ref = next(gen)
                    except StopIteration:
                        del pending[key]
                        continue
                    if key in finished:  # after Finished: the features, left in the object store
                        refs[key] = ref
                        continue
                    item = ray.get(ref)
                    if isinstance(item, Chunk):
                        done = item.start + len(item.features)
                        if key in stores:
                            stores[key].save(item)
                            kept_to[key] = done
                            # what a kill of this driver would otherwise lose: the seconds behind the chunks
                            record_pass(run_dir, key, done - starts[key], item.seconds, gpus,
                                        resumed_at=starts[key], finished=False, task=tasks[key])
                        item = Progress(done, len(jobs[key][0]) + jobs[key][1], item.seconds)
                    if isinstance(item, Progress):
                        last[key] = item
                        bars.update(key, item.done, item.seconds)
                    elif isinstance(item, Finished):
                        finished.add(key)
                        new = item.total - starts[key]
                        bars.update(key, item.total, item.seconds)
                        bars.line(f"features: {label(key)} ready: {new:,} images in {item.seconds:.1f} s "
                                  f"({new / max(item.seconds, 1e-9):.0f} images/s, {item.dim} per image)"
                                  + (f", after {starts[key]:,} read back" if starts[key] else ""))
                        if run_dir is not None:
                            record_pass(run_dir, key, new, item.seconds, gpus, resumed_at=starts[key],
                                        task=tasks[key])
                bars.tick()
    except BaseException:  # interrupted or failed: say what --resume will not compute again
        for key in gens:
            if key not in finished and kept_to.get(key, 0) > 0:
                total = len(jobs[key][0]) + jobs[key][1]
                print(f"features: {label(key)}: {kept_to[key]:,} of {total:,} images kept in {stores[key].dir}; "
                      f"--resume starts there", file=sys.stderr, flush=True)
        raise
    finally:  # the compute spent so far was spent all the same
        for key, progress in last.items():
            if key not in finished and run_dir is not None and progress.seconds > 0:
                record_pass(run_dir, key, progress.done - starts[key], progress.seconds, gpus,
                            resumed_at=starts[key], finished=False, task=tasks[key])
    return {"features": {request: refs[key] for request, key in feature_requests(configs, device).items()}}


def record_pass(run_dir: Path, key: str, images: int, seconds: float, gpus: float, resumed_at: int = 0,
                finished: bool = True, task: str | None = None) -> None:
    """Record one feature task's work in RUN_DIR/features.json: `images` computed in `seconds` (a pass resumed at
    image `resumed_at` computes only the rest; an interrupted one, `finished` False, counts what it did: that
    compute was spent too). An entry with the same `task` id is replaced, so a running task's entry can be
    brought up to date at each chunk and a killed driver leaves the seconds up to its last chunk."""
    path = Path(run_dir) / FEATURES_FILE
    try:
        passes = json.loads(path.read_text())["passes"]
    except (OSError, ValueError, KeyError, TypeError):
        passes = []
    if task is not None:
        passes = [p for p in passes if not (isinstance(p, dict) and p.get("task") == task)]
    model, weights, size, dtype = split_feature_key(key)
    passes.append({"key": key, **({"task": task} if task is not None else {}), "model": model, "weights": weights,
                   "image_size": size, "feature_dtype": dtype,
                   "images": int(images), "seconds": round(seconds, 3), "gpus": gpus,
                   "gpu_seconds": round(seconds * gpus, 3), "resumed_at": int(resumed_at), "complete": finished,
                   "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    atomic_write(path, json.dumps({"passes": passes}, indent=1) + "\n")
