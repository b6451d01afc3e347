"""Optuna search over the STN's batch size, learning rate and LR-decay step (gamma and momentum optional), with
ASHA stopping weak trials early. The tutorial's configuration is trial 1, the baseline of the study.

    python sweeps/stn_search.py --data-dir ../shared/data/mnist-5k --num-samples 20 --max-concurrent 2
    python sweeps/stn_search.py --smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/stn-search
    optuna-dashboard sqlite:///runs/stn_search/optuna.db

Early-stopped trials reach Optuna as PRUNED; the logs' stop_reason says completed, asha, plateau or diverged.
"""
from __future__ import annotations

from ray import tune

from sweeps.runner import Sweep, given, run_sweep, sweep_parser
from sweeps.search import Search, add_search_args, search_from_args
from trainables.data import load_mnist
from trainables.stn import STNConfig, check_against_data, train_stn

SPACE = {"batch_size": tune.choice([32, 64, 128, 256]), "lr": tune.loguniform(1e-3, 0.3),
         "lr_step": tune.randint(0, 21)}  # lr_step 0: constant learning rate, as the tutorial
OPTIONAL = {"gamma": lambda: tune.uniform(0.05, 0.9), "momentum": lambda: tune.uniform(0.0, 0.95)}
BASELINE = {"batch_size": 64, "lr": 0.01, "lr_step": 0, "gamma": 0.1, "momentum": 0.0}  # the tutorial
# --smoke-test: 4 trials of up to 3 epochs on 50 images per digit, 500 test images, ASHA from epoch 1.
SMOKE = {"epochs": 3, "train_per_class": 50, "test_limit": 500}


def main(argv: list[str] | None = None) -> int:
    p = sweep_parser("stn_search", __doc__)
    add_search_args(p, Search(space={}, baseline={}, num_samples=20, max_concurrent=2))
    g = p.add_argument_group("study options")
    g.add_argument("--epochs", type=int, default=None, help="epoch budget per trial (default: 20)")
    g.add_argument("--train-per-class", type=int, help="training images per digit (default: all)")
    g.add_argument("--test-limit", type=int, help="evaluate on the first N test images (default: all)")
    g.add_argument("--seed", type=int, default=0, help="data order and init seed of every trial (default: 0)")
    args = p.parse_args(argv)
    search = search_from_args(args, SPACE, BASELINE, OPTIONAL)
    fixed = {**(SMOKE if args.smoke_test else {}), **given(args, ("epochs", "train_per_class", "test_limit")),
             "seed": args.seed}
    data_dir = args.data_dir.expanduser().resolve()
    return run_sweep(args, Sweep(name="stn_search", trainable=train_stn, config_cls=STNConfig, param_space=fixed,
                                 load_data=lambda: load_mnist(data_dir), check_data=check_against_data,
                                 search=search, gpu_share=0.25))


if __name__ == "__main__":
    raise SystemExit(main())
