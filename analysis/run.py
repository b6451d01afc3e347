"""Load a sweep's run folder once for every report section: the logs and the tables derived from them.

    from analysis.run import load_run
    data = load_run("runs/stn_mnist")   # data.df (trial x epoch), data.trials, data.groups, data.curves

Reads RUN_DIR/logs (and RUN_DIR/sweep.json when present). No ray, no torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import tradeoff
from analysis.logs import group_columns, load_logs
from analysis.tables import PHASE_COLUMN, curves, group_summary, gpu_share, trial_summary

SEARCH_STUDY_FILE = "optuna.db"  # sweeps/search.py keeps a search's Optuna study in RUN_DIR under this name


@dataclass
class RunData:
    """Everything a section may use: the logs (one row per trial and epoch) and the tables derived from them."""
    run_dir: Path
    name: str
    df: pd.DataFrame
    gcols: list[str]
    trials: pd.DataFrame
    groups: pd.DataFrame
    curves: pd.DataFrame
    compute: str  # "gpu_seconds", or "total_seconds" when no trial held a GPU share
    notes: list[str] = field(default_factory=list)
    sweep: dict | None = None  # RUN_DIR/sweep.json when present
    baseline: str | None = None  # --baseline LABEL
    compare: RunData | None = None  # --compare RUN_DIR2

    @property
    def skipped(self) -> list[dict]:
        return self.df.attrs.get("skipped", [])

    @property
    def first_config(self) -> dict | None:
        """sweep.json's first configuration: the study's baseline (a search enqueues it first)."""
        configs = (self.sweep or {}).get("configs")
        return configs[0] if isinstance(configs, list) and configs and isinstance(configs[0], dict) else None

    @property
    def is_search(self) -> bool:
        """A search run (its report opens with the tuned-vs-baseline headline): RUN_DIR holds the Optuna study
        (optuna.db), or the logs carry a phase column (search/confirm); a grid has neither."""
        return (self.run_dir / SEARCH_STUDY_FILE).exists() or PHASE_COLUMN in self.df


def load_run(run_dir: str | Path, baseline: str | None = None) -> RunData:
    """Read RUN_DIR/logs (and sweep.json when present) and build the per-trial, per-group and per-epoch tables."""
    run_dir = Path(run_dir)
    df = load_logs(run_dir)  # raises FileNotFoundError naming the folder when there is nothing to report
    sweep = None
    try:
        sweep = json.loads((run_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        pass  # a copied logs folder without its sweep.json still gets a report
    fallback = (sweep or {}).get("resources_per_trial", {}).get("gpu")
    fallback = fallback if isinstance(fallback, (int, float)) else None
    gpus, note = gpu_share(df, fallback)
    gcols = group_columns(df)
    trials = trial_summary(df, gcols, gpus)
    groups = group_summary(trials, gcols)
    curv = curves(df, trials)
    compute = tradeoff.compute_column(trials)
    trials["pareto"] = tradeoff.pareto(trials, compute).to_numpy()
    return RunData(run_dir=run_dir, name=run_dir.resolve().name, df=df, gcols=gcols, trials=trials, groups=groups,
                   curves=curv, compute=compute, notes=[note] if note else [], sweep=sweep, baseline=baseline)
