"""The confirm phase of a search: after the search, its K best configurations by validation accuracy and the
study's baseline each train again on S fresh seeds (new data order, init and, for a subset study, new subsets)
with the whole epoch budget and no early stopping. These are ordinary trials of the same RUN_DIR (Tune's
experiment RUN_DIR/tune-confirm), logged with phase = confirm beside the search's phase = search rows, so the
report's "tuned vs baseline" headline rests on runs that nothing was chosen on.

    python sweeps/stn_search.py --data-dir ../shared/data/mnist-5k --confirm 3,3   # 3 winners + baseline, 3 seeds
    python sweeps/stn_search.py ... --confirm off                                   # the search alone

The winners are read from the search's logs once and kept in RUN_DIR/confirm.json, so a resumed run confirms
the same configurations.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from analysis.files import atomic_write

CONFIRM_DIR = "tune-confirm"  # Tune's experiment of the confirm phase, beside RUN_DIR/tune
CONFIRM_FILE = "confirm.json"


def confirm_seeds(search_seed: int, seeds: int) -> list[int]:
    """S seeds the search never trained with (it ran every trial on `search_seed`)."""
    return [search_seed + 1 + i for i in range(seeds)]


def best_configs(logs_dir: Path, trial_ids: set[str], searched: list[str], metric: str,
                 baseline: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """The searched values of the `k` best search trials by their best `metric` over epochs, the baseline's own
    configuration left out; fewer when the search has fewer distinct ones. An accuracy on a few hundred images
    moves in steps, so trials tie: the lower best loss on the same split (val_loss for val_acc) breaks the tie,
    then the trial id. (Trial ids are random, so a tie left to them picked either configuration from run to run.)"""
    import pyarrow.parquet as pq  # when a confirm phase starts: --help answers without it

    loss = metric.replace("_acc", "_loss") if metric.endswith("_acc") else None
    scored = []
    for path in sorted(logs_dir.glob("*.parquet")):
        if path.stem not in trial_ids:
            continue
        rows = pq.read_table(path).to_pylist()
        values = [r.get(metric) for r in rows if r.get(metric) is not None]
        if not rows or not values:
            continue
        losses = [r[loss] for r in rows if loss and r.get(loss) is not None and math.isfinite(r[loss])]
        config = {key: rows[0].get(f"config/{key}") for key in searched}
        if config != {key: baseline[key] for key in searched}:
            scored.append((-max(values), min(losses, default=math.inf), path.stem, config))
    chosen: list[dict[str, Any]] = []
    for *_, config in sorted(scored, key=lambda item: item[:3]):
        if config not in chosen:
            chosen.append(config)
    return chosen[:k]


def confirm_points(winners: list[dict[str, Any]], baseline: dict[str, Any], seeds: list[int]) -> list[dict[str, Any]]:
    """The confirm trials' settings over the study's fixed configuration: the baseline first, then each winner,
    each on every seed."""
    return [{**config, "seed": seed} for config in [baseline, *winners] for seed in seeds]


def confirm_tags(points: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """What the terminal calls each confirm trial (sweeps.console.TrialProgress): each point of confirm_points
    with its role and seed, "baseline, seed 4" or "search's #2, seed 5" (its configuration, in the order
    confirm_points lists them: the baseline first)."""
    configs: list[dict[str, Any]] = []
    tags = []
    for point in points:
        config = {k: v for k, v in point.items() if k != "seed"}
        if config not in configs:
            configs.append(config)
        rank = configs.index(config)
        tags.append((point, ("baseline" if rank == 0 else f"search's #{rank}") + f", seed {point.get('seed')}"))
    return tags


def load_or_choose(run_dir: Path, choose) -> list[dict[str, Any]]:
    """The confirm trials stored in RUN_DIR/confirm.json, else `choose()`'s, stored there first."""
    path = run_dir / CONFIRM_FILE
    if path.is_file():
        return json.loads(path.read_text())["points"]
    points = choose()
    atomic_write(path, json.dumps({"points": points}, indent=2) + "\n")
    return points
