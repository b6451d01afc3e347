"""Driver side of the frozen-backbone feature cache: one Ray task per (backbone, weights, image size).

Each task runs the sweep's unique images (the union of every trial's training subset, plus the test images)
through its backbone once, with the resources of one trial (so on a GPU cluster it runs on a GPU node), and
returns the features. The driver then hands them to every trial through `tune.with_parameters`, i.e. Ray's
object store as one object per backbone: a trial fetches only its own backbone's features, and each node
fetches them once, whatever the number of trials and epochs. We chose the object store
over a node-local disk cache because it needs no shared filesystem, no lock and no cleanup, and the features are
small (2,048 floats per image for ResNet50, 4,096 for VGG19: ~0.2 GB for 12,700 images).

    Study(prepare=cached_features, ...)    # the runner calls it once, after Ray starts:
    extra = cached_features(data, configs, {"cpu": 1, "gpu": 0})   # {"features": {key: ObjectRef[FeatureSet]}}
"""
from __future__ import annotations

import time
from typing import Any

import ray

from trainables.loop import pick_device, pin_threads
from trainables.transfer import FeatureSet, feature_jobs, features_for


def _task(key: str, data, train_index, n_test: int, cpus: float, gpus: float) -> FeatureSet:
    pin_threads(cpus)
    return features_for(key, data, train_index, n_test, device=pick_device(gpus))


def cached_features(data, configs, resources: dict[str, float], args=None) -> dict[str, Any]:
    jobs = feature_jobs(data, configs)
    if not jobs:  # tutorial mode only: nothing to cache
        return {}
    task = ray.remote(_task).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"])
    data_ref = ray.put(data)
    t0 = time.perf_counter()
    refs = {key: task.remote(key, data_ref, idx, n, resources["cpu"], resources["gpu"])
            for key, (idx, n) in jobs.items()}
    for key, (idx, n) in jobs.items():
        print(f"features: {key.replace('|', ', ')}: {len(idx)} training + {n} test images, each through the "
              f"backbone once", flush=True)
    # Wait for every task before any trial starts (trials would hold the CPUs the tasks need) and surface a
    # failed one here, once; the trials get the object refs and each fetches only its own backbone's features.
    for key, ref in refs.items():
        dim = ray.get(ref).train.shape[1]
        print(f"features: {key.replace('|', ', ')} ready after {time.perf_counter() - t0:.1f} s ({dim} per image)",
              flush=True)
    return {"features": refs}
