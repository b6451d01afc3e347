"""Per-trial, per-group and per-epoch tables from the logs that analysis.logs.load_logs returns.

    from analysis.logs import load_logs, group_columns
    from analysis.tables import trial_summary, group_summary, curves
    df = load_logs("runs/stn_mnist"); gcols = group_columns(df)
    trials = trial_summary(df, gcols); groups = group_summary(trials, gcols); curv = curves(df, trials)

Everything is vectorized over trials and rows, no Python loop per trial: df is sorted by
(trial_id, epoch), so each trial is one contiguous block and a trial's integer code is its block number.
Best values and their epochs are chosen in hindsight on the test set. Intervals are 95% Student-t intervals
of the mean across seeds (mean ± t(0.975, n-1) · std / √n, std with ddof=1); none with one seed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.logs import SEED_COLUMN, _formatted, block_starts, config_columns, group_labels

TO_BEST = (0.95, 0.99, 1.0)  # "epochs to reach 95%, 99% and 100% of the trial's best accuracy"
PLATEAU_PP = 0.005  # plateau: first epoch whose best-so-far accuracy is within 0.5 percentage points of the best
# stop_reason values that mean "ended on purpose before the budget by a scheduler/stopper" (sweeps/search.py)
NOT_EARLY_STOPS = {"completed", "diverged", "error"}


def t975(dof: float | np.ndarray) -> float | np.ndarray:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom, scipy.stats.t.ppf(0.975, dof); NaN for
    dof < 1 (one seed has no interval). Takes a number (returns a float) or an array (returns an array)."""
    # scipy.special.stdtrit is the function scipy.stats.t.ppf evaluates (same values); importing it costs a
    # fraction of importing scipy.stats, which the report would otherwise pay on every run.
    from scipy.special import stdtrit

    dof = np.asarray(dof, dtype=float)
    out = np.where(dof >= 1, stdtrit(np.where(dof >= 1, dof, 1.0), 0.975), np.nan)
    return float(out) if out.ndim == 0 else out


def _order_key(col: pd.Series) -> pd.Series:
    """Sort numbers as numbers (10 < 30 < 100) and anything else as text."""
    try:
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().sum() == col.notna().sum():
            return num
    except (TypeError, ValueError):
        pass
    return pd.Series(_formatted(col), index=col.index)


def trial_codes(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, index of each trial's first row): df is sorted by trial_id, so trials are contiguous."""
    new = block_starts(df["trial_id"])
    return np.cumsum(new) - 1, np.flatnonzero(new)


def _first_epoch(mask: np.ndarray, codes: np.ndarray, epoch: np.ndarray, n: int) -> np.ndarray:
    """Per trial, the first epoch where mask holds (NaN when never): rows are in epoch order within a trial."""
    out = np.full(n, np.nan)
    c, e = codes[mask], epoch[mask]
    first = np.ones(len(c), dtype=bool)
    first[1:] = c[1:] != c[:-1]
    out[c[first]] = e[first]
    return out


def gpu_share(df: pd.DataFrame, fallback: float | None = None) -> tuple[pd.Series, str | None]:
    """Per row GPU share and a note when it had to be assumed (logs written before the gpus column existed)."""
    if "gpus" in df and df["gpus"].notna().any():
        missing = df["gpus"].isna()
        note = None
        if missing.any():
            note = (f"{df.loc[missing, 'trial_id'].nunique()} trial(s) have no gpus value in their logs (written "
                    f"before the column existed): their GPU share counts as {fallback or 0:g}.")
        return df["gpus"].astype(float).fillna(fallback or 0.0), note
    if fallback is not None:
        return pd.Series(float(fallback), index=df.index), (
            f"The logs carry no gpus column: the GPU share {fallback:g} per trial comes from sweep.json.")
    return pd.Series(0.0, index=df.index), ("The logs carry no gpus column (written before it existed): GPU share "
                                            "counts as 0, so GPU-seconds are 0 and compute is shown in seconds.")


def trial_summary(df: pd.DataFrame, gcols: list[str], gpus: pd.Series | None = None) -> pd.DataFrame:
    """One row per trial: config, group, epochs, status, stop reason, best/final accuracy and loss with their
    epochs, epochs to 95/99/100% of the best, epochs to plateau, seconds and GPU-seconds, per-variant results."""
    codes, starts = trial_codes(df)
    n = len(starts)
    ends = np.append(starts[1:], len(df)) - 1
    epoch = df["epoch"].to_numpy()
    by = df.groupby(codes, sort=True)
    cfg = config_columns(df)
    out = df.iloc[ends][["trial_id", *cfg]].reset_index(drop=True)  # config is constant within a trial
    out.insert(1, "group", group_labels(out, gcols))
    out["epochs"] = np.diff(np.append(starts, len(df)))
    out["last_epoch"] = epoch[ends]
    budget = pd.to_numeric(out["config/epochs"], errors="coerce") if "config/epochs" in out else None
    out["budget"] = (budget.fillna(epoch.max()) if budget is not None else pd.Series(epoch.max(), index=out.index))
    for col, missing in (("status", "unknown"), ("stop_reason", None)):
        out[col] = by[col].last().to_numpy() if col in df else missing  # last non-null: where the trial ended
    out["status"] = out["status"].fillna("unknown")
    for metric, name, better in (("test_acc", "acc", np.fmax), ("test_loss", "loss", np.fmin)):
        values = df[metric].to_numpy(dtype=float)
        best = (by[metric].max() if better is np.fmax else by[metric].min()).to_numpy()
        out[f"best_{metric}"] = best
        out[f"best_{name}_epoch"] = pd.array(_first_epoch(values == best[codes], codes, epoch, n), dtype="Int64")
    acc = df["test_acc"].to_numpy(dtype=float)
    best = out["best_test_acc"].to_numpy()
    for frac in TO_BEST:
        # 1e-12: 0.95 * best can round above a value equal to it in binary floating point
        out[f"epochs_to_{round(frac * 100)}pct"] = _first_epoch(acc >= frac * best[codes] - 1e-12, codes, epoch, n)
    out["epochs_to_plateau"] = _first_epoch(acc >= best[codes] - PLATEAU_PP - 1e-12, codes, epoch, n)
    for col in ["test_acc"] + variant_columns(df):
        out[f"final_{col}"] = by[col].last().to_numpy()  # last non-null value: the accuracy the trial ended with
        if col != "test_acc":
            out[f"best_{col}"] = by[col].max().to_numpy()
    seconds = df["epoch_seconds"].astype(float) if "epoch_seconds" in df else pd.Series(np.nan, index=df.index)
    out["total_seconds"] = seconds.groupby(codes).sum(min_count=1).to_numpy()
    share = gpus if gpus is not None else gpu_share(df)[0]
    out["gpus"] = share.groupby(codes).last().to_numpy()
    out["gpu_seconds"] = out["total_seconds"] * out["gpus"]
    reason = out["stop_reason"].astype(object)
    out["stopped_early"] = (reason.notna() & ~reason.isin(NOT_EARLY_STOPS) & (out["last_epoch"] < out["budget"])
                            ).to_numpy()
    keys = [c for c in gcols + [SEED_COLUMN] if c in out]
    out = out.sort_values(keys, key=_order_key, kind="stable") if keys else out
    return out.reset_index(drop=True)


def variant_columns(df: pd.DataFrame) -> list[str]:
    """Per-variant accuracy columns (test_acc/clean, test_acc/elastic, ...), sorted by name."""
    return sorted(c for c in df if c.startswith("test_acc/"))


GROUP_STATS = ["best_test_acc", "best_acc_epoch", "best_test_loss", "best_loss_epoch", "final_test_acc",
               "epochs_to_95pct", "epochs_to_99pct", "epochs_to_plateau", "epochs", "total_seconds", "gpu_seconds"]


def group_summary(trials: pd.DataFrame, gcols: list[str]) -> pd.DataFrame:
    """One row per group (in the trials table's order): config, n_seeds, and per statistic its mean, std (ddof=1)
    and ci95 (half-width of the 95% t-interval of the mean; NaN with one seed)."""
    by = trials.groupby("group", sort=False)
    out = by[gcols].first() if gcols else pd.DataFrame(index=by.size().index)
    n = by.size()
    out["n_seeds"] = n
    variant = [c for c in trials if c.startswith(("best_test_acc/", "final_test_acc/"))]
    stats = trials[GROUP_STATS + variant].apply(pd.to_numeric, errors="coerce").astype(float).groupby(
        trials["group"], sort=False)
    mean, std, count = stats.mean(), stats.std(), stats.count()
    tq = pd.DataFrame(t975(count.to_numpy(float) - 1), index=count.index, columns=count.columns)
    half = tq * std / np.sqrt(count)
    for col in GROUP_STATS + variant:
        out[f"{col}_mean"], out[f"{col}_std"], out[f"{col}_ci95"] = mean[col], std[col], half[col]
    out["stopped_early"] = by["stopped_early"].sum()
    return out.reset_index()


def curves(df: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per group and epoch across seeds: n; mean/std/min/max of test accuracy and loss; the mean best-so-far
    accuracy (best up to this epoch); mean train metrics and per-variant accuracy."""
    codes, starts = trial_codes(df)
    tid_group = trials.set_index("trial_id")["group"]
    order = pd.Index(trials["group"].drop_duplicates())  # groups in the trials table's order, not alphabetical
    gcode = order.get_indexer(tid_group.reindex(df["trial_id"].iloc[starts]))[codes]
    data = pd.DataFrame({"g": gcode, "epoch": df["epoch"].to_numpy(), "test_acc": df["test_acc"].to_numpy(float),
                         "test_loss": df["test_loss"].to_numpy(float)})
    data["best_so_far"] = data["test_acc"].groupby(codes).cummax()
    extra = [m for m in ("train_acc", "train_loss") if m in df] + variant_columns(df)
    for m in extra:
        data[m] = df[m].to_numpy(float)
    stats = {m: ["mean", "std", "min", "max"] for m in ("test_acc", "test_loss")}
    stats["best_so_far"] = ["mean"]
    stats.update({m: ["mean"] for m in extra})
    by = data.groupby(["g", "epoch"], sort=True)
    out = by.agg(stats)
    out.columns = [f"test_acc_best_so_far_{s}" if m == "best_so_far" else f"{m}_{s}" for m, s in out.columns]
    out.insert(0, "n", by.size())
    out = out.reset_index()
    out.insert(0, "group", order.to_numpy()[out.pop("g").to_numpy()])
    return out
