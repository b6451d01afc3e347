"""Optuna search over the transfer head's batch size, learning rate and LR-decay step (gamma and momentum
optional) for one backbone and training-set size, with ASHA stopping weak trials early. The original study's
configuration (batch 4, lr 0.001, StepLR 7 / 0.1, momentum 0.9) is trial 1, the baseline of the study: the
original study found that larger batch, learning rate and decay step bought about 1% at twice the epochs.

    python sweeps/transfer_search.py --model resnet50 --size 50 --num-samples 30 --gpus-per-trial 0.25
    python sweeps/transfer_search.py --smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/tsearch
    optuna-dashboard sqlite:///runs/transfer_search/optuna.db

Backbone features are computed once per sweep (cached mode), so every trial only trains the 10-way head.
"""
from __future__ import annotations

from sweeps.runner import Study, run_study
from sweeps.search_space import SearchSpace, choice, loguniform, randint, uniform
from trainables.configs import FEATURE_CACHE_DIR, TransferConfig


def parts():  # torch and Ray: imported when the sweep runs, so --help and a refused value answer at once
    from sweeps.features import cached_features, trial_gpu_share
    from trainables.transfer import train_transfer

    return {"trainable": train_transfer, "prepare": cached_features, "gpu_share": trial_gpu_share}


SEARCH = SearchSpace(
    space={"batch_size": choice([4, 8, 16, 32]), "lr": loguniform(1e-4, 0.1),
           "lr_step": randint(3, 31)},
    optional={"gamma": uniform(0.05, 0.9), "momentum": uniform(0.5, 0.99)},
    baseline={"batch_size": 4, "lr": 0.001, "lr_step": 7, "gamma": 0.1, "momentum": 0.9},  # the original study
    options={"num_samples": 30, "max_concurrent": 4, "confirm": "3,3"},
)
STUDY = Study(
    name="transfer_search", doc=__doc__, config_cls=TransferConfig, parts=parts, search=SEARCH,
    # --smoke-test: 4 trials of up to 4 epochs, random weights, 32 px, 10 training and 5 validation images per digit,
    # 100 test images.
    smoke={"epochs": 4, "weights": "none", "image_size": 32, "train_per_class": 10, "val_per_class": 5,
           "test_limit": 100},
    scratch=(FEATURE_CACHE_DIR,),  # the feature pass's chunks, for --resume
)


def main(argv: list[str] | None = None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    raise SystemExit(main())
