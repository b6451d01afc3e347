"""Turn a sweep's Parquet logs into a report: tables, per-epoch plots, Markdown and HTML.

    python -m analysis.report RUN_DIR [--out DIR]     # default DIR = RUN_DIR/report

Writes trials.csv (one row per trial), groups.csv (one row per configuration without its seed),
curves.csv (per group and epoch, across seeds), test_acc.png, test_loss.png, report.md and index.html.
Best accuracy / loss and their epochs are picked in hindsight on the test set, and the report says so.
Uses pandas and matplotlib's Agg canvas only (no ray, no torch, no display needed).
"""

from __future__ import annotations

import argparse
import html
import io
import os
import sys
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.logs import (CONFIG_PREFIX, SEED_COLUMN, config_columns, format_value, group_columns, group_label,
                           load_logs)

MAX_PLOTTED_GROUPS = 10  # more lines than this make the plot unreadable; the best ones are kept
HINDSIGHT = ("Best accuracy, best loss and their epochs are chosen in hindsight on the test set "
             "(there is no separate validation split), so they are optimistic.")
TITLES = {"test_acc": "Test accuracy", "test_loss": "Test loss"}
BAND = "line = mean across seeds, band = mean ± 1 std clipped to the valid range (none with one seed), dashed = train"


def _order_key(col: pd.Series) -> pd.Series:
    """Sort numbers as numbers (10 < 30 < 100) and anything else as text."""
    try:
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().sum() == col.notna().sum():
            return num
    except (TypeError, ValueError):
        pass
    return col.map(format_value)


def trial_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: config, epochs run, status, best/final test metrics and their epochs, seconds."""
    by = df.groupby("trial_id", sort=False)
    out = by[config_columns(df)].last()  # config is constant within a trial
    out.insert(0, "group", out.apply(group_label, axis=1, columns=group_columns(df)))
    out["epochs"] = by["epoch"].count()
    out["status"] = by["status"].last().fillna("unknown") if "status" in df else "unknown"
    for metric, pick, name in (("test_acc", "idxmax", "acc"), ("test_loss", "idxmin", "loss")):
        # df is sorted by epoch, so ties resolve to the earliest epoch that reached the best value.
        scored = df.dropna(subset=[metric])
        rows = scored.loc[getattr(scored.groupby("trial_id")[metric], pick)()].set_index("trial_id")
        out[f"best_{metric}"] = rows[metric]
        out[f"best_{name}_epoch"] = rows["epoch"].astype("Int64")
    for col in ["test_acc"] + sorted(c for c in df if c.startswith("test_acc/")):
        out[f"final_{col}"] = by[col].last()  # last non-null value: the accuracy the trial ended with
    out["total_seconds"] = by["epoch_seconds"].sum(min_count=1) if "epoch_seconds" in df else float("nan")
    keys = [c for c in group_columns(df) + [SEED_COLUMN] if c in out]
    out = out.sort_values(keys, key=_order_key, kind="stable") if keys else out
    return out.reset_index()


GROUP_STATS = ["best_test_acc", "best_acc_epoch", "best_test_loss", "best_loss_epoch", "final_test_acc",
               "total_seconds"]


def group_summary(trials: pd.DataFrame, gcols: list[str]) -> pd.DataFrame:
    """One row per group: its config, n_seeds and mean/std (sample std, ddof=1) of each trial-level result."""
    by = trials.groupby("group", sort=False)
    out = by[gcols].first() if gcols else pd.DataFrame(index=by.size().index)
    out["n_seeds"] = by.size()
    stats = trials[GROUP_STATS].apply(pd.to_numeric, errors="coerce").astype(float).groupby(trials["group"], sort=False)
    for col in GROUP_STATS:
        out[f"{col}_mean"], out[f"{col}_std"] = stats[col].mean(), stats[col].std()
    return out.reset_index()


def curves(df: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per group and epoch: n, mean/std/min/max of test metrics and mean of train metrics across seeds."""
    data = df.merge(trials[["trial_id", "group"]], on="trial_id")
    # A categorical keeps the groups in the trials table's order instead of alphabetical.
    data["group"] = pd.Categorical(data["group"], categories=trials["group"].drop_duplicates())
    stats = {m: ["mean", "std", "min", "max"] for m in ("test_acc", "test_loss")}
    stats.update({m: ["mean"] for m in ("train_acc", "train_loss") if m in df})
    by = data.groupby(["group", "epoch"], observed=True)
    out = by.agg(stats)
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out.insert(0, "n", by["trial_id"].nunique())
    out = out.reset_index()
    out["group"] = out["group"].astype(str)
    return out


def plot_curves(curv: pd.DataFrame, groups: pd.DataFrame, metric: str) -> tuple[bytes, str]:
    """PNG bytes of one metric per epoch, one line per group, and the caption that explains it."""
    ranked = groups.sort_values("best_test_acc_mean", ascending=False, kind="stable")["group"]
    shown = [g for g in groups["group"] if g in set(ranked.head(MAX_PLOTTED_GROUPS))]
    caption = f"{TITLES[metric]} per epoch; {BAND}"
    if len(groups) > len(shown):
        caption += f"; top {len(shown)} of {len(groups)} groups by mean best test accuracy"
    gcols = [c for c in groups if c.startswith(CONFIG_PREFIX)]
    short = dict(zip(groups["group"], groups.apply(group_label, axis=1, columns=gcols, digits=3)))  # legend only
    fig = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend switch, works headless
    ax = fig.add_subplot()
    train = metric.replace("test_", "train_") + "_mean"
    for i, group in enumerate(shown):
        g = curv[curv["group"] == group]
        color = f"C{i % 10}"
        mean, std = g[f"{metric}_mean"], g[f"{metric}_std"]
        ax.plot(g["epoch"], mean, color=color, marker="o", markersize=3, label=short[group])
        lo, hi = mean - std, mean + std
        if "acc" in metric:  # accuracy is a fraction: a band past 1 would show impossible values
            lo, hi = lo.clip(0, 1), hi.clip(0, 1)
        ax.fill_between(g["epoch"], lo, hi, color=color, alpha=0.2, linewidth=0)
        if train in g:
            ax.plot(g["epoch"], g[train], color=color, linestyle="--", alpha=0.6, linewidth=1)
    handles, _ = ax.get_legend_handles_labels()
    if train in curv:
        handles.append(Line2D([], [], color="gray", linestyle="--", label="train (same colour)"))
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the data
    ax.set(xlabel="epoch", ylabel=TITLES[metric] + (" (fraction)" if "acc" in metric else ""))
    ax.set_title(caption.replace("; ", "\n"), fontsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")  # "tight" keeps the outside legend in the image
    return buf.getvalue(), caption


def _num(v) -> str:
    return "" if pd.isna(v) else f"{v:.4g}"


def _pm(mean, std) -> str:
    return _num(mean) + ("" if pd.isna(std) else f" ± {std:.2g}")


def display_tables(trials: pd.DataFrame, groups: pd.DataFrame, gcols: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Text-only versions of the group and trial tables for Markdown and HTML (CSV keeps full precision)."""
    g = pd.DataFrame({"group": groups["group"], "n_seeds": groups["n_seeds"]})
    for col in GROUP_STATS:
        g[col.replace("_", " ")] = [_pm(m, s) for m, s in zip(groups[f"{col}_mean"], groups[f"{col}_std"])]
    t = pd.DataFrame({"trial_id": trials["trial_id"]})
    for c in gcols + ([SEED_COLUMN] if SEED_COLUMN in trials else []):
        t[c.removeprefix(CONFIG_PREFIX)] = trials[c].map(format_value)
    t["epochs"], t["status"] = trials["epochs"], trials["status"].map(str)
    for name in ("acc", "loss"):
        best, epoch = trials[f"best_test_{name}"], trials[f"best_{name}_epoch"]
        t[f"best {name} (epoch)"] = [f"{_num(v)} ({_num(e)})" for v, e in zip(best, epoch)]
    for c in [c for c in trials if c.startswith("final_test_acc")]:
        t[c.replace("final_test_acc", "final acc").replace("_", " ")] = trials[c].map(_num)
    t["seconds"] = trials["total_seconds"].map(_num)
    return g, t.astype(str)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub pipe table (pandas' to_markdown needs tabulate, which we do not depend on)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


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


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the report for RUN_DIR into OUT_DIR (default RUN_DIR/report) and return index.html's path."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    df = load_logs(run_dir)  # raises FileNotFoundError naming the folder when there is nothing to report
    skipped = df.attrs.get("skipped", [])
    out.mkdir(parents=True, exist_ok=True)
    gcols = group_columns(df)
    trials = trial_summary(df)
    groups = group_summary(trials, gcols)
    curv = curves(df, trials)
    for name, table in (("trials", trials), ("groups", groups), ("curves", curv)):
        _write(out / f"{name}.csv", table.to_csv(index=False))
    captions = {}
    for metric in ("test_acc", "test_loss"):
        png, captions[metric] = plot_curves(curv, groups, metric)
        _write(out / f"{metric}.png", png)

    fixed = [c for c in config_columns(df) if c not in gcols and c != SEED_COLUMN]
    best = groups.sort_values("best_test_acc_mean", ascending=False, kind="stable").iloc[0]
    facts = [
        f"{len(trials)} trials in {len(groups)} group(s), {len(df)} rows (trial × epoch), "
        f"up to {df['epoch'].max()} epochs.",
        "Varying: " + (", ".join(c.removeprefix(CONFIG_PREFIX) for c in gcols) or "nothing (one group)") + ".",
        "Fixed: " + (group_label(df.iloc[0], fixed) if fixed else "nothing") + ".",
        f"Best group: {best['group']}: best test accuracy {_pm(best['best_test_acc_mean'], best['best_test_acc_std'])}"
        f" over {best['n_seeds']} seed(s).",
    ]
    gshow, tshow = display_tables(trials, groups, gcols)
    skipped_lines = [f"{s['file']}: {s['reason']}" for s in skipped]
    title = f"Sweep report: {run_dir.resolve().name}"

    md = [f"# {title}", "", *[f"- {f}" for f in facts], "", f"> {HINDSIGHT}", "",
          "## Groups (configuration without seed)", "", markdown_table(gshow), ""]
    md += [f"## {TITLES[m]}\n\n![{m}]({m}.png)\n\n*{captions[m]}*\n" for m in captions]
    md += ["## Trials", "", markdown_table(tshow), ""]
    if skipped_lines:
        md += [f"## Skipped log files ({len(skipped_lines)})", "", *[f"- {s}" for s in skipped_lines], ""]
    md += ["Tables: trials.csv, groups.csv, curves.csv (full precision).", ""]
    _write(out / "report.md", "\n".join(md))

    e = html.escape
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
            f"<style>{CSS}</style></head><body><h1>{e(title)}</h1>",
            f"<ul>{''.join(f'<li>{e(f)}</li>' for f in facts)}</ul><p class='note'>{e(HINDSIGHT)}</p>",
            "<h2>Groups (configuration without seed)</h2>", gshow.to_html(index=False, border=0)]
    page += [f"<figure><img src='{m}.png' alt='{e(TITLES[m])}'><figcaption>{e(captions[m])}</figcaption></figure>"
             for m in captions]
    page += ["<h2>Trials</h2>", tshow.to_html(index=False, border=0)]
    if skipped_lines:
        page += [f"<h2>Skipped log files ({len(skipped_lines)})</h2><ul>",
                 *[f"<li>{e(s)}</li>" for s in skipped_lines], "</ul>"]
    page += ["<p>Tables: <a href='trials.csv'>trials.csv</a>, <a href='groups.csv'>groups.csv</a>, "
             "<a href='curves.csv'>curves.csv</a> (full precision).</p></body></html>"]
    index = out / "index.html"
    _write(index, "\n".join(page))  # written last: its presence means the whole report is there
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Summarise a sweep's RUN_DIR/logs (Parquet, one file per trial) into tables, plots, "
                    "report.md and index.html. Groups are configurations without their seed.",
        epilog="example: python -m analysis.report runs/stn_mnist  (then open runs/stn_mnist/report/index.html)",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="the sweep's output folder, the one that holds logs/")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="where to write the report (default: RUN_DIR/report)")
    args = parser.parse_args(argv)
    try:
        index = build_report(args.run_dir, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
