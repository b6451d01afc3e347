"""The original study's transfer-learning grid: frozen ImageNet ResNet50 and VGG19 with a new 10-way head,
trained on 10, 30, 50, 70 and 90 MNIST images per digit, 3 seeds each (2 x 5 x 3 = 30 trials), with the
original hyperparameters (SGD lr 0.001, momentum 0.9, batch 4, StepLR 7 / 0.1, 50 epochs, 224 px) and the
whole test set evaluated after every epoch. For one (size, seed) both backbones see the same images; each seed
draws different ones.

    python sweeps/transfer_grid.py --dry-run                     # the 30 configurations
    python sweeps/transfer_grid.py --data-dir ../shared/data/mnist-5k --epochs 15     # the short variant
    python sweeps/transfer_grid.py --smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/tg

Backbone modes: `cached` (default) runs every unique image through each backbone once per sweep, in eval mode,
and trains the heads on those features; `tutorial` repeats the original study exactly (backbone in train mode,
a full forward pass for every batch of every epoch). On CPU, use --image-size 64 and --test-limit to keep it short.
"""
from __future__ import annotations

from sweeps.runner import Study, run_study
from trainables.configs import FEATURE_CACHE_DIR, TransferConfig


def parts():  # torch and Ray: imported when the sweep runs, so --help and a refused value answer at once
    from sweeps.features import cached_features, trial_gpu_share
    from trainables.transfer import train_transfer

    return {"trainable": train_transfer, "prepare": cached_features, "gpu_share": trial_gpu_share}


STUDY = Study(
    name="transfer_grid", doc=__doc__, config_cls=TransferConfig, parts=parts,
    defaults={"model": ["resnet50", "vgg19"], "train_per_class": [10, 30, 50, 70, 90], "seed": [0, 1, 2]},
    # --smoke-test: both backbones, two sizes, one seed, 2 epochs, random weights, 32 px, 5 validation images per
    # digit (the default split would be most of the feature pass), 100 test images.
    smoke={"train_per_class": [10, 20], "seed": [0], "epochs": 2, "weights": "none", "image_size": 32,
           "val_per_class": 5, "test_limit": 100},
    notes={"epochs": "the original study's short variant: 15"},
    scratch=(FEATURE_CACHE_DIR,),  # the feature pass's chunks, for --resume
)


def main(argv: list[str] | None = None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    raise SystemExit(main())
