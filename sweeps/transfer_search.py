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

from ray import tune

from sweeps.features import cached_features
from sweeps.runner import Sweep, given, run_sweep, sweep_parser
from sweeps.search import Search, add_search_args, search_from_args
from trainables.data import load_mnist
from trainables.transfer import TransferConfig, check_before_trials, train_transfer

SPACE = {"batch_size": tune.choice([4, 8, 16, 32]), "lr": tune.loguniform(1e-4, 0.1),
         "lr_step": tune.randint(3, 31)}
OPTIONAL = {"gamma": lambda: tune.uniform(0.05, 0.9), "momentum": lambda: tune.uniform(0.5, 0.99)}
BASELINE = {"batch_size": 4, "lr": 0.001, "lr_step": 7, "gamma": 0.1, "momentum": 0.9}  # the original study
# --smoke-test: 4 trials of up to 4 epochs, random weights, 32 px, 10 images per digit, 200 test images.
SMOKE = {"epochs": 4, "weights": "none", "image_size": 32, "train_per_class": 10, "test_limit": 200}


def main(argv: list[str] | None = None) -> int:
    p = sweep_parser("transfer_search", __doc__)
    add_search_args(p, Search(space={}, baseline={}, num_samples=30, max_concurrent=4))
    g = p.add_argument_group("study options")
    g.add_argument("--model", help="torchvision model (default: resnet50)")
    g.add_argument("--size", dest="train_per_class", type=int, help="training images per digit (default: 10)")
    g.add_argument("--epochs", type=int, help="epoch budget per trial (default: 50)")
    g.add_argument("--weights", help="imagenet (default), none or PATH")
    g.add_argument("--image-size", type=int, help="backbone input size in px (default: 224)")
    g.add_argument("--test-limit", type=int, help="evaluate on the first N test images (default: all)")
    g.add_argument("--seed", type=int, default=0, help="subset draw and head init of every trial (default: 0)")
    args = p.parse_args(argv)
    search = search_from_args(args, SPACE, BASELINE, OPTIONAL)
    keys = ("model", "train_per_class", "epochs", "weights", "image_size", "test_limit")
    fixed = {**(SMOKE if args.smoke_test else {}), **given(args, keys), "seed": args.seed}
    data_dir = args.data_dir.expanduser().resolve()
    return run_sweep(args, Sweep(name="transfer_search", trainable=train_transfer, config_cls=TransferConfig,
                                 param_space=fixed, load_data=lambda: load_mnist(data_dir),
                                 check_data=check_before_trials, prepare=cached_features, search=search))


if __name__ == "__main__":
    raise SystemExit(main())
