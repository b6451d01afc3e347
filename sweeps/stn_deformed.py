"""The deformed-MNIST STN study: affine vs thin-plate-spline vs no transformer, trained and tested on MNIST
tripled with elastically deformed (elasticdeform) and zoomed-out copies; accuracy logged per deformation type
(test_acc/clean, test_acc/elastic, test_acc/zoom) beside the combined test_acc.

    python sweeps/stn_deformed.py --data-dir ../shared/data/mnist-5k                 # 3 transformers x 3 seeds
    python sweeps/stn_deformed.py --smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/deformed-smoke
    python sweeps/stn_deformed.py --sigma 30 --points 3 --out runs/original_study    # the original study's setting
    python sweeps/stn_deformed.py --sigma 0 1 2 4 8 16 30 --transformers affine --seeds 0 --out runs/sigma_curve
    python -m analysis.stn_inspect runs/stn_deformed      # before/after grids, affine θ, TPS control grids

Several --sigma values make a σ curve: the report plots per-type accuracy and the digit ink left in frame
against σ. Deformed sets are computed once per (dataset, σ, points, zoom, deform seed) and cached in --cache-dir.
Why the default σ = 1: see README ("Deformed MNIST").
"""
from __future__ import annotations

from pathlib import Path

from sweeps.runner import Study, run_study
from trainables.configs import DEFAULT_DEFORM_CACHE, TRANSFORMER_NAMES, DeformedSTNConfig


def parts():  # torch and Ray: imported when the sweep runs, so --help and a refused value answer at once
    from sweeps.deformed_data import deformed_sets
    from trainables.stn import train_stn_deformed

    return {"trainable": train_stn_deformed, "prepare": deformed_sets}


def cache_option(parser) -> None:
    parser.add_argument_group("deformed data").add_argument(
        "--cache-dir", type=Path, default=DEFAULT_DEFORM_CACHE,
        help=f"where deformed sets are cached (default: {DEFAULT_DEFORM_CACHE})")


STUDY = Study(
    name="stn_deformed", doc=__doc__, config_cls=DeformedSTNConfig, parts=parts,
    defaults={"transformer": list(TRANSFORMER_NAMES), "seed": [0, 1, 2]},
    # --smoke-test: all three transformers, 1 seed, 2 epochs, 50 images per digit (x3), 500 test images per type.
    smoke={"epochs": 2, "seed": [0], "train_per_class": 50, "test_limit": 500},
    notes={"sigma": "several values make a σ curve; the original study used 30, which destroys the digits",
           "train_per_class": "before tripling", "test_limit": "of each type"},
    extra_options=cache_option,
    gpu_share=0.25,  # a small network: four trials share one GPU
)


def main(argv: list[str] | None = None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    raise SystemExit(main())
