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

from ray import tune

from sweeps.features import cached_features
from sweeps.runner import Sweep, run_sweep, sweep_parser
from trainables.data import load_mnist
from trainables.transfer import MODES, TransferConfig, check_before_trials, train_transfer

# --smoke-test: both backbones, two sizes, one seed, 2 epochs, random weights, 32 px, 200 test images (~30 s).
SMOKE = {"sizes": [10, 30], "seeds": [0], "epochs": 2, "weights": "none", "image_size": 32, "test_limit": 200}
GRID = {"models": ["resnet50", "vgg19"], "sizes": [10, 30, 50, 70, 90], "seeds": [0, 1, 2]}


def main(argv: list[str] | None = None) -> int:
    p = sweep_parser("transfer_grid", __doc__)
    d = TransferConfig()
    g = p.add_argument_group("study options")
    g.add_argument("--models", nargs="+", help=f"torchvision models (default: {' '.join(GRID['models'])})")
    g.add_argument("--sizes", type=int, nargs="+",
                   help=f"training images per digit (default: {' '.join(map(str, GRID['sizes']))})")
    g.add_argument("--seeds", type=int, nargs="+", help="one trial per seed and size (default: 0 1 2)")
    g.add_argument("--epochs", type=int, help=f"epochs per trial (default: {d.epochs}; the short variant: 15)")
    g.add_argument("--weights", help="imagenet (torchvision's ImageNet weights, downloaded once into the torch "
                                     "cache), none (random init) or PATH to a state_dict (default: imagenet)")
    g.add_argument("--image-size", type=int, help=f"backbone input size in px (default: {d.image_size})")
    g.add_argument("--backbone-mode", choices=MODES, help="cached (default) or tutorial")
    g.add_argument("--test-limit", type=int, help="evaluate on the first N test images (default: all)")
    g.add_argument("--lr", type=float, help=f"SGD learning rate (default: {d.lr})")
    g.add_argument("--batch-size", type=int, help=f"mini-batch size (default: {d.batch_size})")
    args = p.parse_args(argv)

    pick = {k: v for k, v in vars(args).items() if v is not None}
    base = {**GRID, **(SMOKE if args.smoke_test else {}), **pick}
    space = {k: base[k] for k in ("epochs", "weights", "image_size", "backbone_mode", "test_limit", "lr",
                                  "batch_size") if k in base}
    space["model"] = tune.grid_search(base["models"])
    space["train_per_class"] = tune.grid_search(base["sizes"])
    space["seed"] = tune.grid_search(base["seeds"])

    data_dir = args.data_dir.expanduser().resolve()
    return run_sweep(args, Sweep(
        name="transfer_grid", trainable=train_transfer, config_cls=TransferConfig, param_space=space,
        load_data=lambda: load_mnist(data_dir), check_data=check_before_trials, prepare=cached_features,
        gpu_share=1.0,
    ))


if __name__ == "__main__":
    raise SystemExit(main())
