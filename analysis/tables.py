"""Per-trial, per-group and per-epoch tables from the logs that analysis.logs.load_logs returns.

    from analysis.logs import load_logs, group_columns
    from analysis.tables import trial_summary, group_summary, curves
    df = load_logs("runs/stn_mnist"); gcols = group_columns(df)
    trials = trial_summary(df, gcols); groups = group_summary(trials, gcols); curv = curves(df, trials)

Everything is vectorized over trials and rows, no Python loop per trial: df is sorted by
(trial_id, epoch), so each trial is one contiguous block and a trial's integer code is its block number.
Validation chooses, test reports: a trial whose rows have ``val_acc`` (the held-out validation split) gets its
best epoch by val_acc (ties to the lower val_loss, then the earliest: ``validation_order``) and its "best" test
accuracy is the test accuracy AT that epoch (loss: the same with val_loss); groups and trials are ranked by
validation (rank_column) when every trial has it. A trial without val_acc (old logs, val_per_class 0) has its best
values and epochs chosen in hindsight on the test set; ``chosen_on`` says which per trial and per group.
Intervals are 95% Student-t intervals of the mean across seeds (mean ± t(0.975, n-1) · std / √n, std with
ddof=1); none with one seed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.logs import SEED_COLUMN, _formatted, block_starts, config_columns, group_labels

TO_BEST = (0.95, 0.99, 1.0)  # "epochs to reach 95%, 99% and 100% of the trial's best accuracy"
PLATEAU_PP = 0.005  # plateau: first epoch whose best-so-far accuracy is within 0.5 percentage points of the best
PHASE_COLUMN = "phase"  # "search" or "confirm" in a search's logs; a missing column or value means "search"
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


def _first_row(mask: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Per trial, the first row where mask holds (-1 when never): rows are in epoch order within a trial."""
    out = np.full(n, -1, dtype=np.int64)
    rows = np.flatnonzero(mask)
    c = codes[rows]
    first = np.ones(len(c), dtype=bool)
    first[1:] = c[1:] != c[:-1]
    out[c[first]] = rows[first]
    return out


def chosen_on(frame: pd.DataFrame) -> str:
    """"validation" when every trial (or group) of ``frame`` chose its best epoch on val_acc, "test" when none
    did, "mixed" otherwise (then trials and groups are ranked on the test set)."""
    val = (frame["chosen_on"] == "val") if "chosen_on" in frame else pd.Series(False, index=frame.index)
    return "validation" if len(val) and val.all() else "mixed" if val.any() else "test"


def rank_column(frame: pd.DataFrame) -> str:
    """The column that ranks trials (best_val_acc) or groups (best_val_acc_mean) when every one chose on the
    validation split, else the test-set one (best_test_acc / best_test_acc_mean)."""
    mean = "_mean" if "best_test_acc_mean" in frame else ""
    return f"best_val_acc{mean}" if chosen_on(frame) == "validation" else f"best_test_acc{mean}"


def choice_phrase(frame: pd.DataFrame) -> str:
    """How the best epochs of ``frame``'s trials were chosen, for captions and notes."""
    return {"validation": "chosen on the validation split (val_acc), with the test accuracy shown at that epoch",
            "mixed": "chosen on the validation split where the logs have one, else in hindsight on the test set",
            "test": "chosen in hindsight on the test set"}[chosen_on(frame)]


def validation_order(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(rank per row, rows by rank): the order in which validation prefers a trial's epochs. Higher val_acc
    first; an accuracy on a few hundred images moves in steps, so epochs tie, and the lower val_loss (the same
    split, finer grained) breaks the tie, as it does between configurations; then the earlier epoch. Rows without
    val_acc come last, a missing val_loss after any value."""
    val = df["val_acc"].to_numpy(float)
    loss = df["val_loss"].to_numpy(float) if "val_loss" in df else np.full(len(df), np.nan)
    order = np.lexsort((np.arange(len(df)), np.where(np.isnan(loss), np.inf, loss),
                        np.where(np.isnan(val), np.inf, -val)))
    rank = np.empty(len(df), dtype=np.int64)
    rank[order] = np.arange(len(df))
    return rank, order


def chosen_so_far(df: pd.DataFrame, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (test accuracy at the trial's best epoch up to this one, best val_acc up to this one). The best
    epoch is chosen on val_acc (ties as in validation_order) in trials that have it, else on test_acc (then the
    first value is the best test accuracy so far); the second array is NaN without val_acc."""
    test = pd.Series(df["test_acc"].to_numpy(float))
    by_test = test.groupby(codes).cummax().to_numpy()
    if "val_acc" not in df:
        return by_test, np.full(len(df), np.nan)
    val = pd.Series(df["val_acc"].to_numpy(float))
    best = val.groupby(codes).cummax().groupby(codes).ffill()  # cummax leaves NaN where val is missing
    rank, order = validation_order(df)
    choice = order[pd.Series(rank).groupby(codes).cummin().to_numpy()]  # the preferred row up to this one
    at_choice = np.where(np.isnan(val.to_numpy()[choice]), np.nan, test.to_numpy()[choice])
    has_val = val.notna().groupby(codes).transform("any").to_numpy()
    return np.where(has_val, at_choice, by_test), best.to_numpy()


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
    epochs (chosen on val_acc/val_loss where the trial has them: best_val_acc, best_val_loss and chosen_on say
    so), epochs to 95/99/100% of the best, epochs to plateau, seconds and GPU-seconds, per-variant results."""
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
    if PHASE_COLUMN in df:
        out[PHASE_COLUMN] = pd.Series(by[PHASE_COLUMN].last().to_numpy(), dtype=object).fillna("search").to_numpy()
    out["status"] = out["status"].fillna("unknown")
    chosen_rows = None
    for metric, name, val, maximize in (("test_acc", "acc", "val_acc", True), ("test_loss", "loss", "val_loss", False)):
        row = _best_rows(df, by, metric, maximize, codes, n)
        if val in df:  # validation chooses the epoch wherever the trial has it; the test value is read there
            vrow = _validation_rows(df, codes) if val == "val_acc" else _best_rows(df, by, val, maximize, codes, n)
            out[f"best_{val}"] = np.where(vrow >= 0, df[val].to_numpy(float)[np.maximum(vrow, 0)], np.nan)
            row = np.where(vrow >= 0, vrow, row)
            if name == "acc":
                out["chosen_on"] = np.where(vrow >= 0, "val", "test")
        else:
            out[f"best_{val}"] = np.nan
            if name == "acc":
                out["chosen_on"] = "test"
        ok = row >= 0
        out[f"best_{metric}"] = np.where(ok, df[metric].to_numpy(float)[np.maximum(row, 0)], np.nan)
        out[f"best_{name}_epoch"] = pd.array(np.where(ok, epoch[np.maximum(row, 0)], np.nan), dtype="Int64")
        if name == "acc":
            chosen_rows = row
    acc = df["test_acc"].to_numpy(dtype=float)
    best = out["best_test_acc"].to_numpy()
    for frac in TO_BEST:
        # 1e-12: 0.95 * best can round above a value equal to it in binary floating point
        out[f"epochs_to_{round(frac * 100)}pct"] = _first_epoch(acc >= frac * best[codes] - 1e-12, codes, epoch, n)
    out["epochs_to_plateau"] = _first_epoch(acc >= best[codes] - PLATEAU_PP - 1e-12, codes, epoch, n)
    by_val = (out["chosen_on"] == "val").to_numpy()
    for col in ["test_acc"] + variant_columns(df):
        out[f"final_{col}"] = by[col].last().to_numpy()  # last non-null value: the accuracy the trial ended with
        if col != "test_acc":  # at the epoch chosen on validation, else the variant's own best
            at_choice = df[col].to_numpy(float)[np.maximum(chosen_rows, 0)]
            out[f"best_{col}"] = np.where(by_val, at_choice, by[col].max().to_numpy())
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


def _best_rows(df: pd.DataFrame, by, metric: str, maximize: bool, codes: np.ndarray, n: int) -> np.ndarray:
    """Per trial, the row of its best ``metric`` (earliest on ties; -1 when the trial has no value)."""
    best = (by[metric].max() if maximize else by[metric].min()).to_numpy()
    return _first_row(df[metric].to_numpy(float) == best[codes], codes, n)  # NaN never equals: -1


def _validation_rows(df: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
    """Per trial, the row validation prefers (validation_order; -1 when the trial has no val_acc)."""
    rank, order = validation_order(df)
    rows = order[pd.Series(rank).groupby(codes).min().to_numpy()]
    return np.where(np.isnan(df["val_acc"].to_numpy(float)[rows]), -1, rows)


def variant_columns(df: pd.DataFrame) -> list[str]:
    """Per-variant accuracy columns (test_acc/clean, test_acc/elastic, ...), sorted by name."""
    return sorted(c for c in df if c.startswith("test_acc/"))


ACCURACY_STATS = ("best_test_acc", "best_val_acc", "final_test_acc")  # the trials table's accuracies (fractions)
VARIANT_STATS = ("best_test_acc/", "final_test_acc/")  # ... and its per-variant ones: best_test_acc/<variant>, ...
GROUP_SUFFIXES = ("_mean", "_std", "_ci95")  # a per-group statistic's columns (group_summary, the size effect)


def accuracy_columns(frame: pd.DataFrame) -> list[str]:
    """The accuracy columns (fractions) of a trials table, or of per-group statistics of one (groups.csv,
    size_effect.csv): ACCURACY_STATS and the per-variant accuracies, as they are or with a GROUP_SUFFIXES suffix
    (a std or an interval's half-width of accuracies is in the same unit). The pages show them in percent; the
    CSVs mark them (analysis.render.csv_bytes)."""
    def accuracy(stat: str) -> bool:
        return stat in ACCURACY_STATS or stat.startswith(VARIANT_STATS)
    return [c for c in frame.columns if accuracy(c) or any(c.endswith(s) and accuracy(c.removesuffix(s))
                                                           for s in GROUP_SUFFIXES)]


GROUP_STATS = ["best_test_acc", "best_val_acc", "best_acc_epoch", "best_test_loss", "best_loss_epoch",
               "final_test_acc", "epochs_to_95pct", "epochs_to_99pct", "epochs_to_plateau", "epochs", "total_seconds",
               "gpu_seconds", "feature_seconds", "feature_gpu_seconds", "compute_seconds", "compute_gpu_seconds"]


def group_summary(trials: pd.DataFrame, gcols: list[str]) -> pd.DataFrame:
    """One row per group (in the trials table's order): config, n_seeds, and per statistic its mean, std (ddof=1)
    and ci95 (half-width of the 95% t-interval of the mean; NaN with one seed)."""
    by = trials.groupby("group", sort=False)
    out = by[gcols].first() if gcols else pd.DataFrame(index=by.size().index)
    n = by.size()
    out["n_seeds"] = n
    variant = [c for c in trials if c.startswith(VARIANT_STATS)]
    cols = [c for c in GROUP_STATS if c in trials] + variant  # the compute columns come from analysis.run
    stats = trials[cols].apply(pd.to_numeric, errors="coerce").astype(float).groupby(
        trials["group"], sort=False)
    mean, std, count = stats.mean(), stats.std(), stats.count()
    tq = pd.DataFrame(t975(count.to_numpy(float) - 1), index=count.index, columns=count.columns)
    half = tq * std / np.sqrt(count)
    for col in cols:
        out[f"{col}_mean"], out[f"{col}_std"], out[f"{col}_ci95"] = mean[col], std[col], half[col]
    out["stopped_early"] = by["stopped_early"].sum()
    out["chosen_on"] = np.where((trials["chosen_on"] == "val").groupby(trials["group"], sort=False).all(), "val",
                                "test")
    return out.reset_index()


def curves(df: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per group and epoch across seeds: n; mean/std/min/max of test accuracy and loss; the mean best-so-far
    accuracy (test accuracy at the best epoch up to this one, chosen as in chosen_so_far) and, with val_acc, the
    mean best-so-far val_acc; mean train and validation metrics and per-variant accuracy."""
    codes, starts = trial_codes(df)
    tid_group = trials.set_index("trial_id")["group"]
    order = pd.Index(trials["group"].drop_duplicates())  # groups in the trials table's order, not alphabetical
    gcode = order.get_indexer(tid_group.reindex(df["trial_id"].iloc[starts]))[codes]
    data = pd.DataFrame({"g": gcode, "epoch": df["epoch"].to_numpy(), "test_acc": df["test_acc"].to_numpy(float),
                         "test_loss": df["test_loss"].to_numpy(float)})
    data["best_so_far"], val_so_far = chosen_so_far(df, codes)
    extra = [m for m in ("train_acc", "train_loss", "val_acc", "val_loss") if m in df] + variant_columns(df)
    for m in extra:
        data[m] = df[m].to_numpy(float)
    stats = {m: ["mean", "std", "min", "max"] for m in ("test_acc", "test_loss")}
    stats["best_so_far"] = ["mean"]
    if "val_acc" in df:
        data["val_best_so_far"] = val_so_far
        stats["val_best_so_far"] = ["mean"]
    stats.update({m: ["mean"] for m in extra})
    by = data.groupby(["g", "epoch"], sort=True)
    out = by.agg(stats)
    out.columns = [f"test_acc_best_so_far_{s}" if m == "best_so_far" else f"val_acc_best_so_far_{s}"
                   if m == "val_best_so_far" else f"{m}_{s}" for m, s in out.columns]
    out.insert(0, "n", by.size())
    out = out.reset_index()
    out.insert(0, "group", order.to_numpy()[out.pop("g").to_numpy()])
    return out


# curves' accuracy columns (fractions) besides the per-variant means (test_acc/<variant>_mean)
CURVE_ACCURACIES = ("test_acc_mean", "test_acc_std", "test_acc_min", "test_acc_max", "test_acc_best_so_far_mean",
                    "val_acc_best_so_far_mean", "train_acc_mean", "val_acc_mean")


def curve_accuracies(curv: pd.DataFrame) -> list[str]:
    """The accuracy columns of a curves table (fractions; curves.csv marks them)."""
    return [c for c in curv.columns if c in CURVE_ACCURACIES or c.startswith("test_acc/")]
