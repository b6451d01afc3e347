"""Accuracy gained versus epochs and compute spent, from the tables of analysis.tables (no ray, no torch).

    from analysis.tradeoff import budget_table, pareto, compare_to_baseline, isolation, stop_audit, tuned_vs_baseline

"Best" follows analysis.tables: the epoch (and the best group or trial) is chosen on the validation split when
every trial has val_acc, and the accuracy reported is the test accuracy at that epoch; without val_acc the choice
is made in hindsight on the test set (optimistic).

- budget_table: for every epoch budget E, the accuracy if training had stopped at E, both at epoch E and
  best-so-far (the best epoch up to E), for the best group and for the average trial, the marginal gain of each
  extra epoch, and the compute spent up to E (the feature pass, paid before epoch 1, included).
- Epochs to plateau: the first epoch whose best-so-far accuracy is within PLATEAU_PP (0.5 percentage points)
  of the final best.
- compare_to_baseline: the best group against the baseline group and the median group: Δ accuracy, Δ epochs,
  Δ seconds and Δ GPU-seconds per trial (training + feature-pass share); no Δ against a baseline that did not run
  its whole epoch budget (baseline_unfinished says why).
- tuned_vs_baseline: the search's headline: the winning configuration against the baseline on the confirm phase's
  trials only (a Welch t interval on the difference of mean test accuracies), or, without a confirm phase, on the
  search's own trials (optimistic).
- pareto: the trials that no other trial beats on both best accuracy and compute.
- isolation: per varied hyperparameter and value, the best group mean over all other hyperparameters.
- stop_audit: trials a scheduler stopped (stop_reason asha, plateau, ...): compute saved, and each one's
  best-so-far at its stopping epoch against the winner's at the same epoch.

Accuracies are fractions throughout; each table's *_ACCURACIES names its accuracy columns (differences of
accuracies included), which the report's CSVs mark " [fraction]" and its pages show in percent.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.logs import SEED_COLUMN, _formatted, group_labels
from analysis.tables import PHASE_COLUMN, PLATEAU_PP, chosen_on, chosen_so_far, group_summary, rank_column, t975, \
    trial_codes


def compute_column(trials: pd.DataFrame) -> str:
    """The trials table's compute column (training + feature-pass share, analysis.run): GPU-seconds when any trial
    or feature pass held a GPU share, else seconds (a CPU-only run has no GPU-seconds)."""
    return "compute_gpu_seconds" if (trials["compute_gpu_seconds"].fillna(0) > 0).any() else "compute_seconds"


def plateau_epoch(best_so_far: pd.Series, epochs: pd.Series) -> float:
    """First epoch whose best-so-far is within PLATEAU_PP of the last (final) best-so-far; NaN when empty."""
    values = best_so_far.to_numpy(float)
    if not len(values) or np.isnan(values).all():
        return float("nan")
    hit = np.flatnonzero(values >= np.nanmax(values) - PLATEAU_PP - 1e-12)
    return float(epochs.to_numpy()[hit[0]])


def _pick(pick: pd.DataFrame, show: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row (epoch): the column (group) with the highest value in ``pick`` and its value in ``show``."""
    col = np.nan_to_num(pick.to_numpy(float), nan=-np.inf).argmax(axis=1)
    groups = pick.columns.to_numpy()[col]
    values = show.to_numpy(float)[np.arange(len(show)), show.columns.get_indexer(groups)]
    return pd.Series(values, index=pick.index), pd.Series(groups, index=pick.index)


# budget_table's accuracy columns (fractions; marginal gains are differences of them). Not share_of_final_best:
# a ratio of two accuracies, without a unit.
BUDGET_ACCURACIES = ("best_group_acc_at_E", "best_group_best_so_far", "marginal_gain_best_group",
                     "mean_trial_acc_at_E", "mean_trial_best_so_far", "marginal_gain_mean_trial")


def budget_table(df: pd.DataFrame, trials: pd.DataFrame, curv: pd.DataFrame, compute: str,
                 fixed: float = 0.0) -> pd.DataFrame:
    """One row per epoch budget E (only trials that reached E count at E). The best group at E is chosen on mean
    val_acc when every trial has it (and its mean test accuracy shown), else on mean test accuracy. ``fixed``:
    compute paid whatever the budget (the feature pass), added to the cumulative compute at every E."""
    acc = curv.pivot(index="epoch", columns="group", values="test_acc_mean")
    bsf = curv.pivot(index="epoch", columns="group", values="test_acc_best_so_far_mean")
    by_val = chosen_on(trials) == "validation" and "val_acc_mean" in curv
    pick_acc = curv.pivot(index="epoch", columns="group", values="val_acc_mean") if by_val else acc
    pick_bsf = curv.pivot(index="epoch", columns="group", values="val_acc_best_so_far_mean") if by_val else bsf
    out = pd.DataFrame(index=acc.index)
    out["trials_at_E"] = curv.groupby("epoch")["n"].sum()
    out["best_group_acc_at_E"], out["best_group_at_E"] = _pick(pick_acc, acc)
    out["best_group_best_so_far"], out["best_group_best_so_far_group"] = _pick(pick_bsf, bsf)
    codes, starts = trial_codes(df)
    rows = pd.DataFrame({"epoch": df["epoch"].to_numpy(), "acc": df["test_acc"].to_numpy(float)})
    rows["bsf"] = chosen_so_far(df, codes)[0]
    # compute of an epoch: its seconds x the trial's GPU share (the per-trial share repeated on its rows)
    per_row = df["epoch_seconds"].to_numpy(float) if "epoch_seconds" in df else np.full(len(df), np.nan)
    if compute == "compute_gpu_seconds":
        share = trials.set_index("trial_id")["gpus"].reindex(df["trial_id"].iloc[starts]).to_numpy(float)
        per_row = per_row * share[codes]  # looked up once per trial, not once per row
    rows["compute"] = per_row
    by = rows.groupby("epoch")
    out["mean_trial_acc_at_E"] = by["acc"].mean()
    out["mean_trial_best_so_far"] = by["bsf"].mean()
    # marginal gain of the E-th epoch: what one more epoch of budget adds to the best-so-far accuracy
    out["marginal_gain_best_group"] = out["best_group_best_so_far"].diff()
    out["marginal_gain_mean_trial"] = out["mean_trial_best_so_far"].diff()
    out[f"cumulative_{compute}"] = by["compute"].sum(min_count=1).cumsum() + fixed  # all trials stopped at E
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


EARLY_STOP_WORDS = {None: "had not finished", "error": "ended with an error", "diverged": "diverged",
                    "completed": "ended"}


def baseline_unfinished(trials: pd.DataFrame, group: str | None) -> str | None:
    """Why the group's trials did not all run their full epoch budget (config/epochs), as a sentence saying no
    fair comparison exists; None when they all did. A baseline cut short by ASHA or the plateau stopper scores
    its first epochs, not the configuration as published."""
    if group is None:
        return None
    t = trials[trials["group"] == group]
    reason = t["stop_reason"].astype(object).where(t["stop_reason"].notna(), None)
    short = t[(t["last_epoch"] < t["budget"]) | t["stopped_early"] | (reason == "error")]
    if short.empty:
        return None
    first = short.loc[short["last_epoch"].astype(float).idxmin()]  # the earliest stop speaks for them
    why = first["stop_reason"] if isinstance(first["stop_reason"], str) else None
    how = EARLY_STOP_WORDS.get(why, f"was stopped early (by {why})")
    seeds = f" ({len(short)} of {len(t)} trials)" if len(t) > 1 else ""
    return (f"The baseline ({group}) {how} at epoch {int(first['last_epoch'])} of {int(first['budget'])}{seeds}, "
            "so no fair comparison exists.")


DELTA_STATS = {"best_test_acc_mean": "Δ best acc", "final_test_acc_mean": "Δ final acc",
               "epochs_mean": "Δ epochs run", "best_acc_epoch_mean": "Δ epoch of best",
               "epochs_to_plateau_mean": "Δ epochs to plateau", "compute_seconds_mean": "Δ seconds / trial",
               "compute_gpu_seconds_mean": "Δ GPU-seconds / trial"}


# compare_to_baseline's accuracy columns: the two sides' mean best accuracies and their differences
COMPARISON_ACCURACIES = ("best acc (best)", "best acc (reference)", DELTA_STATS["best_test_acc_mean"],
                         DELTA_STATS["final_test_acc_mean"])


def compare_to_baseline(groups: pd.DataFrame, baseline: str | None, trials: pd.DataFrame | None = None,
                        best: str | None = None) -> pd.DataFrame:
    """The best group (by mean best val_acc, or mean best test accuracy without validation; see rank_column; or
    the group ``best`` names, such as a search's confirmed winner) against the baseline and against the median
    group (of an even number of groups, the upper middle one). With ``trials``, a baseline whose trials did not
    all run their full budget gets no Δ and no accuracy, and its row's note says why (baseline_unfinished)."""
    key = rank_column(groups)
    ranked = groups.sort_values(key, ascending=False, kind="stable").reset_index(drop=True)
    best = ranked.iloc[0] if best is None else groups.set_index("group", drop=False).loc[best]
    refs = []
    if baseline is not None:
        refs.append(("baseline", groups.set_index("group").loc[baseline].rename(baseline)))
    # an existing group, not an average: the middle one by rank, or with an even count the better of the two
    # middle ones (the row's name says so)
    median = ranked.iloc[(len(ranked) - 1) // 2]
    refs.append(("median group" if len(ranked) % 2 else "median group (upper of two)",
                 median.rename(median["group"])))
    rows = []
    for name, ref in refs:
        ref_group = ref["group"] if "group" in ref else ref.name
        unfair = baseline_unfinished(trials, ref_group) if name == "baseline" and trials is not None else None
        row = {"comparison": f"best vs {name}", "best group": best["group"], "reference group": ref_group,
               "best acc (best)": best["best_test_acc_mean"],
               "best acc (reference)": np.nan if unfair else ref["best_test_acc_mean"]}
        for col, title in DELTA_STATS.items():
            row[title] = np.nan if unfair else best[col] - ref[col]
        row["note"] = unfair or ""
        rows.append(row)
    return pd.DataFrame(rows)


def phases(trials: pd.DataFrame) -> pd.Series:
    """Each trial's phase, "search" where the logs have no phase column or no value."""
    if PHASE_COLUMN not in trials:
        return pd.Series("search", index=trials.index)
    return trials[PHASE_COLUMN].astype(object).where(trials[PHASE_COLUMN].notna(), "search")


def welch_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(a) - mean(b), lower, upper): the 95% Welch two-sample t interval of the difference of means, as
    scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval() gives it; NaN bounds with fewer than two
    values on a side (or no spread on either)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return diff, float("nan"), float("nan")
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    half = t975(dof) * np.sqrt(va + vb)
    return diff, diff - half, diff + half


PER_SEED_ACCURACIES = ("baseline_test_acc", "winner_test_acc")  # tuned_vs_baseline's per_seed table


def tuned_vs_baseline(trials: pd.DataFrame, gcols: list[str], compute: str, first_config: dict | None,
                      label: str | None = None) -> dict:
    """The search's answer to "was tuning worth it?", from the confirm phase's trials only when there are any
    (source "confirm"), else from the search's own trials (source "search": optimistic, since the winner is
    picked on the trials that score it). Keys: source, baseline, why (how it was chosen), winner, chosen_on
    ("validation" or the test set's fallback), candidates (non-baseline groups), unfinished (the sentence of
    baseline_unfinished, or None), problem (why there is no comparison, or None); and with a comparison: n_winner,
    n_baseline, diff_pp, lo_pp, hi_pp (Welch 95% interval, percentage points), epochs_ratio (mean epochs run per
    trial), compute_ratio (mean ``compute`` per trial), per_seed (one row per seed: each side's test accuracy
    at its val-chosen epoch); with a winner, ranked (every configuration of the pool, see _ranked)."""
    phase = phases(trials)
    confirm = trials[phase == "confirm"]
    pool = confirm if len(confirm) else trials[phase != "confirm"]
    out = {"source": "confirm" if len(confirm) else "search", "baseline": None, "why": "", "winner": None,
           "chosen_on": chosen_on(pool), "candidates": 0, "unfinished": None, "problem": None}
    cols = [c for c in gcols if c != f"config/{PHASE_COLUMN}"]  # a phase kept in the config is no hyperparameter
    pool = pool.assign(group=group_labels(pool, cols))
    groups = group_summary(pool, cols)
    base, out["why"] = choose_baseline(groups, cols, first_config, label)
    out["baseline"] = base
    others = groups[groups["group"] != base]
    out["candidates"] = len(others)
    if base is None:
        out["problem"] = f"no baseline among the {out['source']} trials ({out['why']})"
        return out
    if others.empty:
        out["problem"] = f"the {out['source']} trials hold the baseline configuration only"
        return out
    rank = rank_column(groups)
    winner = _top(others, rank, pool)
    out["winner"] = winner
    out["ranked"] = _ranked(groups, rank, base, winner)
    out["unfinished"] = baseline_unfinished(pool, base)
    if out["unfinished"] is not None:
        return out
    w, b = pool[pool["group"] == winner], pool[pool["group"] == base]
    diff, lo, hi = welch_interval(w["best_test_acc"].to_numpy(float), b["best_test_acc"].to_numpy(float))
    out.update(n_winner=len(w), n_baseline=len(b), diff_pp=diff * 100, lo_pp=lo * 100, hi_pp=hi * 100,
               epochs_ratio=_ratio(w["epochs"], b["epochs"]), compute_ratio=_ratio(w[compute], b[compute]))
    side = ["trial_id", "best_test_acc", "best_acc_epoch"]
    seed = [SEED_COLUMN] if SEED_COLUMN in pool else []
    names = {"trial_id": "trial", "best_test_acc": "test_acc", "best_acc_epoch": "epoch"}
    bt = b[seed + side].rename(columns={c: f"baseline_{names[c]}" for c in side})
    wt = w[seed + side].rename(columns={c: f"winner_{names[c]}" for c in side})
    if seed:  # paired by seed for reading; the interval itself does not pair them
        per_seed = bt.merge(wt, on=SEED_COLUMN, how="outer").sort_values(SEED_COLUMN, kind="stable")
    else:
        per_seed = pd.concat([bt.reset_index(drop=True), wt.reset_index(drop=True)], axis=1)
    out["per_seed"] = per_seed[seed + ["baseline_test_acc", "winner_test_acc", "baseline_epoch", "winner_epoch",
                                      "baseline_trial", "winner_trial"]].reset_index(drop=True)
    return out


def _top(groups: pd.DataFrame, rank: str, trials: pd.DataFrame) -> str:
    """The group with the highest ``rank``; of groups tied on it (accuracies on a few hundred validation images
    move in steps), the one with the lowest mean best val_loss over its trials, as the confirm phase's candidates
    were chosen (sweeps.confirm.best_configs); then the first in table order."""
    score = groups[rank].astype(float)
    tied = groups[np.isclose(score, score.max(), rtol=0, atol=1e-9)]
    if len(tied) < 2 or rank.replace("_mean", "") != "best_val_acc" or "best_val_loss" not in trials:
        return groups.loc[score.idxmax(), "group"]
    loss = trials.groupby("group")["best_val_loss"].mean().reindex(tied["group"]).fillna(np.inf)
    return loss.index[int(np.argmin(loss.to_numpy()))]


# tuned_vs_baseline's ranked table: accuracy columns (fractions)
RANKED_ACCURACIES = ("val_acc_mean", "val_acc_std", "test_acc_mean", "test_acc_std")


def _ranked(groups: pd.DataFrame, rank: str, base: str, winner: str) -> pd.DataFrame:
    """Every configuration of the pool, best first by ``rank`` (the statistic that chose the winner): its role,
    seeds, mean ± std of val_acc and of test accuracy at the chosen epochs, mean epochs run. How close the runners-up
    came shows how much the choice of one winner among them rests on noise."""
    out = pd.DataFrame({"group": groups["group"], "role": "", "n_seeds": groups["n_seeds"]})
    out.loc[groups["group"] == base, "role"] = "baseline"
    out.loc[groups["group"] == winner, "role"] = "winner"
    for name, col in (("val_acc", "best_val_acc"), ("test_acc", "best_test_acc")):
        out[f"{name}_mean"], out[f"{name}_std"] = groups[f"{col}_mean"], groups[f"{col}_std"]
    out["epochs_mean"] = groups["epochs_mean"]
    order = groups[rank].astype(float).fillna(-np.inf).to_numpy()
    # best first; the winner heads any tie it won (on validation loss, _top)
    return out.iloc[np.lexsort(((groups["group"] != winner).to_numpy(), -order))].reset_index(drop=True)


def _ratio(a: pd.Series, b: pd.Series) -> float:
    num, den = pd.to_numeric(a, errors="coerce").mean(), pd.to_numeric(b, errors="coerce").mean()
    return float(num / den) if den and not np.isnan(den) else float("nan")


ISOLATION_ACCURACIES = ("best_group_acc",)


def isolation(groups: pd.DataFrame, gcols: list[str]) -> pd.DataFrame:
    """Per varied hyperparameter and value: the best group (chosen as in rank_column) over all the other
    hyperparameters, its mean best test accuracy, which group that is, and how many groups hold that value."""
    parts = []
    for col in gcols:
        text = pd.Series(_formatted(groups[col]), index=groups.index)
        by = groups.groupby(text, sort=False)
        best = by[rank_column(groups)].idxmax().dropna()
        part = pd.DataFrame({"param": col.removeprefix("config/"), "value": best.index,
                             "best_group_acc": groups.loc[best.to_numpy(), "best_test_acc_mean"].to_numpy(),
                             "best_group": groups.loc[best.to_numpy(), "group"].to_numpy(),
                             "n_groups": by.size().reindex(best.index).to_numpy()})
        num = pd.to_numeric(groups.loc[best.to_numpy(), col], errors="coerce").to_numpy()
        part["numeric_value"] = num
        parts.append(part.sort_values(["numeric_value", "value"], kind="stable") if not np.isnan(num).all() else part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["param", "value", "best_group_acc", "best_group", "n_groups", "numeric_value"])


# stop_audit's accuracy columns (gap_to_winner: a difference of two of them)
AUDIT_ACCURACIES = ("best_so_far_at_stop", "acc_at_stop", "winner_acc_at_stop", "winner_best_so_far_at_stop",
                    "gap_to_winner")


def stop_audit(df: pd.DataFrame, trials: pd.DataFrame, compute: str) -> tuple[pd.DataFrame, dict] | None:
    """Per early-stopped trial: stopping epoch, epochs/seconds/GPU-seconds saved against running to its budget
    (seconds saved = epochs not run x the trial's mean epoch seconds: an estimate), its accuracy and best-so-far at
    the stopping epoch, and the winner's at the same epoch. The winner is the trial with the best accuracy among
    those that ran their full budget (any trial if none did), chosen as in rank_column; best-so-far follows
    analysis.tables.chosen_so_far. None when no trial was stopped early."""
    stopped = trials[trials["stopped_early"]]
    if stopped.empty:
        return None
    full = trials[~trials["stopped_early"] & (trials["last_epoch"] >= trials["budget"])]
    pool = full if len(full) else trials
    winner = pool.loc[pool[rank_column(trials)].astype(float).idxmax()]
    rows = df[df["trial_id"] == winner["trial_id"]]
    w = rows.set_index("epoch")["test_acc"].astype(float)
    w_bsf = pd.Series(chosen_so_far(rows, np.zeros(len(rows), dtype=np.int64))[0], index=w.index)
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
    saved = out["gpu_seconds_saved" if compute == "compute_gpu_seconds" else "seconds_saved"].sum()
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
