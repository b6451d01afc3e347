"""Driver side of the deformed-MNIST study: build (or read from the disk cache) one deformed set per distinct
(sigma, points, zoom, deform_seed) in the sweep, put each in Ray's object store once, and record what each
deformation does in `RUN_DIR/deformations.csv` (ink left in frame, compute time, cache file) for the report.

    parts() -> {"prepare": deformed_sets, ...}          # sweeps/stn_deformed.py; the runner calls it once, after Ray starts:
    extra = deformed_sets(data, configs, resources, args)   # {"deformed": {spec.key: ObjectRef[DeformedMnist]}}
"""
from __future__ import annotations

import time
from typing import Any

import pandas as pd
import ray

from analysis.files import atomic_write
from trainables.deform import DeformedMnist, deformed_mnist

CSV = "deformations.csv"


def deformed_sets(data, configs, resources: dict[str, float], args) -> dict[str, Any]:
    """Needs `args.out` (RUN_DIR, for deformations.csv) and `args.cache_dir`."""
    run_dir, cache_dir = args.out.expanduser().resolve(), args.cache_dir.expanduser()
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
    atomic_write(run_dir / CSV, pd.DataFrame(rows).to_csv(index=False))
    return {"deformed": refs}
