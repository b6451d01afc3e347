"""Optuna search over the STN's batch size, learning rate and LR-decay step (gamma and momentum optional), with
ASHA stopping weak trials early. The original study's configuration (the PyTorch STN tutorial's) is trial 1, the
study's baseline.

    python sweeps/stn_search.py --data-dir ../shared/data/mnist-5k --num-samples 20 --max-concurrent 2
    python sweeps/stn_search.py --smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/stn-search
    optuna-dashboard sqlite:///runs/stn_search/optuna.db

Early-stopped trials reach Optuna as PRUNED; the logs' stop_reason says completed, asha, plateau or diverged.
"""
from __future__ import annotations

from sweeps.runner import Study, run_study
from sweeps.search_space import SearchSpace, choice, loguniform, randint, uniform
from trainables.configs import STNConfig


def parts():  # torch: imported when the sweep runs, so --help and a refused value answer at once
    from trainables.stn import train_stn

    return {"trainable": train_stn}


SEARCH = SearchSpace(
    space={"batch_size": choice([32, 64, 128, 256]), "lr": loguniform(1e-3, 0.3),
           "lr_step": randint(0, 21)},  # lr_step 0: constant learning rate, as the original study
    optional={"gamma": uniform(0.05, 0.9), "momentum": uniform(0.0, 0.95)},
    baseline={"batch_size": 64, "lr": 0.01, "lr_step": 0, "gamma": 0.1, "momentum": 0.0},  # the original study
    options={"num_samples": 20, "max_concurrent": 2, "confirm": "3,3"},
)
STUDY = Study(
    name="stn_search", doc=__doc__, config_cls=STNConfig, parts=parts, search=SEARCH,
    # --smoke-test: 4 trials of up to 3 epochs on 50 images per digit, 500 test images, ASHA from epoch 1.
    smoke={"epochs": 3, "train_per_class": 50, "test_limit": 500},
    gpu_share=0.25,
)


def main(argv: list[str] | None = None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    raise SystemExit(main())
