"""Load a sweep's run folder once for every report section: the logs and the tables derived from them.

    from analysis.run import load_run
    data = load_run("runs/stn_mnist")   # data.df (trial x epoch), data.trials, data.groups, data.curves

Reads RUN_DIR/logs (and RUN_DIR/sweep.json and RUN_DIR/features.json when present). A trial's compute is its
training (epoch seconds; GPU-seconds = seconds x its GPU share) plus its share of the feature pass
(analysis.compute): the trials table's compute_seconds and compute_gpu_seconds. No ray, no torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from analysis import tradeoff
from analysis.compute import feature_shares, read_feature_passes
from analysis.logs import SHOWN_DIGITS, group_columns, group_labels, load_logs
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
    compute: str  # "compute_gpu_seconds", or "compute_seconds" when no trial held a GPU share
    notes: list[str] = field(default_factory=list)
    sweep: dict | None = None  # RUN_DIR/sweep.json when present
    baseline: str | None = None  # --baseline LABEL
    compare: RunData | None = None  # --compare RUN_DIR2
    passes: pd.DataFrame | None = None  # RUN_DIR/features.json's feature passes (cached transfer studies)

    @cached_property
    def shown(self) -> dict[str, str]:
        """Group label -> the same with floats to 4 significant digits (more where two values would read the
        same), for the pages; the exact label keys the tables and the CSVs."""
        return dict(zip(self.trials["group"], group_labels(self.trials, self.gcols, digits=SHOWN_DIGITS)))

    def readable(self, group: str) -> str:
        return self.shown.get(group, group)

    @property
    def has_gpu(self) -> bool:
        """Whether any trial or feature pass held a GPU share: without one, GPU-seconds columns are all 0 and the
        pages leave them out."""
        return bool((self.trials["compute_gpu_seconds"].fillna(0) > 0).any())

    @property
    def feature_seconds(self) -> float:
        """Seconds (wall time of the feature tasks) of every feature pass in features.json; 0 without one."""
        return float(self.passes["seconds"].sum()) if self.passes is not None else 0.0

    @property
    def feature_gpu_seconds(self) -> float:
        return float(self.passes["gpu_seconds"].sum()) if self.passes is not None else 0.0

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
    passes = read_feature_passes(run_dir)
    shares, feature_notes = feature_shares(df, trials, passes)
    at = trials.columns.get_loc("gpu_seconds") + 1
    for i, col in enumerate(["feature_seconds", "feature_gpu_seconds", "compute_seconds", "compute_gpu_seconds"]):
        value = (trials["total_seconds"] + shares["feature_seconds"] if col == "compute_seconds" else
                 trials["gpu_seconds"] + shares["feature_gpu_seconds"] if col == "compute_gpu_seconds" else shares[col])
        trials.insert(at + i, col, value)
    if shares["feature_key"].notna().any():
        trials["feature_key"], trials["feature_images"] = shares["feature_key"], shares["feature_images"]
    notes = ([note] if note else []) + feature_notes
    if passes is None and "config/backbone_mode" in df and (df["config/backbone_mode"] == "cached").any():
        notes.append("This run has no features.json (written by sweeps from this version on), so the cached "
                     "feature pass's compute is not counted: compute is training only.")
    groups = group_summary(trials, gcols)
    curv = curves(df, trials)
    compute = tradeoff.compute_column(trials)
    trials["pareto"] = tradeoff.pareto(trials, compute).to_numpy()
    return RunData(run_dir=run_dir, name=run_dir.resolve().name, df=df, gcols=gcols, trials=trials, groups=groups,
                   curves=curv, compute=compute, notes=notes, sweep=sweep, baseline=baseline, passes=passes)
