"""Driver side of the deformed-MNIST study: build (or read from the disk cache) one deformed set per distinct
(sigma, points, zoom, deform_seed) in the sweep, put each in Ray's object store once, and record what each
deformation does in `RUN_DIR/deformations.csv` (ink left in frame, compute time, cache file) for the report.

    prepare = deformed_sets(run_dir, cache_dir)        # Sweep(prepare=prepare, ...)
    extra = prepare(data, configs, resources)          # {"deformed": {spec.key: ObjectRef[DeformedMnist]}}
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import ray

from trainables.deform import DeformedMnist, deformed_mnist

CSV = "deformations.csv"


def deformed_sets(run_dir: Path, cache_dir: Path | None) -> Callable[..., dict[str, Any]]:
    def prepare(data, configs, resources: dict[str, float]) -> dict[str, Any]:
        specs = {c.deform_spec.key: c.deform_spec for c in configs}
        refs, rows = {}, []
        for key, spec in specs.items():
            t0 = time.perf_counter()
            sets: DeformedMnist = deformed_mnist(data, spec, cache_dir)
            how = f"computed in {sets.seconds:.1f} s" if sets.seconds else "read from cache"
            print(f"deformed MNIST {key}: {how} ({sets.path or 'not cached'}); ink left in frame: "
                  f"elastic {sets.ink['elastic']:.3f}, zoom {sets.ink['zoom']:.3f}", flush=True)
            refs[key] = ray.put(sets)
            rows.append({"key": key, "sigma": spec.sigma, "points": spec.points, "zoom": spec.zoom,
                         "deform_seed": spec.seed, **{f"ink/{v}": x for v, x in sets.ink.items()},
                         "seconds": round(time.perf_counter() - t0, 3), "cache_file": sets.path})
        tmp = run_dir / f".{CSV}.tmp"
        pd.DataFrame(rows).to_csv(tmp, index=False)
        os.replace(tmp, run_dir / CSV)
        return {"deformed": refs}

    return prepare
