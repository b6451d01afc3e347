"""Turn a sweep's Parquet logs into a report: tables, plots, Markdown and HTML, and the accuracy-vs-cost tradeoff.

    python -m analysis.report RUN_DIR [--out DIR] [--compare RUN_DIR2] [--baseline "lr=0.01, batch_size=64"]

Writes into DIR (default RUN_DIR/report), all files side by side so the folder can be copied or served as is:
index.html and report.md (the same content), the PNGs they show and the tables behind them as CSV:

- trials.csv: per trial best/final accuracy and loss with their epochs, epochs to 95/99/100% of the best and to
  plateau, stop reason, epochs run, seconds and GPU-seconds (seconds x the trial's GPU share from the logs'
  gpus column; 0 for old logs without it, and the report says so); Pareto membership.
- groups.csv (a group is a configuration without its seed): mean, std and 95% Student-t interval across seeds;
  curves.csv per group and epoch; test_acc.png / test_loss.png (the original study's Tables 3 and 4);
  size_effect.csv/png when train_per_class varies (its Table 2); variants.png when test_acc/<variant> exists.
- tradeoff.csv/png (accuracy if stopped at each epoch budget, marginal gain, plateau), comparison.csv (best
  group vs baseline and vs median group), pareto.csv/png, best_epoch.png, isolation.csv/png, and audit.csv/png
  where a scheduler stopped trials early. With --compare: compare_groups.csv, compare.csv and compare.png.

Best values and their epochs are picked in hindsight on the test set, and the report says so.

Extending: a section is a function ``fn(data: RunData) -> Section | list[Section] | None``; append it with
``register_section(fn)``, or put a module in EXTRA_SECTION_MODULES (imported when present) that defines
``report_sections(data) -> list[Section]``. A Section carries its title, Markdown, HTML and files (name ->
bytes/str, written into the report folder). A section that raises becomes a note; it never breaks the report.
Uses pandas, pyarrow, numpy and matplotlib's Agg canvas only (no ray, no torch, no display needed).
"""

from __future__ import annotations

import argparse
import html
import importlib
import importlib.util
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from analysis import plots, tradeoff
from analysis.logs import CONFIG_PREFIX, SEED_COLUMN, config_columns, format_value, group_columns, group_label, \
    group_labels, load_logs
from analysis.tables import GROUP_STATS, PLATEAU_PP, curves, group_summary, gpu_share, trial_summary, \
    variant_columns

HINDSIGHT = ("Best accuracy, best loss and their epochs are chosen in hindsight on the test set "
             "(there is no separate validation split), so they are optimistic.")
MAX_TABLE_ROWS = 50  # rows shown in the pages per table; the CSV next to it holds all
EXTRA_SECTION_MODULES = ["analysis.sigma_curve", "analysis.stn_inspect"]  # optional modules with report_sections(data) -> list[Section]


@dataclass
class Section:
    """One part of the report: a heading, its body as Markdown and as HTML, and the files it needs."""
    title: str
    markdown: str
    html: str
    files: dict[str, bytes | str] = field(default_factory=dict)


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


# -- building blocks for sections -------------------------------------------------------------------------------
def csv_bytes(table: pd.DataFrame) -> bytes:
    """CSV through pyarrow's writer (~10x pandas' at 100k+ rows); pandas for what Arrow cannot type."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        buf = io.BytesIO()
        pacsv.write_csv(pa.Table.from_pandas(table, preserve_index=False), buf)
        return buf.getvalue()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return table.to_csv(index=False).encode()


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub pipe table (pandas' to_markdown needs tabulate, which we do not depend on)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def table(df: pd.DataFrame, note: str = "") -> tuple[str, str]:
    """(Markdown, HTML) of a text table, with an optional note line under it."""
    md, page = markdown_table(df), df.to_html(index=False, border=0)
    if note:
        md, page = md + f"\n\n{note}", page + f"<p>{html.escape(note)}</p>"
    return md, page


def figure(name: str, caption: str, alt: str | None = None) -> tuple[str, str]:
    """(Markdown, HTML) showing NAME.png with its caption; the PNG goes into the section's files."""
    e = html.escape
    return (f"![{name}]({name}.png)\n\n*{caption}*",
            f"<figure><img src='{name}.png' alt='{e(alt or name)}'><figcaption>{e(caption)}</figcaption></figure>")


def paragraph(text: str) -> tuple[str, str]:
    return text, f"<p>{html.escape(text)}</p>"


def bullets(items: list[str]) -> tuple[str, str]:
    return "\n".join(f"- {i}" for i in items), "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def section(title: str, parts: list[tuple[str, str]], files: dict | None = None) -> Section:
    return Section(title, "\n\n".join(m for m, _ in parts), "\n".join(h for _, h in parts), files or {})


def _num(v, digits: int = 4) -> str:
    return "" if pd.isna(v) else f"{v:.{digits}g}"


def _pm(mean, std) -> str:
    return _num(mean) + ("" if pd.isna(std) else f" ± {std:.2g}")


def _ci(mean, half) -> str:
    return "" if pd.isna(half) else f"[{mean - half:.4g}, {mean + half:.4g}]"


def _top(frame: pd.DataFrame, by: str, limit: int = MAX_TABLE_ROWS) -> tuple[pd.DataFrame, str]:
    """The frame, or its best LIMIT rows by ``by`` in table order, and a note saying which."""
    if len(frame) <= limit:
        return frame, ""
    keep = frame[by].astype(float).nlargest(limit).index
    return frame.loc[frame.index.isin(keep)], f"Showing the top {limit} of {len(frame)} by {by}; the CSV holds all."


COMPUTE_NAMES = {"gpu_seconds": "GPU-seconds", "total_seconds": "seconds"}


# -- the sections ------------------------------------------------------------------------------------------------
def groups_section(d: RunData) -> Section:
    g, note = _top(d.groups, "best_test_acc_mean")
    show = pd.DataFrame({"group": g["group"], "n_seeds": g["n_seeds"]})
    show["best acc (mean ± std)"] = [_pm(m, s) for m, s in zip(g["best_test_acc_mean"], g["best_test_acc_std"])]
    show["best acc 95% CI"] = [_ci(m, h) for m, h in zip(g["best_test_acc_mean"], g["best_test_acc_ci95"])]
    names = {"best_acc_epoch": "epoch of best acc", "best_test_loss": "best loss", "best_loss_epoch":
             "epoch of best loss", "final_test_acc": "final acc", "epochs_to_95pct": "epochs to 95%",
             "epochs_to_99pct": "epochs to 99%", "epochs_to_plateau": "epochs to plateau", "epochs": "epochs run",
             "total_seconds": "seconds", "gpu_seconds": "GPU-seconds"}
    for col, title in names.items():
        show[title] = [_pm(m, s) for m, s in zip(g[f"{col}_mean"], g[f"{col}_std"])]
    for col in [c for c in g if c.startswith(("best_test_acc/", "final_test_acc/")) and c.endswith("_mean")]:
        kind, variant = col.removesuffix("_mean").split("_test_acc/")
        show[f"{kind} acc {variant}"] = [_pm(m, s) for m, s in zip(g[col], g[col.replace("_mean", "_std")])]
    if g["stopped_early"].any():
        show["stopped early"] = g["stopped_early"]
    text = (f"Mean ± std (ddof=1) across seeds; 95% CI = Student-t interval of the mean, mean ± t(0.975, n-1)·std/√n "
            f"(none with one seed). Epochs to 95%/99% = first epoch reaching that share of the trial's best accuracy; "
            f"plateau = first epoch within {PLATEAU_PP * 100:g} pp of it.")
    return section("Groups (configuration without seed)", [paragraph(text), table(show.astype(str), note)],
                   {"groups.csv": csv_bytes(d.groups)})


def size_section(d: RunData) -> Section | None:
    sizes = plots.size_effect(d.trials, d.gcols)
    if sizes is None:
        return None
    png, caption = plots.plot_size_effect(sizes, d.trials, d.gcols)
    return section(plots.SIZE_SECTION, [figure("size_effect", caption, plots.SIZE_SECTION)],
                   {"size_effect.csv": csv_bytes(sizes), "size_effect.png": png})


def curves_section(d: RunData) -> Section:
    files, parts = {"curves.csv": csv_bytes(d.curves)}, []
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
    g, note = _top(d.groups, "best_test_acc_mean")
    show = pd.DataFrame({"group": g["group"]})
    for v in variants:
        name = v.removeprefix("test_acc/")
        show[f"best {name}"] = [_pm(m, s) for m, s in zip(g[f"best_{v}_mean"], g[f"best_{v}_std"])]
        show[f"final {name}"] = [_pm(m, s) for m, s in zip(g[f"final_{v}_mean"], g[f"final_{v}_std"])]
    return section("Accuracy per test variant", [table(show.astype(str), note), figure("variants", caption)],
                   {"variants.png": png})


def tradeoff_section(d: RunData) -> Section:
    budget = tradeoff.budget_table(d.df, d.trials, d.curves, d.compute)
    plateau = tradeoff.plateau_epoch(budget["best_group_best_so_far"], budget["E"])
    png, caption = plots.plot_tradeoff(budget, plateau, d.compute)
    final = budget.iloc[-1]
    at = budget.set_index("E").loc[plateau] if not np.isnan(plateau) else None
    facts = [
        "Best-so-far accuracy picks the best epoch up to E on the test set: it is what early stopping on the test "
        "set would give, so it is optimistic; accuracy at epoch E is what training for exactly E epochs gives.",
        f"Plateau: the first epoch budget whose best-so-far accuracy (best group) is within {PLATEAU_PP * 100:g} "
        f"percentage points of the final best: epoch {_num(plateau)} of {int(final['E'])}"
        + (f" ({_num(at['best_group_best_so_far'])} vs {_num(final['best_group_best_so_far'])} at the full budget; "
           f"the epochs after it add {_num((final['best_group_best_so_far'] - at['best_group_best_so_far']) * 100, 3)}"
           " pp)." if at is not None else "."),
    ]
    compute_name = COMPUTE_NAMES[d.compute]
    cum = budget[f"cumulative_{d.compute}"]
    if at is not None and cum.iloc[-1] > 0:
        facts.append(f"Stopping every trial at the plateau would have used {_num(at[f'cumulative_{d.compute}'])} of "
                     f"{_num(cum.iloc[-1])} {compute_name} ({_num(at[f'cumulative_{d.compute}'] / cum.iloc[-1] * 100, 3)}%).")
    shown = budget[["E", "trials_at_E", "best_group_acc_at_E", "best_group_best_so_far", "marginal_gain_best_group",
                    "mean_trial_acc_at_E", "mean_trial_best_so_far", f"cumulative_{d.compute}"]].copy()
    shown.columns = ["E", "trials", "best group: acc at E", "best group: best-so-far", "gain of epoch E (pp)",
                     "average trial: acc at E", "average trial: best-so-far", f"{compute_name} to E"]
    shown["gain of epoch E (pp)"] = shown["gain of epoch E (pp)"] * 100
    for c in shown.columns[2:]:
        shown[c] = shown[c].map(_num)
    parts = [bullets(facts), figure("tradeoff", caption, "accuracy against epoch budget"), table(shown.astype(str))]
    files = {"tradeoff.csv": csv_bytes(budget), "tradeoff.png": png}
    if len(d.groups) > 1:
        first = (d.sweep or {}).get("configs", [None])[0] if (d.sweep or {}).get("configs") else None
        base, why = tradeoff.choose_baseline(d.groups, d.gcols, first, d.baseline)
        comp = tradeoff.compare_to_baseline(d.groups, base)
        text = (f"Tuned vs baseline: the best group (highest mean best accuracy) against the baseline, {why}"
                + (f": {base}" if base else "") + ", and against the median group (the lower median by mean best "
                "accuracy). Δ = best minus reference, per trial, means across seeds.")
        shown = comp.copy()
        for c in shown.columns[3:]:
            shown[c] = shown[c].map(_num)
        parts += [paragraph(text), table(shown.astype(str))]
        files["comparison.csv"] = csv_bytes(comp)
    return section("Tradeoff: accuracy against epochs and compute", parts, files)


def pareto_section(d: RunData) -> Section:
    front = d.trials["pareto"]
    marks = {"best group": d.groups.loc[d.groups["best_test_acc_mean"].idxmax(), "group"]}
    png, caption = plots.plot_pareto(d.trials, front, d.compute, marks)
    cols = ["trial_id", "group", d.compute, "best_test_acc", "best_acc_epoch", "epochs", "stop_reason"]
    cols = list(dict.fromkeys(c for c in cols if c in d.trials))
    pf = d.trials.loc[front, cols].sort_values(d.compute)
    shown = pf.copy()
    shown[d.compute] = shown[d.compute].map(_num)
    shown["best_test_acc"] = shown["best_test_acc"].map(_num)
    shown, note = _top(shown.assign(_acc=pf["best_test_acc"]), "_acc")
    text = (f"{len(pf)} of {len(d.trials)} trials are on the Pareto front of best accuracy against "
            f"{COMPUTE_NAMES[d.compute]} (no other trial is at least as accurate for less compute).")
    if d.compute == "total_seconds":
        text += " No trial held a GPU share, so compute is wall-clock seconds."
    return section("Pareto front: accuracy against compute", [paragraph(text), figure("pareto", caption),
                                                               table(shown.drop(columns="_acc").astype(str), note)],
                   {"pareto.csv": csv_bytes(pf), "pareto.png": png})


def best_epoch_section(d: RunData) -> Section:
    png, caption = plots.plot_best_epoch_hist(d.trials)
    epoch = d.trials["best_acc_epoch"].astype(float)
    late = (epoch >= d.trials["budget"] * 0.9).mean()
    text = (f"Median epoch of best accuracy: {_num(epoch.median())}; {late * 100:.0f}% of trials reached their best "
            "in the last 10% of their epoch budget.")
    return section("When trials reach their best", [paragraph(text), figure("best_epoch", caption)],
                   {"best_epoch.png": png})


def isolation_section(d: RunData) -> Section | None:
    if not d.gcols:
        return None
    iso = tradeoff.isolation(d.groups, d.gcols)
    png, caption = plots.plot_isolation(iso, d.groups, d.gcols)
    best = iso.loc[iso.groupby("param", sort=False)["best_group_acc"].idxmax()]
    items = [f"{r.param}: best at {r.value} ({_num(r.best_group_acc)}; range over values "
             f"{_num(iso.loc[iso.param == r.param, 'best_group_acc'].min())}–{_num(r.best_group_acc)})"
             for r in best.itertuples()]
    return section("Isolation plots per hyperparameter", [bullets(items), figure("isolation", caption)],
                   {"isolation.csv": csv_bytes(iso), "isolation.png": png})


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
        f"{_num(f['compute_saved'])} {name} against running them to the full budget "
        f"({_num(f['saved_share'] * 100, 3)}% of what the sweep would have used; an estimate: epochs not run x the "
        "trial's mean epoch time).",
        f"Winner: {f['winner']} ({f['winner_group']}), best accuracy {_num(f['winner_best'])}.",
        f"{f['ahead']} stopped trial(s) were ahead of the winner's best-so-far accuracy at their stopping epoch"
        + (" (the scheduler may have stopped a trial that was leading)." if f["ahead"] else "."),
        f"The best stopped trial reached {_num(f['stopped_max_best'])} before it was stopped.",
    ]
    shown = audit[["trial_id", "group", "stop_reason", "stop_epoch", "budget", "best_so_far_at_stop",
                   "winner_best_so_far_at_stop", "gap_to_winner", "epochs_saved"]].copy()
    shown, note = _top(shown, "gap_to_winner")
    for c in ("best_so_far_at_stop", "winner_best_so_far_at_stop", "gap_to_winner"):
        shown[c] = shown[c].map(_num)
    return section("Early-stopping audit", [bullets(items), figure("audit", caption), table(shown.astype(str), note)],
                   {"audit.csv": csv_bytes(audit), "audit.png": png})


def trials_section(d: RunData) -> Section:
    tr, note = _top(d.trials, "best_test_acc", 2 * MAX_TABLE_ROWS)
    t = pd.DataFrame({"trial_id": tr["trial_id"]})
    for c in d.gcols + ([SEED_COLUMN] if SEED_COLUMN in tr else []):
        t[c.removeprefix(CONFIG_PREFIX)] = tr[c].map(format_value)
    t["epochs"], t["status"] = tr["epochs"], tr["status"].map(str)
    t["stop reason"] = tr["stop_reason"].map(lambda v: "" if pd.isna(v) else str(v))
    for name in ("acc", "loss"):
        best, epoch = tr[f"best_test_{name}"], tr[f"best_{name}_epoch"]
        t[f"best {name} (epoch)"] = [f"{_num(v)} ({_num(e)})" for v, e in zip(best, epoch)]
    t["epochs to 95/99/100%"] = [f"{_num(a)}/{_num(b)}/{_num(c)}" for a, b, c in
                                 zip(tr["epochs_to_95pct"], tr["epochs_to_99pct"], tr["epochs_to_100pct"])]
    for c in [c for c in tr if c.startswith("final_test_acc")]:
        t[c.replace("final_test_acc", "final acc").replace("_", " ")] = tr[c].map(_num)
    t["seconds"] = tr["total_seconds"].map(_num)
    t["GPU-seconds"] = tr["gpu_seconds"].map(_num)
    return section("Trials", [table(t.astype(str), note)], {"trials.csv": csv_bytes(d.trials)})


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
        best = r.groups.loc[r.groups["best_test_acc_mean"].idxmax()]
        rows.append({"run": n, "trials": len(r.trials), "groups": len(r.groups),
                     "best group": relabel[(n, best["group"])],
                     "best acc (mean)": best["best_test_acc_mean"], "epochs run (total)": int(r.trials["epochs"].sum()),
                     "seconds (total)": r.trials["total_seconds"].sum(),
                     "GPU-seconds (total)": r.trials["gpu_seconds"].sum()})
    summary = pd.DataFrame(rows)
    delta = {"run": f"Δ ({names['a']} − {names['b']})", "trials": rows[0]["trials"] - rows[1]["trials"],
             "groups": rows[0]["groups"] - rows[1]["groups"], "best group": ""}
    for c in ("best acc (mean)", "epochs run (total)", "seconds (total)", "GPU-seconds (total)"):
        delta[c] = rows[0][c] - rows[1][c]
    summary = pd.concat([summary, pd.DataFrame([delta])], ignore_index=True)
    png, caption = plots.plot_compare({n: r.curves for n, r in runs.items()}, {n: r.groups for n, r in runs.items()},
                                      {k: v for k, v in relabel.items()})
    shown = summary.copy()
    for c in ("best acc (mean)", "seconds (total)", "GPU-seconds (total)"):
        shown[c] = shown[c].map(_num)
    g = both.sort_values("best_test_acc_mean", ascending=False, kind="stable").head(MAX_TABLE_ROWS)
    gshow = pd.DataFrame({"run": g["run"], "group": g["group"], "n_seeds": g["n_seeds"],
                          "best acc": [_pm(m, s) for m, s in zip(g["best_test_acc_mean"], g["best_test_acc_std"])],
                          "epoch of best": g["best_acc_epoch_mean"].map(_num),
                          "GPU-seconds": g["gpu_seconds_mean"].map(_num), "seconds": g["total_seconds_mean"].map(_num)})
    note = f"The {len(gshow)} best of {len(both)} groups of both runs; compare_groups.csv holds all."
    return section(f"Comparison with {o.name}", [
        paragraph(f"This run ({names['a']}, {d.run_dir}) against {names['b']} ({o.run_dir})."),
        table(shown.astype(str)), figure("compare", caption), table(gshow.astype(str), note)],
        {"compare.csv": csv_bytes(summary), "compare_groups.csv": csv_bytes(both), "compare.png": png})


SectionFn = Callable[[RunData], "Section | list[Section] | None"]
SECTIONS: list[SectionFn] = [groups_section, size_section, curves_section, variants_section, tradeoff_section,
                             pareto_section, best_epoch_section, isolation_section, audit_section, compare_section,
                             trials_section, skipped_section]


def register_section(fn: SectionFn) -> SectionFn:
    """Add a section function to every report built after this call (usable as a decorator)."""
    if fn not in SECTIONS:
        SECTIONS.insert(len(SECTIONS) - 2, fn)  # before the long trials table and the skipped files
    return fn


def _extra_sections() -> list[SectionFn]:
    fns = []
    for name in EXTRA_SECTION_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            module = importlib.import_module(name)
            if hasattr(module, "report_sections"):
                fns.append(module.report_sections)
    return fns


PARALLEL_ROWS = 200_000  # from here on, sections (mostly plot rendering) run in two processes
_FORKED: tuple[list[SectionFn], RunData] | None = None  # what forked section workers inherit


def _one_section(fn: SectionFn, data: RunData) -> list[Section]:
    try:
        result = fn(data)
    except Exception as exc:  # one broken section must not cost the whole report
        name = getattr(fn, "__name__", str(fn))
        result = section(f"Section {name} failed", [paragraph(f"{type(exc).__name__}: {exc}")])
    if result is None:
        return []
    return result if isinstance(result, list) else [result]


def _forked_sections(indices: list[int]) -> list[list[Section]]:
    fns, data = _FORKED
    return [_one_section(fns[i], data) for i in indices]


def _run_sections(data: RunData) -> list[Section]:
    global _FORKED
    fns = SECTIONS[:-2] + [f for f in _extra_sections() if f not in SECTIONS] + SECTIONS[-2:]
    cores = os.cpu_count() or 1
    if len(data.df) < PARALLEL_ROWS or cores < 2 or "fork" not in _start_methods():
        return [s for fn in fns for s in _one_section(fn, data)]
    # Large runs: half of the sections in a forked process, which inherits the loaded data instead of receiving
    # it (only the finished sections travel back); on 2 cores this halves the ~5 s of plotting at 1M rows.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _FORKED = (fns, data)
    theirs, mine = list(range(0, len(fns), 2)), list(range(1, len(fns), 2))
    results: dict[int, list[Section]] = {}
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            pending = pool.submit(_forked_sections, theirs)
            for i in mine:
                results[i] = _one_section(fns[i], data)
            results.update(zip(theirs, pending.result()))
    finally:
        _FORKED = None
    return [s for i in range(len(fns)) for s in results[i]]


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}
figcaption{color:#555;font-size:13px}
.note{background:#fff8e1;padding:.5em 1em;border-left:4px solid #f0b400}"""


def _write(path: Path, data: str | bytes) -> None:
    """Write via a temp file in the same folder + os.replace, so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def _facts(d: RunData) -> list[str]:
    fixed = [c for c in config_columns(d.df) if c not in d.gcols and c != SEED_COLUMN]
    best = d.groups.loc[d.groups["best_test_acc_mean"].idxmax()]
    return [
        f"{len(d.trials)} trials in {len(d.groups)} group(s), {len(d.df)} rows (trial × epoch), "
        f"up to {d.df['epoch'].max()} epochs.",
        "Varying: " + (", ".join(c.removeprefix(CONFIG_PREFIX) for c in d.gcols) or "nothing (one group)") + ".",
        "Fixed: " + (group_label(d.df.iloc[0], fixed) if fixed else "nothing") + ".",
        f"Best group: {best['group']}: best test accuracy {_pm(best['best_test_acc_mean'], best['best_test_acc_std'])}"
        f" over {best['n_seeds']} seed(s).",
        f"Compute: {_num(d.trials['total_seconds'].sum())} seconds of training, "
        f"{_num(d.trials['gpu_seconds'].sum())} GPU-seconds (seconds × each trial's GPU share).",
        *d.notes,
    ]


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, compare: str | Path | None = None,
                 baseline: str | None = None) -> Path:
    """Write the report for RUN_DIR into OUT_DIR (default RUN_DIR/report) and return index.html's path.
    ``compare``: a second run shown side by side; ``baseline``: the group label to compare the best group with."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    data = load_run(run_dir, baseline)
    if compare is not None:
        data.compare = load_run(compare)
    sections = _run_sections(data)
    out.mkdir(parents=True, exist_ok=True)
    for s in sections:
        for name, content in s.files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)  # sections may use subfolders
            _write(out / name, content)
    csvs = [n for s in sections for n in s.files if n.endswith(".csv")]
    facts = _facts(data)
    title = f"Sweep report: {run_dir.resolve().name}"

    md = [f"# {title}", "", *[f"- {f}" for f in facts], "", f"> {HINDSIGHT}", ""]
    md += [f"## {s.title}\n\n{s.markdown}\n" for s in sections]
    md += [f"Tables: {', '.join(csvs)} (full precision).", ""]
    _write(out / "report.md", "\n".join(md))

    e = html.escape
    toc = "".join(f"<li><a href='#s{i}'>{e(s.title)}</a></li>" for i, s in enumerate(sections))
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
            f"<style>{CSS}</style></head><body><h1>{e(title)}</h1>",
            f"<ul>{''.join(f'<li>{e(f)}</li>' for f in facts)}</ul><p class='note'>{e(HINDSIGHT)}</p>",
            f"<nav><ol>{toc}</ol></nav>"]
    page += [f"<h2 id='s{i}'>{e(s.title)}</h2>\n{s.html}" for i, s in enumerate(sections)]
    links = ", ".join(f"<a href='{c}'>{c}</a>" for c in csvs)
    page += [f"<p>Tables: {links} (full precision).</p></body></html>"]
    index = out / "index.html"
    _write(index, "\n".join(page))  # written last: its presence means the whole report is there
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Summarise a sweep's RUN_DIR/logs (Parquet, one file per trial) into tables, plots, "
                    "report.md and index.html: per trial and per group (configuration without seed) results, "
                    "accuracy against epoch budget and compute, Pareto front, isolation plots, early-stopping audit.",
        epilog="example: python -m analysis.report runs/stn_mnist  (then open runs/stn_mnist/report/index.html)",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="the sweep's output folder, the one that holds logs/")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="where to write the report (default: RUN_DIR/report)")
    parser.add_argument("--compare", metavar="RUN_DIR2", type=Path, default=None,
                        help="a second run to show side by side (groups of both, curves, Δ best accuracy and compute)")
    parser.add_argument("--baseline", metavar="GROUP", default=None,
                        help="group label (as in groups.csv) to compare the best group with (default: the group of "
                             "sweep.json's first configuration, else the first group)")
    args = parser.parse_args(argv)
    try:
        index = build_report(args.run_dir, args.out, args.compare, args.baseline)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
