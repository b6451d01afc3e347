"""The sweep command lines that README.md and the sweep scripts' docstrings document, and what their `--dry-run`
resolves them to (the trial configurations, and for searches the search settings), in-process.

    python tests/documented_commands.py --record tests/golden/documented_dry_runs.json   # what the code gives now

tests/test_documented_commands.py compares today's resolution with the recorded one, so a refactoring of the
option handling cannot silently change what a documented command runs. The record was taken before option
parsing was generated from the config classes.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (script, arguments): every documented invocation, plus one line per study that sets each study option.
COMMANDS: list[tuple[str, str]] = [
    ("stn_mnist", ""),
    ("stn_mnist", "--data-dir ../shared/data/mnist-5k"),
    ("stn_mnist", "--data-dir ../shared/data/mnist-5k --out runs/stn"),
    ("stn_mnist", "--seeds 0 1 2 3 4 --set lr=[0.01,0.05]"),
    ("stn_mnist", "--smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/stn-smoke"),
    ("stn_mnist", "--address auto --out /mnt/runs/stn --data-dir /mnt/runs/data --gpus-per-trial 0.25"),
    ("stn_mnist", "--epochs 5 --lr 0.02 --batch-size 32 --momentum 0.5 --lr-step 3 --gamma 0.5 "
                  "--train-per-class 20 --test-limit 100 --seeds 4"),
    ("stn_mnist", "--smoke-test --epochs 3 --seeds 7"),
    ("stn_deformed", "--data-dir ../shared/data/mnist-5k"),
    ("stn_deformed", "--sigma 30 --points 3 --out runs/original_study"),
    ("stn_deformed", "--sigma 0 1 2 4 8 16 30 --transformers affine --seeds 0 --out runs/sigma_curve"),
    ("stn_deformed", "--smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/deformed-smoke"),
    ("stn_deformed", "--transformers tps none --tps-grid 5 --zoom 2 --deform-seed 3 --epochs 4 --lr 0.01 "
                     "--momentum 0 --lr-step 0 --gamma 0.5 --batch-size 32 --train-per-class 10 --test-limit 50"),
    ("stn_search", "--data-dir ../shared/data/mnist-5k --num-samples 20 --max-concurrent 2"),
    ("stn_search", "--smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/stn-search"),
    ("stn_search", "--data-dir ../shared/data/mnist-5k --num-samples 20 --tune-momentum"),
    ("stn_search", "--asha off --plateau 3 --tune-gamma --search-seed 5 --epochs 10 --train-per-class 30 "
                   "--test-limit 200 --seed 2"),
    ("stn_search", "--asha 3,2 --smoke-test"),
    ("transfer_grid", ""),
    ("transfer_grid", "--data-dir ../shared/data/mnist-5k --epochs 15"),
    ("transfer_grid", "--smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/tg"),
    ("transfer_grid", "--address auto --out /mnt/runs/transfer --data-dir /mnt/runs/data --gpus-per-trial 1"),
    ("transfer_grid", "--models resnet18 efficientnet_b0 --weights none --image-size 64 --test-limit 100"),
    ("transfer_grid", "--backbone-mode tutorial --sizes 10 30 --seeds 0 --lr 0.01 --batch-size 8 --epochs 3"),
    ("transfer_search", "--model resnet50 --size 50 --num-samples 30 --gpus-per-trial 0.25"),
    ("transfer_search", "--smoke-test --data-dir ../shared/data/mnist-5k --out /tmp/tsearch"),
    ("transfer_search", "--weights none --image-size 32 --epochs 5 --test-limit 100 --seed 1 --tune-gamma "
                        "--max-concurrent 3"),
]

_CONFIG_LINE = re.compile(r"^\s*(\d+)\s+(\{.*\})\s*$")


def dry_run(script: str, args: str) -> dict:
    """What `python sweeps/SCRIPT.py ARGS --dry-run` resolves to: exit code, trial configs (for a search only the
    baseline, trial 1; the rest are random samples), the first line (trial count and resources per trial) and the
    search's settings lines."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module(f"sweeps.{script}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = module.main([*args.split(), "--dry-run"])
    configs, search = [], []
    is_search = False
    for line in out.getvalue().splitlines():
        if (m := _CONFIG_LINE.match(line)) and not (is_search and int(m.group(1)) > 1):
            configs.append(json.loads(m.group(2)))
        elif line.startswith("Optuna TPE search") or line.startswith("  search "):
            is_search = True
            search.append(line.strip())
    lines = out.getvalue().splitlines()
    return {"code": code, "header": lines[0] if lines else "", "configs": configs, "search": search}


def record(path: Path) -> None:
    rows = [{"script": s, "args": a, **dry_run(s, a)} for s, a in COMMANDS]
    path.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    print(f"{len(rows)} command lines recorded in {path}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--record":
        raise SystemExit(__doc__)
    record(Path(sys.argv[2]))
