"""The original STN study as a sweep: the PyTorch tutorial's affine Spatial Transformer Network on MNIST,
the original study's hyperparameters (plain SGD, lr 0.01, batch 64, 20 epochs), one trial per seed.

    python sweeps/stn_mnist.py --data-dir ../shared/data/mnist-5k            # 3 seeds x 20 epochs
    python sweeps/stn_mnist.py --smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/stn-smoke
    python sweeps/stn_mnist.py --dry-run --seeds 0 1 2 3 4 --set lr=[0.01,0.05]
    python -m analysis.report runs/stn_mnist                                 # (also written at the end)

Logs: RUN_DIR/logs/<trial_id>.parquet, one row per epoch (see README: "Logs").
"""
from __future__ import annotations

from sweeps.runner import Study, run_study
from trainables.configs import STNConfig


def parts():  # torch: imported when the sweep runs, so --help and a refused value answer at once
    from trainables.stn import train_stn

    return {"trainable": train_stn}


STUDY = Study(
    name="stn_mnist", doc=__doc__, config_cls=STNConfig, parts=parts,
    defaults={"seed": [0, 1, 2]},  # three repeats, as the original study ran its transfer grid
    # --smoke-test: 2 seeds x 2 epochs on 100 images per digit, tested on 1,000 images: ~20 s on 2 cores.
    smoke={"epochs": 2, "seed": [0, 1], "train_per_class": 100, "test_limit": 1000},
    gpu_share=0.25,  # the STN is tiny: four trials share one GPU
)


def main(argv: list[str] | None = None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    raise SystemExit(main())
