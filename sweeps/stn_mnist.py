"""The original STN study as a sweep: the PyTorch tutorial's affine Spatial Transformer Network on MNIST,
tutorial hyperparameters (plain SGD, lr 0.01, batch 64, 20 epochs), one trial per seed.

    python sweeps/stn_mnist.py --data-dir ../shared/data/mnist-5k            # 3 seeds x 20 epochs
    python sweeps/stn_mnist.py --smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/stn-smoke
    python sweeps/stn_mnist.py --dry-run --seeds 0 1 2 3 4 --set lr=[0.01,0.05]
    python -m analysis.report runs/stn_mnist                                 # (also written at the end)

Logs: RUN_DIR/logs/<trial_id>.parquet, one row per epoch (see README: "Logs").
"""
from __future__ import annotations

from ray import tune

from sweeps.runner import Sweep, run_sweep, sweep_parser
from trainables.data import load_mnist
from trainables.stn import STNConfig, check_against_data, train_stn

# --smoke-test: 2 seeds x 2 epochs on 100 images per digit, tested on 1,000 images: ~20 s on 2 cores.
SMOKE = {"epochs": 2, "seeds": [0, 1], "train_per_class": 100, "test_limit": 1000}
DEFAULT_SEEDS = [0, 1, 2]  # three repeats, as the original study ran its transfer grid


def main(argv: list[str] | None = None) -> int:
    p = sweep_parser("stn_mnist", __doc__)
    d = STNConfig()
    g = p.add_argument_group("study options")
    g.add_argument("--seeds", type=int, nargs="+", help=f"one trial per seed (default: {DEFAULT_SEEDS})")
    g.add_argument("--epochs", type=int, help=f"epochs per trial (default: {d.epochs})")
    g.add_argument("--lr", type=float, help=f"SGD learning rate (default: {d.lr})")
    g.add_argument("--batch-size", type=int, help=f"mini-batch size (default: {d.batch_size})")
    g.add_argument("--momentum", type=float, help=f"SGD momentum (default: {d.momentum})")
    g.add_argument("--lr-step", type=int, help="StepLR step in epochs, 0 = constant lr (default: 0)")
    g.add_argument("--gamma", type=float, help=f"StepLR decay factor (default: {d.gamma})")
    g.add_argument("--train-per-class", type=int,
                   help="training images per digit, drawn per seed (default: the whole training set)")
    g.add_argument("--test-limit", type=int, help="evaluate on the first N test images (default: all)")
    args = p.parse_args(argv)

    # explicit option > --smoke-test > the study's default
    pick = {k: v for k, v in vars(args).items() if v is not None}
    base = {**(SMOKE if args.smoke_test else {}), **pick}
    space = {k: base[k] for k in ("epochs", "lr", "batch_size", "momentum", "lr_step", "gamma",
                                  "train_per_class", "test_limit") if k in base}
    space["seed"] = tune.grid_search(base.get("seeds", DEFAULT_SEEDS))

    data_dir = args.data_dir.expanduser().resolve()
    return run_sweep(args, Sweep(
        name="stn_mnist", trainable=train_stn, config_cls=STNConfig, param_space=space,
        load_data=lambda: load_mnist(data_dir), check_data=check_against_data,
        gpu_share=0.25,  # the STN is tiny: four trials share one GPU
    ))


if __name__ == "__main__":
    raise SystemExit(main())
