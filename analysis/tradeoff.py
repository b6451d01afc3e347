"""Accuracy gained versus epochs and compute spent, from the tables of analysis.tables (no ray, no torch).

    from analysis.tradeoff import budget_table, pareto, compare_to_baseline, isolation, stop_audit

- budget_table: for every epoch budget E, the accuracy if training had stopped at E, both at epoch E and
  best-so-far (the best epoch up to E, which picks the epoch on the test set: optimistic), for the best group
  and for the average trial, the marginal gain of each extra epoch, and the compute spent up to E.
- Epochs to plateau: the first epoch whose best-so-far accuracy is within PLATEAU_PP (0.5 percentage points)
  of the final best.
- compare_to_baseline: the best group against the baseline group and the median group: Δ accuracy, Δ epochs,
  Δ seconds and Δ GPU-seconds per trial.
- pareto: the trials that no other trial beats on both best accuracy and compute.
- isolation: per varied hyperparameter and value, the best group mean over all other hyperparameters.
- stop_audit: trials a scheduler stopped (stop_reason asha, plateau, ...): compute saved, and each one's
  best-so-far at its stopping epoch against the winner's at the same epoch.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.logs import _formatted
from analysis.tables import PLATEAU_PP, trial_codes


def compute_column(trials: pd.DataFrame) -> str:
    """GPU-seconds when any trial held a GPU share, else seconds (a CPU-only run has no GPU-seconds)."""
    return "gpu_seconds" if (trials["gpu_seconds"].fillna(0) > 0).any() else "total_seconds"


def plateau_epoch(best_so_far: pd.Series, epochs: pd.Series) -> float:
    """First epoch whose best-so-far is within PLATEAU_PP of the last (final) best-so-far; NaN when empty."""
    values = best_so_far.to_numpy(float)
    if not len(values) or np.isnan(values).all():
        return float("nan")
    hit = np.flatnonzero(values >= np.nanmax(values) - PLATEAU_PP - 1e-12)
    return float(epochs.to_numpy()[hit[0]])


def budget_table(df: pd.DataFrame, trials: pd.DataFrame, curv: pd.DataFrame, compute: str) -> pd.DataFrame:
    """One row per epoch budget E (only trials that reached E count at E)."""
    acc = curv.pivot(index="epoch", columns="group", values="test_acc_mean")
    bsf = curv.pivot(index="epoch", columns="group", values="test_acc_best_so_far_mean")
    out = pd.DataFrame(index=acc.index)
    out["trials_at_E"] = curv.groupby("epoch")["n"].sum()
    out["best_group_acc_at_E"] = acc.max(axis=1)
    out["best_group_at_E"] = acc.idxmax(axis=1)
    out["best_group_best_so_far"] = bsf.max(axis=1)
    out["best_group_best_so_far_group"] = bsf.idxmax(axis=1)
    codes, starts = trial_codes(df)
    rows = pd.DataFrame({"epoch": df["epoch"].to_numpy(), "acc": df["test_acc"].to_numpy(float)})
    rows["bsf"] = rows["acc"].groupby(codes).cummax()
    # compute of an epoch: its seconds x the trial's GPU share (the per-trial share repeated on its rows)
    per_row = df["epoch_seconds"].to_numpy(float) if "epoch_seconds" in df else np.full(len(df), np.nan)
    if compute == "gpu_seconds":
        share = trials.set_index("trial_id")["gpus"].reindex(df["trial_id"].iloc[starts]).to_numpy(float)
        per_row = per_row * share[codes]  # looked up once per trial, not once per row
    rows["compute"] = per_row
    by = rows.groupby("epoch")
    out["mean_trial_acc_at_E"] = by["acc"].mean()
    out["mean_trial_best_so_far"] = by["bsf"].mean()
    # marginal gain of the E-th epoch: what one more epoch of budget adds to the best-so-far accuracy
    out["marginal_gain_best_group"] = out["best_group_best_so_far"].diff()
    out["marginal_gain_mean_trial"] = out["mean_trial_best_so_far"].diff()
    out[f"cumulative_{compute}"] = by["compute"].sum(min_count=1).cumsum()  # all trials stopped at E
    final = out["best_group_best_so_far"].iloc[-1]
    out["share_of_final_best"] = out["best_group_best_so_far"] / final if final else np.nan
    return out.reset_index().rename(columns={"epoch": "E"})


def pareto(trials: pd.DataFrame, compute: str) -> pd.Series:
    """Boolean per trial: True when no other trial has >= best accuracy at <= compute (one strictly better).
    Of trials with equal compute and accuracy, the first in table order stands for them."""
    data = trials[[compute, "best_test_acc"]].astype(float)
    ok = data.notna().all(axis=1)
    d = data[ok].sort_values([compute, "best_test_acc"], ascending=[True, False], kind="stable")
    prev_best = d["best_test_acc"].cummax().shift(fill_value=-np.inf)
    front = d.index[d["best_test_acc"].to_numpy() > prev_best.to_numpy()]
    return pd.Series(trials.index.isin(front), index=trials.index)


def choose_baseline(groups: pd.DataFrame, gcols: list[str], first_config: dict | None,
                    label: str | None = None) -> tuple[str | None, str]:
    """(group label, why): --baseline LABEL; else the group of sweep.json's first config (a search enqueues the
    paper's configuration first, a grid lists its first point first); else the first group of the table."""
    if label is not None:
        if label in set(groups["group"]):
            return label, "given with --baseline"
        return None, f"--baseline {label!r} matches no group"
    if first_config and gcols:
        want = {c: _formatted(pd.Series([first_config.get(c.removeprefix("config/"))]))[0] for c in gcols}
        match = np.ones(len(groups), dtype=bool)
        for c, v in want.items():
            match &= _formatted(groups[c]) == v
        if match.any():
            return groups["group"][match].iloc[0], "the first configuration in sweep.json (the study's baseline)"
    return groups["group"].iloc[0], "the first group in the table (no sweep.json configuration matched)"


DELTA_STATS = {"best_test_acc_mean": "Δ best acc", "final_test_acc_mean": "Δ final acc",
               "epochs_mean": "Δ epochs run", "best_acc_epoch_mean": "Δ epoch of best",
               "epochs_to_plateau_mean": "Δ epochs to plateau", "total_seconds_mean": "Δ seconds / trial",
               "gpu_seconds_mean": "Δ GPU-seconds / trial"}


def compare_to_baseline(groups: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """The best group (by mean best accuracy) against the baseline and against the median group."""
    ranked = groups.sort_values("best_test_acc_mean", ascending=False, kind="stable").reset_index(drop=True)
    best = ranked.iloc[0]
    refs = []
    if baseline is not None:
        refs.append(("baseline", groups.set_index("group").loc[baseline].rename(baseline)))
    median = ranked.iloc[(len(ranked) - 1) // 2]  # the lower median: an existing group, not an average
    refs.append(("median group", median.rename(median["group"])))
    rows = []
    for name, ref in refs:
        ref_group = ref["group"] if "group" in ref else ref.name
        row = {"comparison": f"best vs {name}", "best group": best["group"], "reference group": ref_group,
               "best acc (best)": best["best_test_acc_mean"], "best acc (reference)": ref["best_test_acc_mean"]}
        for col, title in DELTA_STATS.items():
            row[title] = best[col] - ref[col]
        rows.append(row)
    return pd.DataFrame(rows)


def isolation(groups: pd.DataFrame, gcols: list[str]) -> pd.DataFrame:
    """Per varied hyperparameter and value: the best group mean best accuracy over all the other
    hyperparameters, which group that is, and how many groups hold that value."""
    parts = []
    for col in gcols:
        text = pd.Series(_formatted(groups[col]), index=groups.index)
        by = groups.groupby(text, sort=False)
        best = by["best_test_acc_mean"].idxmax().dropna()
        part = pd.DataFrame({"param": col.removeprefix("config/"), "value": best.index,
                             "best_group_acc": groups.loc[best.to_numpy(), "best_test_acc_mean"].to_numpy(),
                             "best_group": groups.loc[best.to_numpy(), "group"].to_numpy(),
                             "n_groups": by.size().reindex(best.index).to_numpy()})
        num = pd.to_numeric(groups.loc[best.to_numpy(), col], errors="coerce").to_numpy()
        part["numeric_value"] = num
        parts.append(part.sort_values(["numeric_value", "value"], kind="stable") if not np.isnan(num).all() else part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["param", "value", "best_group_acc", "best_group", "n_groups", "numeric_value"])


def stop_audit(df: pd.DataFrame, trials: pd.DataFrame, compute: str) -> tuple[pd.DataFrame, dict] | None:
    """Per early-stopped trial: stopping epoch, epochs/seconds/GPU-seconds saved against running to its budget
    (seconds saved = epochs not run x the trial's mean epoch seconds: an estimate), its accuracy and best-so-far at
    the stopping epoch, and the winner's at the same epoch. The winner is the trial with the best accuracy among
    those that ran their full budget (any trial if none did). None when no trial was stopped early."""
    stopped = trials[trials["stopped_early"]]
    if stopped.empty:
        return None
    full = trials[~trials["stopped_early"] & (trials["last_epoch"] >= trials["budget"])]
    pool = full if len(full) else trials
    winner = pool.loc[pool["best_test_acc"].astype(float).idxmax()]
    w = df[df["trial_id"] == winner["trial_id"]].set_index("epoch")["test_acc"].astype(float)
    w_bsf = w.cummax()
    codes, starts = trial_codes(df)
    ends = np.append(starts[1:], len(df)) - 1
    last = pd.DataFrame({"trial_id": df["trial_id"].iloc[ends].to_numpy(), "acc": df["test_acc"].to_numpy(float)[ends]})
    last = last.set_index("trial_id").reindex(stopped["trial_id"])
    out = stopped[["trial_id", "group", "stop_reason", "last_epoch", "budget", "best_test_acc", "total_seconds",
                   "gpus"]].rename(columns={"last_epoch": "stop_epoch", "best_test_acc": "best_so_far_at_stop"})
    out = out.reset_index(drop=True)
    out["acc_at_stop"] = last["acc"].to_numpy()
    out["epochs_saved"] = out["budget"] - out["stop_epoch"]
    per_epoch = stopped["total_seconds"].to_numpy(float) / stopped["epochs"].to_numpy(float)
    out["seconds_saved"] = out["epochs_saved"].to_numpy(float) * per_epoch
    out["gpu_seconds_saved"] = out["seconds_saved"] * out["gpus"].fillna(0)
    out["winner_acc_at_stop"] = w.reindex(out["stop_epoch"]).to_numpy()
    out["winner_best_so_far_at_stop"] = w_bsf.reindex(out["stop_epoch"]).to_numpy()
    out["gap_to_winner"] = out["best_so_far_at_stop"] - out["winner_best_so_far_at_stop"]
    out["ahead_of_winner"] = out["gap_to_winner"] > 0
    spent = trials[compute].sum()
    saved = out["gpu_seconds_saved" if compute == "gpu_seconds" else "seconds_saved"].sum()
    facts = {
        "stopped": len(out), "trials": len(trials), "reasons": out["stop_reason"].value_counts().to_dict(),
        "epochs_run": int(trials["epochs"].sum()), "epochs_saved": int(out["epochs_saved"].sum()),
        "compute": compute, "compute_spent": float(spent), "compute_saved": float(saved),
        "saved_share": float(saved / (spent + saved)) if spent + saved else float("nan"),
        "winner": winner["trial_id"], "winner_group": winner["group"], "winner_best": float(winner["best_test_acc"]),
        "ahead": int(out["ahead_of_winner"].sum()),
        "stopped_max_best": float(out["best_so_far_at_stop"].max()),
    }
    return out, facts
