"""The report's built-in sections: each is ``fn(data: RunData) -> Section | None``, in the order of SECTIONS
in analysis.report (groups, size effect, curves, variants, tradeoff, Pareto, best epoch, isolation, audit,
comparison, trials, skipped files), and ``headline``, which analysis.report puts at the top of a search's report.

    from analysis.run import load_run
    from analysis.sections import groups_section
    print(groups_section(load_run("runs/stn_mnist")).markdown)

Accuracy is shown in percent with one decimal. The CSVs keep fractions, and their headers mark each accuracy column
" [fraction]": a section hands csv_bytes its table's accuracy columns (analysis.tables.accuracy_columns and
curve_accuracies, analysis.tradeoff's *_ACCURACIES), the same ones it shows in percent. GPU-seconds columns are
left out of the shown tables of a run where no trial held a GPU (RunData.has_gpu), and the report's intro says so
once. Compute is training plus each trial's share of the feature pass (analysis.compute). No ray, no torch.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import plots, tradeoff
from analysis.logs import CONFIG_PREFIX, SEED_COLUMN, _formatted, format_value, group_columns, group_labels
from analysis.render import MAX_TABLE_ROWS, Section, bullets, csv_bytes, decimals, figure, fmt_ci, fmt_column, \
    fmt_num, fmt_pct, fmt_pct_pm, fmt_pm, note, paragraph, section, table, top_rows
from analysis.run import RunData
from analysis.tables import ACCURACY_STATS, PLATEAU_PP, VARIANT_STATS, accuracy_columns, choice_phrase, chosen_on, \
    curve_accuracies, rank_column, variant_columns

COMPUTE_NAMES = {"compute_gpu_seconds": "GPU-seconds", "compute_seconds": "seconds"}
COMPARE_ACCURACIES = ("best acc (mean)",)  # compare.csv's accuracy column (its Δ row: a difference of two)


def seconds_columns(d: RunData) -> dict[str, str]:
    """Trial/group columns of time spent that the pages show -> their titles: training seconds, the feature-pass
    share when the run had one, and the GPU-seconds of both only when some trial or pass held a GPU."""
    cols = {"total_seconds": "training seconds"}
    if d.passes is not None:
        cols["feature_seconds"] = "feature-pass seconds"
    if d.has_gpu:
        cols["gpu_seconds"] = "training GPU-seconds"
        if d.passes is not None:
            cols["feature_gpu_seconds"] = "feature-pass GPU-seconds"
    return cols


def compute_phrase(d: RunData) -> str:
    """What a trial's compute counts, for captions and sentences."""
    name = COMPUTE_NAMES[d.compute]
    return f"{name} (training + the trial's share of the feature pass)" if d.passes is not None else name


def groups_section(d: RunData) -> Section:
    g, note = top_rows(d.groups, rank_column(d.groups))
    show = pd.DataFrame({"group": g["group"].map(d.readable), "n_seeds": g["n_seeds"]})
    show["best acc % (mean ± std)"] = [fmt_pct_pm(m, s) for m, s in zip(g["best_test_acc_mean"],
                                                                       g["best_test_acc_std"])]
    show["best acc % 95% CI"] = [fmt_ci(m, h) for m, h in zip(g["best_test_acc_mean"], g["best_test_acc_ci95"])]
    names = {"best_acc_epoch": "epoch of best acc", "best_test_loss": "best loss", "best_loss_epoch":
             "epoch of best loss", "final_test_acc": "final acc %", "epochs_to_95pct": "epochs to 95%",
             "epochs_to_99pct": "epochs to 99%", "epochs_to_plateau": "epochs to plateau", "epochs": "epochs run",
             **seconds_columns(d)}
    for col, title in names.items():
        mean, std = g[f"{col}_mean"], g[f"{col}_std"]
        if col in ACCURACY_STATS:
            show[title] = [fmt_pct_pm(m, s) for m, s in zip(mean, std)]
        else:  # epochs: whole numbers, or one decimal where seeds differ; losses and seconds: 4 significant
            # digits of the column's largest mean
            whole = all(float(v).is_integer() for v in [*mean, *std] if not pd.isna(v))
            places = (0 if whole else 1) if "epoch" in col else decimals(*mean)
            show[title] = [fmt_pm(m, s, places) for m, s in zip(mean, std)]
    for col in [c for c in g if c.startswith(VARIANT_STATS) and c.endswith("_mean")]:
        kind, variant = col.removesuffix("_mean").split("_test_acc/")
        show[f"{kind} acc {variant} %"] = [fmt_pct_pm(m, s) for m, s in zip(g[col], g[col.replace("_mean", "_std")])]
    if g["stopped_early"].any():
        show["stopped early"] = g["stopped_early"]
    text = (f"Best accuracy and loss: their epochs are {choice_phrase(d.trials)}. Accuracy in percent. "
            "Mean ± std (ddof=1) across seeds; 95% CI = Student-t interval of the mean, "
            "mean ± t(0.975, n-1)·std/√n (none with one seed). Epochs to 95%/99% = first epoch reaching that share "
            f"of the trial's best accuracy; plateau = first epoch within {PLATEAU_PP * 100:g} pp of it.")
    return section("Groups (configuration without seed)", [paragraph(text), table(show.astype(str), note)],
                   {"groups.csv": csv_bytes(d.groups, accuracy_columns(d.groups))})


def size_section(d: RunData) -> Section | None:
    sizes = plots.size_effect(d.trials, d.gcols)
    if sizes is None:
        return None
    png, caption = plots.plot_size_effect(sizes, d.trials, d.gcols)
    return section(plots.SIZE_SECTION, [figure("size_effect", caption, plots.SIZE_SECTION)],
                   {"size_effect.csv": csv_bytes(sizes, accuracy_columns(sizes)), "size_effect.png": png})


def curves_section(d: RunData) -> Section:
    files, parts = {"curves.csv": csv_bytes(d.curves, curve_accuracies(d.curves))}, []
    for metric in ("test_acc", "test_loss"):
        png, caption = plots.plot_curves(d.curves, d.groups, metric)
        files[f"{metric}.png"] = png
        parts.append(figure(metric, caption, plots.TITLES[metric]))
    return section("Test accuracy and loss per epoch", parts, files)


def variants_section(d: RunData) -> Section | None:
    variants = variant_columns(d.df)
    if not variants:
        return None
    png, caption = plots.plot_variants(d.curves, d.groups, variants)
    g, note = top_rows(d.groups, rank_column(d.groups))
    show = pd.DataFrame({"group": g["group"].map(d.readable)})
    for v in variants:
        name = v.removeprefix("test_acc/")
        show[f"best {name} %"] = [fmt_pct_pm(m, s) for m, s in zip(g[f"best_{v}_mean"], g[f"best_{v}_std"])]
        show[f"final {name} %"] = [fmt_pct_pm(m, s) for m, s in zip(g[f"final_{v}_mean"], g[f"final_{v}_std"])]
    return section("Accuracy per test variant", [table(show.astype(str), note), figure("variants", caption)],
                   {"variants.png": png})


def tradeoff_section(d: RunData) -> Section:
    fixed = d.feature_gpu_seconds if d.compute == "compute_gpu_seconds" else d.feature_seconds
    budget = tradeoff.budget_table(d.df, d.trials, d.curves, d.compute, fixed)
    plateau = tradeoff.plateau_epoch(budget["best_group_best_so_far"], budget["E"])
    png, caption = plots.plot_tradeoff(budget, plateau, d.compute, chosen_on(d.trials) == "validation")
    final = budget.iloc[-1]
    at = budget.set_index("E").loc[plateau] if not np.isnan(plateau) else None
    split = chosen_on(d.trials)
    chose = {"validation": "Validation chose: every trial's best epoch, the best group and the best trial are "
                           "chosen on the validation split (val_acc); every accuracy below is test accuracy, at "
                           "the epoch validation chose.",
             "mixed": "Validation chose where the logs have it: trials with val_acc have their best epoch chosen "
                      "on it; the others, and the ranking of groups, use the test set (optimistic).",
             "test": "The test set chose: the logs have no validation split (val_acc), so best epochs, the best "
                     "group and the best trial are chosen in hindsight on the test set (optimistic)."}[split]
    facts = [
        ("Best-so-far accuracy is the test accuracy at the epoch up to E with the best validation accuracy: what "
         "early stopping on validation would give; accuracy at epoch E is what training for exactly E epochs gives."
         if split == "validation" else
         "Best-so-far accuracy picks the best epoch up to E on the test set: it is what early stopping on the test "
         "set would give, so it is optimistic; accuracy at epoch E is what training for exactly E epochs gives."),
        f"Plateau: the first epoch budget whose best-so-far accuracy (best group) is within {PLATEAU_PP * 100:g} "
        f"percentage points of the final best: epoch {fmt_num(plateau)} of {int(final['E'])}"
        + (f" ({fmt_pct(at['best_group_best_so_far'], True)} vs {fmt_pct(final['best_group_best_so_far'], True)} "
           "at the full budget; the epochs after it add "
           f"{(final['best_group_best_so_far'] - at['best_group_best_so_far']) * 100:.1f}"
           " pp)." if at is not None else "."),
    ]
    compute_name = COMPUTE_NAMES[d.compute]
    cum = budget[f"cumulative_{d.compute}"]
    if at is not None and cum.iloc[-1] > 0:
        facts.append(f"Stopping every trial at the plateau would have used {fmt_num(at[f'cumulative_{d.compute}'])} of "
                     f"{fmt_num(cum.iloc[-1])} {compute_name} "
                     f"({fmt_num(at[f'cumulative_{d.compute}'] / cum.iloc[-1] * 100, 3)}%)"
                     + (f"; both include the feature pass's {fmt_num(fixed)} {compute_name}, which every budget pays."
                        if fixed else "."))
    shown = budget[["E", "trials_at_E", "best_group_acc_at_E", "best_group_best_so_far", "marginal_gain_best_group",
                    "mean_trial_acc_at_E", "mean_trial_best_so_far", f"cumulative_{d.compute}"]].copy()
    for c in [c for c in shown if c in tradeoff.BUDGET_ACCURACIES]:
        shown[c] = shown[c].map(fmt_pct)
    shown[f"cumulative_{d.compute}"] = fmt_column(shown[f"cumulative_{d.compute}"])
    shown.columns = ["E", "trials", "best group: acc at E %", "best group: best-so-far %", "gain of epoch E (pp)",
                     "average trial: acc at E %", "average trial: best-so-far %",
                     f"{compute_name} to E" + (" (with the feature pass)" if fixed else "")]
    parts = [paragraph(chose), bullets(facts), figure("tradeoff", caption, "accuracy against epoch budget"),
             table(shown.astype(str))]
    files = {"tradeoff.csv": csv_bytes(budget, tradeoff.BUDGET_ACCURACIES), "tradeoff.png": png}
    if len(d.groups) > 1:
        base, why = tradeoff.choose_baseline(d.groups, d.gcols, d.first_config, d.baseline)
        winner = confirmed_winner(d)
        comp = tradeoff.compare_to_baseline(d.groups, base, d.trials, best=winner)
        by = "mean validation accuracy" if split == "validation" else "mean best test accuracy"
        median = (f"the middle one of the {len(d.groups)} groups ranked by {by}" if len(d.groups) % 2 else
                  f"of the {len(d.groups)} groups ranked by {by}, the upper of the two middle ones, since an even "
                  "count has no single median")
        best = (f"the headline's winner ({CONFIRMED_WINNER}; here its search and confirm trials together)"
                if winner is not None else f"the best group (highest {by})")
        text = (f"Tuned vs baseline: {best} against the baseline, {why}"
                + (f": {d.readable(base)}" if base else "") + f", and against the median group ({median}). "
                "Accuracies are test accuracies" + (" at the epoch chosen on validation" if split == "validation"
                                                    else "") + ", in percent; Δ = best minus reference, per trial, "
                "means across seeds" + (", from every trial of the run (search and confirm phases alike)"
                                        if tradeoff.PHASE_COLUMN in d.trials else "")
                + "; seconds" + (" and GPU-seconds" if d.has_gpu else "") + " count training"
                + (" and the trial's share of the feature pass" if d.passes is not None else "") + ".")
        shown = comp.drop(columns="note" if d.has_gpu else ["note", "Δ GPU-seconds / trial"])
        for c in ("best group", "reference group"):
            shown[c] = shown[c].map(lambda g: d.readable(g) if isinstance(g, str) else g)
        for c in shown.columns[3:]:
            if c in tradeoff.COMPARISON_ACCURACIES:
                shown[c] = shown[c].map(fmt_pct)
            elif "seconds" in c:
                shown[c] = fmt_column(shown[c])
            else:
                shown[c] = shown[c].map(fmt_num)
        shown = shown.rename(columns={"best acc (best)": "best group acc %", "best acc (reference)":
                                      "reference acc %", "Δ best acc": "Δ best acc (pp)",
                                      "Δ final acc": "Δ final acc (pp)"})
        parts += [paragraph(text), table(shown.astype(str))]
        parts += [note(n) for n in comp["note"] if n]
        files["comparison.csv"] = csv_bytes(comp, tradeoff.COMPARISON_ACCURACIES)
    return section("Tradeoff: accuracy against epochs and compute", parts, files)


def pareto_section(d: RunData) -> Section:
    front = d.trials["pareto"]
    winner = confirmed_winner(d)
    marked = winner or d.groups.loc[d.groups[rank_column(d.groups)].idxmax(), "group"]
    marks = {"best group" if winner is None else "confirmed winner": (marked, d.readable(marked))}
    png, caption = plots.plot_pareto(d.trials, front, d.compute, marks, d.passes is not None)
    parts = seconds_columns(d) if d.passes is not None else {}  # without a feature pass, compute is training
    cols = ["trial_id", "group", d.compute, *parts, "best_test_acc", "best_acc_epoch", "epochs", "stop_reason"]
    cols = list(dict.fromkeys(c for c in cols if c in d.trials))
    pf = d.trials.loc[front, cols].sort_values(d.compute)
    shown = pf.assign(group=pf["group"].map(d.readable))
    for c in [d.compute, *parts]:
        if c in shown:
            shown[c] = fmt_column(shown[c])
    for c in accuracy_columns(pf):
        shown[c] = shown[c].map(fmt_pct)
    shown, note = top_rows(shown.assign(_acc=pf["best_test_acc"]), "_acc")
    shown = shown.rename(columns={d.compute: COMPUTE_NAMES[d.compute] + (" (all)" if d.passes is not None else ""),
                                  **parts, "best_test_acc": "best test acc %",
                                  "best_acc_epoch": "epoch of best", "stop_reason": "stop reason"})
    text = (f"{len(pf)} of {len(d.trials)} trials are on the Pareto front of best accuracy against compute, "
            f"{compute_phrase(d)}: no other trial is at least as accurate for less compute.")
    if d.compute == "compute_seconds":
        text += " No trial held a GPU share, so compute is wall-clock seconds."
    return section("Pareto front: accuracy against compute", [paragraph(text), figure("pareto", caption),
                                                               table(shown.drop(columns="_acc").astype(str), note)],
                   {"pareto.csv": csv_bytes(pf, accuracy_columns(pf)), "pareto.png": png})


def best_epoch_section(d: RunData) -> Section:
    png, caption = plots.plot_best_epoch_hist(d.trials)
    epoch = d.trials["best_acc_epoch"].astype(float)
    late = (epoch >= d.trials["budget"] * 0.9).mean()
    text = (f"Median epoch of best accuracy: {fmt_num(epoch.median())}; {late * 100:.0f}% of trials reached their best "
            f"in the last 10% of their epoch budget. Best epochs are {choice_phrase(d.trials)}.")
    return section("When trials reach their best", [paragraph(text), figure("best_epoch", caption)],
                   {"best_epoch.png": png})


def isolation_section(d: RunData) -> Section | None:
    if not d.gcols:
        return None
    iso = tradeoff.isolation(d.groups, d.gcols)
    png, caption = plots.plot_isolation(iso, d.groups, d.gcols)
    best = iso.loc[iso.groupby("param", sort=False)["best_group_acc"].idxmax()]
    items = [f"{r.param}: best at {r.value if np.isnan(r.numeric_value) else fmt_num(r.numeric_value)} "
             f"({fmt_pct(r.best_group_acc, True)}; range over values "
             f"{fmt_pct(iso.loc[iso.param == r.param, 'best_group_acc'].min())}–{fmt_pct(r.best_group_acc, True)})"
             for r in best.itertuples()]
    return section("Isolation plots per hyperparameter", [bullets(items), figure("isolation", caption)],
                   {"isolation.csv": csv_bytes(iso, tradeoff.ISOLATION_ACCURACIES), "isolation.png": png})


def audit_section(d: RunData) -> Section | None:
    result = tradeoff.stop_audit(d.df, d.trials, d.compute)
    if result is None:
        return None
    audit, f = result
    png, caption = plots.plot_audit(d.df, audit, f)
    name = COMPUTE_NAMES[d.compute]
    reasons = ", ".join(f"{k}: {v}" for k, v in f["reasons"].items())
    items = [
        f"{f['stopped']} of {f['trials']} trials were stopped before their epoch budget ({reasons}).",
        f"Compute saved: {f['epochs_saved']} epochs not run (vs {f['epochs_run']} run), about "
        f"{fmt_num(f['compute_saved'])} {name} against running them to the full budget "
        f"({fmt_pct(f['saved_share'], True)} of what the sweep would have used; an estimate: epochs not run x the "
        "trial's mean epoch time).",
        f"Winner: {f['winner']} ({d.readable(f['winner_group'])}), best accuracy {fmt_pct(f['winner_best'], True)}.",
        f"{f['ahead']} stopped trial(s) were ahead of the winner's best-so-far accuracy at their stopping epoch"
        + (" (the scheduler may have stopped a trial that was leading)." if f["ahead"] else "."),
        f"The best stopped trial reached {fmt_pct(f['stopped_max_best'], True)} before it was stopped.",
    ]
    shown = audit[["trial_id", "group", "stop_reason", "stop_epoch", "budget", "best_so_far_at_stop",
                   "winner_best_so_far_at_stop", "gap_to_winner", "epochs_saved"]].copy()
    shown["group"] = shown["group"].map(d.readable)
    shown, note = top_rows(shown, "gap_to_winner")
    for c in [c for c in shown if c in tradeoff.AUDIT_ACCURACIES]:
        shown[c] = shown[c].map(fmt_pct)
    shown = shown.rename(columns={"stop_reason": "stop reason", "stop_epoch": "stopped after epoch",
                                  "best_so_far_at_stop": "its best-so-far %", "winner_best_so_far_at_stop":
                                  "winner's best-so-far then %", "gap_to_winner": "gap to winner (pp)",
                                  "epochs_saved": "epochs saved"})
    return section("Early-stopping audit", [bullets(items), figure("audit", caption), table(shown.astype(str), note)],
                   {"audit.csv": csv_bytes(audit, tradeoff.AUDIT_ACCURACIES), "audit.png": png})


def trials_section(d: RunData) -> Section:
    tr, shown_note = top_rows(d.trials, rank_column(d.trials), 2 * MAX_TABLE_ROWS)
    t = pd.DataFrame({"trial_id": tr["trial_id"]})
    for c in d.gcols + ([SEED_COLUMN] if SEED_COLUMN in tr else []):  # floats rounded apart, as in the labels
        t[c.removeprefix(CONFIG_PREFIX)] = _formatted(tr[c], 4)
    t["epochs"], t["status"] = tr["epochs"], tr["status"].map(str)
    t["stop reason"] = tr["stop_reason"].map(lambda v: "" if pd.isna(v) else str(v))
    by_val = chosen_on(tr) == "validation"
    if by_val:  # the validation number that chose the epoch, beside the test number reported there
        t["best val acc %"] = tr["best_val_acc"].map(fmt_pct)
    for name, fmt in (("acc", fmt_pct), ("loss", fmt_num)):
        best, epoch = tr[f"best_test_{name}"], tr[f"best_{name}_epoch"]
        unit = " %" if name == "acc" else ""
        title = f"test {name}{unit} at val-chosen epoch (epoch)" if by_val else f"best {name}{unit} (epoch)"
        t[title] = [f"{fmt(v)} ({fmt_num(e)})" for v, e in zip(best, epoch)]
    t["epochs to 95/99/100%"] = [f"{fmt_num(a)}/{fmt_num(b)}/{fmt_num(c)}" for a, b, c in
                                 zip(tr["epochs_to_95pct"], tr["epochs_to_99pct"], tr["epochs_to_100pct"])]
    for c in [c for c in tr if c.startswith("final_test_acc")]:
        t[c.replace("final_test_acc", "final acc").replace("_", " ") + " %"] = tr[c].map(fmt_pct)
    for col, title in seconds_columns(d).items():
        t[title] = fmt_column(tr[col])
    parts = [paragraph(f"Best epochs are {choice_phrase(d.trials)}.")] if chosen_on(d.trials) != "test" else []
    return section("Trials", parts + [table(t.astype(str), shown_note)],
                   {"trials.csv": csv_bytes(d.trials, accuracy_columns(d.trials))})


def skipped_section(d: RunData) -> Section | None:
    if not d.skipped:
        return None
    return section(f"Skipped log files ({len(d.skipped)})", [
        paragraph("These files in logs/ could not be read as trial logs and are left out of everything above:"),
        bullets([f"{s['file']}: {s['reason']}" for s in d.skipped])])


def compare_section(d: RunData) -> Section | None:
    o = d.compare
    if o is None:
        return None
    names = {"a": d.name, "b": o.name if o.name != d.name else f"{o.name} (2)"}
    runs = {names["a"]: d, names["b"]: o}
    # Label groups by what varies across both runs: a run with one group is "all trials" on its own, but
    # "lr=0.01" next to a run that varied lr.
    trials = pd.concat([r.trials.assign(run=n) for n, r in runs.items()], ignore_index=True, sort=False)
    trials["label"] = group_labels(trials, group_columns(trials))
    relabel = trials.drop_duplicates(["run", "group"]).set_index(["run", "group"])["label"]
    both = pd.concat([r.groups.assign(run=n) for n, r in runs.items()], ignore_index=True, sort=False)
    both.insert(0, "run", both.pop("run"))
    both.insert(1, "group_in_run", both["group"])
    both["group"] = relabel.reindex(pd.MultiIndex.from_frame(both[["run", "group_in_run"]])).to_numpy()
    rows = []
    for n, r in runs.items():
        best = r.groups.loc[r.groups[rank_column(r.groups)].idxmax()]
        rows.append({"run": n, "trials": len(r.trials), "groups": len(r.groups),
                     "best group": relabel[(n, best["group"])],
                     "best acc (mean)": best["best_test_acc_mean"], "epochs run (total)": int(r.trials["epochs"].sum()),
                     "seconds (total)": r.trials["compute_seconds"].sum() + _orphan(r, "seconds"),
                     "GPU-seconds (total)": r.trials["compute_gpu_seconds"].sum() + _orphan(r, "gpu_seconds")})
    summary = pd.DataFrame(rows)
    delta = {"run": f"Δ ({names['a']} − {names['b']})", "trials": rows[0]["trials"] - rows[1]["trials"],
             "groups": rows[0]["groups"] - rows[1]["groups"], "best group": ""}
    for c in ("best acc (mean)", "epochs run (total)", "seconds (total)", "GPU-seconds (total)"):
        delta[c] = rows[0][c] - rows[1][c]
    summary = pd.concat([summary, pd.DataFrame([delta])], ignore_index=True)
    png, caption = plots.plot_compare({n: r.curves for n, r in runs.items()}, {n: r.groups for n, r in runs.items()},
                                      {k: v for k, v in relabel.items()})
    gpu = d.has_gpu or o.has_gpu
    shown = summary.copy() if gpu else summary.drop(columns="GPU-seconds (total)")
    for c in COMPARE_ACCURACIES:
        shown[c] = shown[c].map(fmt_pct)
    for c in ("seconds (total)", "GPU-seconds (total)"):
        if c in shown:
            shown[c] = shown[c].map(fmt_num)
    shown = shown.rename(columns={"best acc (mean)": "best acc % (mean)"})
    g = both.sort_values("best_test_acc_mean", ascending=False, kind="stable").head(MAX_TABLE_ROWS)
    gshow = pd.DataFrame({"run": g["run"], "group": g["group"], "n_seeds": g["n_seeds"],
                          "best acc %": [fmt_pct_pm(m, s) for m, s in zip(g["best_test_acc_mean"],
                                                                          g["best_test_acc_std"])],
                          "epoch of best": g["best_acc_epoch_mean"].map(lambda v: fmt_pm(v, None, 1)),
                          "seconds": g["compute_seconds_mean"].map(fmt_num)})
    if gpu:
        gshow["GPU-seconds"] = g["compute_gpu_seconds_mean"].map(fmt_num)
    note = (f"The {len(gshow)} best of {len(both)} groups of both runs; compare_groups.csv holds all. Seconds count "
            "training and the feature pass where a run had one" + ("" if gpu else "; neither run held a GPU, so "
                                                                   "there are no GPU-seconds") + ".")
    return section(f"Comparison with {o.name}", [
        paragraph(f"This run ({names['a']}, {d.run_dir}) against {names['b']} ({o.run_dir})."),
        table(shown.astype(str)), figure("compare", caption), table(gshow.astype(str), note)],
        {"compare.csv": csv_bytes(summary, COMPARE_ACCURACIES),
         "compare_groups.csv": csv_bytes(both, accuracy_columns(both)), "compare.png": png})



def _orphan(r: RunData, column: str) -> float:
    """Feature-pass compute of RUN r that no trial was charged with (a pass whose trials left no logs)."""
    if r.passes is None:
        return 0.0
    charged = r.trials["feature_seconds" if column == "seconds" else "feature_gpu_seconds"].sum()
    return max(float(r.passes[column].sum()) - float(charged), 0.0)


def _signed(v: float) -> str:
    return f"{v:+.1f}"


CONFIRMED_WINNER = "the confirmed configuration with the best mean validation accuracy over its confirm seeds"


def confirmed_winner(d: RunData) -> str | None:
    """The group of a search's headline winner when it comes from a confirm phase, else None. Sections that name a
    best group use it where they can, so that a report names one winner: among groups pooled over both phases, an
    unconfirmed configuration's one lucky search trial can outrank the winner's four."""
    if not (d.is_search and (tradeoff.phases(d.trials) == "confirm").any()):
        return None
    winner = tradeoff.tuned_vs_baseline(d.trials, d.gcols, d.compute, d.first_config, d.baseline)["winner"]
    return winner if winner in set(d.groups["group"]) else None


def headline(d: RunData) -> Section | None:
    """A search's answer to "was tuning worth it?" (tradeoff.tuned_vs_baseline) for the top of the report: one
    line, then (from a confirm phase) the per-seed table, also written as confirm.csv. None for a run that is not
    a search (RunData.is_search)."""
    if not d.is_search:
        return None
    h = tradeoff.tuned_vs_baseline(d.trials, d.gcols, d.compute, d.first_config, d.baseline)
    confirm = h["source"] == "confirm"
    where = ("the confirm phase's trials only" if confirm else
             "the search itself (no confirm phase), so it is optimistic: the winner was picked on the same trials "
             "that score it")
    label = "tuned vs baseline" if confirm else "tuned vs baseline (from the search itself, optimistic)"
    if h["problem"] is not None:
        line = f"{label}: no comparison: {h['problem']}."
    elif h["unfinished"] is not None:
        line = f"{label}: {h['unfinished']}"
    else:
        ci = ("no CI: fewer than two seeds on a side" if min(h["n_winner"], h["n_baseline"]) < 2 else
              "no CI: the seeds do not differ" if np.isnan(h["lo_pp"]) else
              f"95% CI {_signed(h['lo_pp'])} to {_signed(h['hi_pp'])}")
        line = (f"{label}: {_signed(h['diff_pp'])} points ({ci}) on the test set, at {fmt_num(h['epochs_ratio'], 3)}× "
                f"the epochs and {fmt_num(h['compute_ratio'], 3)}× the compute")
    chose = ("mean validation accuracy" if h["chosen_on"] == "validation" else
             "mean test accuracy, chosen in hindsight on the test set since not every trial has a validation split")
    text = f"Computed from {where}."
    readable = d.readable  # floats rounded for reading, as on the rest of the page; the CSVs keep the exact labels

    if h["winner"] is not None:
        text += (f" Winner: {readable(h['winner'])}, the best of {h['candidates']} non-baseline configuration(s) "
                 f"by {chose}; baseline: {readable(h['baseline'])}, {h['why']}.")
    if "diff_pp" in h:
        text += (f" Points = mean test accuracy of the winner's {h['n_winner']} seed(s) minus the baseline's "
                 f"{h['n_baseline']}, each at its trial's epoch chosen "
                 + {"validation": "on validation", "test": "on the test set",
                    "mixed": "on validation where the trial has it, else on the test set"}[h["chosen_on"]]
                 + "; CI = Welch two-sample t interval of that difference; epochs = mean epochs run per trial, "
                 f"compute = mean {compute_phrase(d)} per trial, winner over baseline.")
        if confirm:  # the interval is over the confirm seeds: a second search is what shows the search's own luck
            text += (" The interval covers the confirm seeds, not the search's luck: a search with another "
                     "--search-seed (or more --num-samples) may find other configurations, so trust a gain that "
                     "holds across searches.")
    parts, files = [note(line), paragraph(text)], {}
    if confirm and "per_seed" in h:
        seeds = h["per_seed"]
        shown = pd.DataFrame({"seed": seeds[SEED_COLUMN].map(format_value) if SEED_COLUMN in seeds else "",
                              "baseline test acc %": seeds["baseline_test_acc"].map(fmt_pct),
                              "winner test acc %": seeds["winner_test_acc"].map(fmt_pct)})
        shown.loc[len(shown)] = ["mean ± std", fmt_pct_pm(seeds["baseline_test_acc"].mean(),
                                                      seeds["baseline_test_acc"].std()),
                                 fmt_pct_pm(seeds["winner_test_acc"].mean(), seeds["winner_test_acc"].std())]
        parts.append(table(shown.astype(str), "confirm.csv holds these numbers with each trial and chosen epoch."))
        files["confirm.csv"] = csv_bytes(seeds, tradeoff.PER_SEED_ACCURACIES)
    if confirm and h.get("ranked") is not None and len(h["ranked"]) > 2:
        r = h["ranked"]
        shown = pd.DataFrame({"configuration": r["group"].map(readable), "role": r["role"],
                              "seeds": r["n_seeds"].map(str),
                              "val acc % (mean ± std)": [fmt_pct_pm(m, s) for m, s in zip(r["val_acc_mean"],
                                                                                         r["val_acc_std"])],
                              "test acc % (mean ± std)": [fmt_pct_pm(m, s) for m, s in zip(r["test_acc_mean"],
                                                                                          r["test_acc_std"])]})
        parts.append(table(shown.astype(str),
                           f"Every confirmed configuration, best first by {chose} (the winner's choice), each at "
                           "its trials' chosen epochs: a runner-up within the seeds' spread of the winner could as "
                           "well have won, so read the runners-up's test accuracies as part of what tuning buys. "
                           "confirm_ranked.csv holds them."))
        files["confirm_ranked.csv"] = csv_bytes(r, tradeoff.RANKED_ACCURACIES)
    out = section("Tuned vs baseline", parts, files)
    out.lead = line
    if confirm and "per_seed" in h and h["winner"] is not None:  # the terminal also names what won, and by how much
        seeds = h["per_seed"]
        out.lead += (f"\nwinner: {readable(h['winner'])}: "
                     f"{fmt_pct_pm(seeds['winner_test_acc'].mean(), seeds['winner_test_acc'].std(), True)} test "
                     f"accuracy over {len(seeds)} fresh seed(s), against the baseline's "
                     f"{fmt_pct_pm(seeds['baseline_test_acc'].mean(), seeds['baseline_test_acc'].std(), True)}")
    return out
