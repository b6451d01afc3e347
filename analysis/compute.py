"""The compute a run spent: the trials' training plus the one-time feature pass of a cached transfer study.

    passes = read_feature_passes(run_dir)            # RUN_DIR/features.json as a table, or None
    shares = feature_shares(df, trials, passes)      # per trial: feature_seconds, feature_gpu_seconds; notes

The sweep driver writes RUN_DIR/features.json for transfer studies in cached mode, one entry per feature task that
finished (a resumed run that recomputes features adds entries: compute spent too):

    {"passes": [{"key": "resnet50|none|32|fp32", "images": 1000, "seconds": 12.9, "gpus": 0.0, "gpu_seconds": 0.0,
                 ...}]}

The logs of its trials carry ``feature_key`` (a pass's key) and ``feature_images`` (how many of that pass's images
the trial used: training subset + validation split + test images). A trial's share of a key's passes is their
seconds (and GPU-seconds) x its feature_images / the sum of feature_images over the run's trials with that key.
Trials without those columns (tutorial mode, STN studies) get 0. Without features.json (STN studies, older runs)
every share is 0. Nothing here imports ray or torch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES_FILE = "features.json"
KEY_COLUMN, IMAGES_COLUMN = "feature_key", "feature_images"


def read_feature_passes(run_dir: str | Path) -> pd.DataFrame | None:
    """RUN_DIR/features.json's passes (key, seconds, gpu_seconds, images, ...), or None when the file is absent or
    unreadable. A pass without gpu_seconds gets seconds x gpus (0 without gpus)."""
    try:
        raw = json.loads((Path(run_dir) / FEATURES_FILE).read_text())
    except (OSError, ValueError):
        return None
    passes = raw.get("passes") if isinstance(raw, dict) else None
    rows = [p for p in passes or [] if isinstance(p, dict) and isinstance(p.get("key"), str)]
    if not rows:
        return None
    out = pd.DataFrame(rows)
    for col in ("seconds", "gpus", "gpu_seconds", "images"):
        out[col] = pd.to_numeric(out[col], errors="coerce") if col in out else np.nan
    out["seconds"] = out["seconds"].fillna(0.0)
    out["gpu_seconds"] = out["gpu_seconds"].fillna(out["seconds"] * out["gpus"].fillna(0.0))
    return out


def _per_trial(df: pd.DataFrame, trial_ids: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Each trial's feature_key and feature_images (last value logged), aligned with ``trial_ids``."""
    if KEY_COLUMN not in df:
        return pd.Series(None, index=trial_ids.index, dtype=object), pd.Series(np.nan, index=trial_ids.index)
    cols = [KEY_COLUMN] + ([IMAGES_COLUMN] if IMAGES_COLUMN in df else [])
    last = df[["trial_id", *cols]].groupby("trial_id", sort=False).last()  # last non-null per trial
    key = last[KEY_COLUMN].reindex(trial_ids).to_numpy(object)
    images = (pd.to_numeric(last[IMAGES_COLUMN], errors="coerce").reindex(trial_ids).to_numpy(float)
              if IMAGES_COLUMN in last else np.full(len(trial_ids), np.nan))
    return pd.Series(key, index=trial_ids.index, dtype=object), pd.Series(images, index=trial_ids.index)


def feature_shares(df: pd.DataFrame, trials: pd.DataFrame, passes: pd.DataFrame | None
                   ) -> tuple[pd.DataFrame, list[str]]:
    """Per trial (aligned with ``trials``): feature_key, feature_images, feature_seconds, feature_gpu_seconds; and
    notes on feature compute no trial could be charged with."""
    key, images = _per_trial(df, trials["trial_id"])
    out = pd.DataFrame({"feature_key": key, "feature_images": images, "feature_seconds": 0.0,
                        "feature_gpu_seconds": 0.0}, index=trials.index)
    notes: list[str] = []
    if passes is None:
        return out, notes
    by_key = passes.groupby("key", sort=False)[["seconds", "gpu_seconds"]].sum()
    has_key = key.notna()
    for k, (seconds, gpu_seconds) in by_key.iterrows():
        mine = has_key & (key == k)
        if not mine.any():
            continue
        # a trial that logged its key without an image count weighs as much as its key's average trial
        weight = images[mine].clip(lower=0)
        weight = weight.fillna(weight.mean() if weight.notna().any() else 1.0)
        share = weight / weight.sum() if weight.sum() > 0 else pd.Series(1.0 / len(weight), index=weight.index)
        out.loc[mine, "feature_seconds"] = seconds * share
        out.loc[mine, "feature_gpu_seconds"] = gpu_seconds * share
    orphan = by_key[~by_key.index.isin(set(key[has_key]))]
    if len(orphan):
        notes.append(f"{len(orphan)} feature pass(es) in {FEATURES_FILE} ({', '.join(orphan.index)}) belong to no "
                     f"trial in the logs: their {orphan['seconds'].sum():.1f} s count in the run's compute but in "
                     "no trial's.")
    unknown = sorted(set(key[has_key]) - set(by_key.index))
    if unknown:
        n = int(key.isin(unknown).sum())
        notes.append(f"{n} trial(s) name a feature pass that {FEATURES_FILE} does not list ({', '.join(unknown)}): "
                     "their feature compute counts as 0.")
    return out, notes
