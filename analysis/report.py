"""Turn a sweep's Parquet logs into a report: tables, per-epoch plots, Markdown and HTML.

    python -m analysis.report RUN_DIR [--out DIR]     # default DIR = RUN_DIR/report

Writes trials.csv (one row per trial), groups.csv (one row per configuration without its seed),
curves.csv (per group and epoch, across seeds), test_acc.png, test_loss.png, report.md and index.html.
When config/model varies, the two curve plots get one panel per model. When config/train_per_class varies,
size_effect.csv and size_effect.png (best results and their epochs against training-set size) are added.
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
SIZE_COLUMN = "config/train_per_class"  # training images per digit; varies in the transfer-learning grid
MODEL_COLUMN = "config/model"  # the backbone; the curve plots get one panel per value when it varies
SIZE_STATS = ["best_test_acc", "best_acc_epoch", "best_test_loss", "best_loss_epoch"]
SIZE_TITLES = {"best_test_acc": "Best test accuracy", "best_test_loss": "Best test loss",
               "best_acc_epoch": "Epoch of best accuracy", "best_loss_epoch": "Epoch of best loss"}
SIZE_SECTION = "Effect of training-set size"


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


def _top_groups(groups: pd.DataFrame) -> list[str]:
    """The MAX_PLOTTED_GROUPS groups with the best mean best test accuracy, in the table's order."""
    ranked = groups.sort_values("best_test_acc_mean", ascending=False, kind="stable")["group"]
    keep = set(ranked.head(MAX_PLOTTED_GROUPS))
    return [g for g in groups["group"] if g in keep]


def _draw_curves(ax, curv: pd.DataFrame, shown: list[str], labels: dict, colors: dict, metric: str) -> None:
    """One metric per epoch on one axes: a mean line, a ± std band and a dashed train line per group."""
    train = metric.replace("test_", "train_") + "_mean"
    for group in shown:
        g = curv[curv["group"] == group]
        color = colors[group]
        mean, std = g[f"{metric}_mean"], g[f"{metric}_std"]
        ax.plot(g["epoch"], mean, color=color, marker="o", markersize=3, label=labels[group])
        # accuracy lies in [0, 1] and loss is >= 0: a band past those would show impossible values
        lo, hi = (mean - std).clip(lower=0), (mean + std).clip(upper=1 if "acc" in metric else None)
        ax.fill_between(g["epoch"], lo, hi, color=color, alpha=0.2, linewidth=0)
        if train in g:
            ax.plot(g["epoch"], g[train], color=color, linestyle="--", alpha=0.6, linewidth=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")  # "tight" keeps the outside legend in the image
    return buf.getvalue()


def _caption_on_top(fig: Figure, caption: str, hspace: float = 0.35) -> None:
    """The caption above all panels: it grows upwards out of the figure and savefig's tight bbox keeps it, so a
    long caption never covers the panel titles."""
    fig.subplots_adjust(top=0.93, hspace=hspace)  # hspace: room for the x labels of wrapped panel rows
    fig.suptitle(caption.replace("; ", "\n"), fontsize="small", y=1.0, va="bottom")


def plot_curves(curv: pd.DataFrame, groups: pd.DataFrame, metric: str) -> tuple[bytes, str]:
    """PNG bytes of one metric per epoch, one line per group, and the caption that explains it.

    When config/model varies there is one panel per model (shared y axis) with one line per remaining group,
    as in the original study's Tables 3 and 4; MAX_PLOTTED_GROUPS then applies to each panel.
    """
    gcols = [c for c in groups if c.startswith(CONFIG_PREFIX)]
    if MODEL_COLUMN in gcols:
        return _plot_curves_by_model(curv, groups, metric, gcols)
    shown = _top_groups(groups)
    caption = f"{TITLES[metric]} per epoch; {BAND}"
    if len(groups) > len(shown):
        caption += f"; top {len(shown)} of {len(groups)} groups by mean best test accuracy"
    short = dict(zip(groups["group"], groups.apply(group_label, axis=1, columns=gcols, digits=3)))  # legend only
    fig = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend switch, works headless
    ax = fig.add_subplot()
    _draw_curves(ax, curv, shown, short, {g: f"C{i % 10}" for i, g in enumerate(shown)}, metric)
    handles, _ = ax.get_legend_handles_labels()
    if metric.replace("test_", "train_") + "_mean" in curv:
        handles.append(Line2D([], [], color="gray", linestyle="--", label="train (same colour)"))
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the data
    ax.set(xlabel="epoch", ylabel=TITLES[metric] + (" (fraction)" if "acc" in metric else ""))
    ax.set_title(caption.replace("; ", "\n"), fontsize="small")
    return _png(fig), caption


def _plot_curves_by_model(curv: pd.DataFrame, groups: pd.DataFrame, metric: str, gcols: list[str]):
    """plot_curves with one panel per model; a label keeps its colour in every panel, so one legend serves all."""
    rest = [c for c in gcols if c != MODEL_COLUMN]
    model = groups[MODEL_COLUMN].map(format_value)
    labels = dict(zip(groups["group"], groups.apply(group_label, axis=1, columns=rest, digits=3)))
    palette = {lab: f"C{i % 10}" for i, lab in enumerate(dict.fromkeys(labels.values()))}
    colors = {g: palette[lab] for g, lab in labels.items()}
    models = list(dict.fromkeys(model))  # groups are sorted already, so this is the models' sorted order
    panels = [(m, _top_groups(groups[model == m])) for m in models]
    caption = f"{TITLES[metric]} per epoch, one panel per model; {BAND}"
    if any(len(shown) < (model == m).sum() for m, shown in panels):
        caption += f"; in each panel the top {MAX_PLOTTED_GROUPS} groups by mean best test accuracy"
    ncols = min(len(models), 3)  # beyond 3 panels a single row gets too narrow to read
    nrows = -(-len(models) // ncols)
    fig = Figure(figsize=(4.5 * ncols + 2, 4.5 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    for ax, (m, shown) in zip(axes, panels):
        _draw_curves(ax, curv, shown, labels, colors, metric)
        ax.set_title(f"model={m}", fontsize="medium")
        ax.set_xlabel("epoch")
        ax.tick_params(labelleft=True)  # sharey hides the inner tick labels; each panel stays readable alone
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(TITLES[metric] + (" (fraction)" if "acc" in metric else ""))
    on_show = {labels[g] for _, shown in panels for g in shown}
    shown_labels = [lab for lab in palette if lab in on_show]  # palette follows the groups' sorted order
    handles = [Line2D([], [], color=palette[lab], marker="o", markersize=3, label=lab) for lab in shown_labels]
    if metric.replace("test_", "train_") + "_mean" in curv:
        handles.append(Line2D([], [], color="gray", linestyle="--", label="train (same colour)"))
    axes[ncols - 1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    _caption_on_top(fig, caption)
    return _png(fig), caption


def _size_frame(trials: pd.DataFrame, gcols: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Trials with a numeric training-set size, plus "line" (the label of the other varying config values)."""
    rest = [c for c in gcols if c != SIZE_COLUMN]
    data = trials.assign(size=pd.to_numeric(trials[SIZE_COLUMN], errors="coerce"))
    data = data[data["size"].notna()]  # "None" (all images) has no place on a size axis
    data = data.assign(line=data.apply(group_label, axis=1, columns=rest) if len(data) else [])
    keys = rest + ["size"]
    return data.sort_values(keys, key=_order_key, kind="stable"), rest


def size_effect(trials: pd.DataFrame, gcols: list[str]) -> pd.DataFrame | None:
    """Per line (the other varying config values) and training-set size: n_seeds and mean/std (ddof=1) of the
    best test accuracy / loss and their epochs, in numeric size order; None when train_per_class is fixed."""
    if SIZE_COLUMN not in gcols:
        return None
    data, rest = _size_frame(trials, gcols)
    if data.empty:
        return None
    by = data.groupby(["line", "size"], sort=False)
    out = by[rest].first() if rest else pd.DataFrame(index=by.size().index)
    out["n_seeds"] = by.size()
    stats = data[SIZE_STATS].apply(pd.to_numeric, errors="coerce").astype(float).groupby(
        [data["line"], data["size"]], sort=False)
    for col in SIZE_STATS:
        out[f"{col}_mean"], out[f"{col}_std"] = stats[col].mean(), stats[col].std()
    out = out.reset_index().rename(columns={"size": SIZE_COLUMN})
    if (out[SIZE_COLUMN] % 1 == 0).all():
        out[SIZE_COLUMN] = out[SIZE_COLUMN].astype("int64")  # images per digit are counts: 10, not 10.0
    return out[["line", *rest, SIZE_COLUMN, *[c for c in out if c not in ("line", SIZE_COLUMN, *rest)]]]


def plot_size_effect(table: pd.DataFrame, trials: pd.DataFrame, gcols: list[str]) -> tuple[bytes, str]:
    """PNG bytes of the 2x2 size-effect figure (the original study's Table 2) and its caption."""
    data, rest = _size_frame(trials, gcols)
    lines = list(dict.fromkeys(table["line"]))
    ranked = table.groupby("line", sort=False)["best_test_acc_mean"].mean().sort_values(ascending=False,
                                                                                         kind="stable")
    shown = [ln for ln in lines if ln in set(ranked.index[:MAX_PLOTTED_GROUPS])]
    short = dict(zip(table["line"], table.apply(group_label, axis=1, columns=rest, digits=3)))  # legend only
    sizes = sorted(table[SIZE_COLUMN].unique())
    # Lines are nudged sideways a little so that error bars at the same size do not hide each other.
    span = (sizes[-1] - sizes[0]) or 1
    step = 0.012 * span if len(shown) > 1 else 0.0
    caption = ("Best test accuracy, best test loss and the epochs where each was reached, against training-set "
               "size (images per digit); marker = mean across seeds, bar = ± 1 std (none with one seed), "
               "faint dots = single seeds, lines nudged sideways so they do not overlap; best values and their "
               "epochs are picked in hindsight on the test set")
    if len(lines) > len(shown):
        caption += f"; top {len(shown)} of {len(lines)} lines by mean best test accuracy"
    dropped = len(trials) - len(data)
    if dropped:
        caption += f"; {dropped} trial(s) without a numeric train_per_class not shown"
    fig = Figure(figsize=(11, 8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, col in zip(axes, ["best_test_acc", "best_test_loss", "best_acc_epoch", "best_loss_epoch"]):
        for i, line in enumerate(shown):
            color, dx = f"C{i % 10}", (i - (len(shown) - 1) / 2) * step
            rows, seeds = table[table["line"] == line], data[data["line"] == line]
            mean, std = rows[f"{col}_mean"], rows[f"{col}_std"].fillna(0)
            lo, hi = mean - std, mean + std
            if col == "best_test_acc":  # accuracy is a fraction: a bar past 1 would show impossible values
                lo, hi = lo.clip(0, 1), hi.clip(0, 1)
            ax.errorbar(rows[SIZE_COLUMN] + dx, mean, yerr=[mean - lo, hi - mean], color=color, marker="o",
                        markersize=4, capsize=3, label=short[line])
            ax.plot(seeds["size"] + dx, pd.to_numeric(seeds[col], errors="coerce").astype(float), color=color,
                    marker="o", markersize=3, linestyle="none", alpha=0.3)
        ax.set_title(SIZE_TITLES[col], fontsize="medium")
        ax.set_xticks(sizes)
        if "epoch" in col:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("training images per digit (train_per_class)")
        ax.set_ylabel("epoch" if "epoch" in col else SIZE_TITLES[col] + (" (fraction)" if "acc" in col else ""))
        ax.grid(alpha=0.3)
    handles, _ = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="gray", marker="o", markersize=3, linestyle="none", alpha=0.3,
                          label="single seeds"))
    axes[1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    _caption_on_top(fig, caption, hspace=0.2)  # shared x: the top row has no x labels
    return _png(fig), caption


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
    sizes = size_effect(trials, gcols)
    size_caption = None
    if sizes is not None:
        _write(out / "size_effect.csv", sizes.to_csv(index=False))
        png, size_caption = plot_size_effect(sizes, trials, gcols)
        _write(out / "size_effect.png", png)
    csvs = ["trials.csv", "groups.csv", "curves.csv"] + (["size_effect.csv"] if sizes is not None else [])

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
    if size_caption:
        md += [f"## {SIZE_SECTION}", "", "![size_effect](size_effect.png)", "", f"*{size_caption}*", ""]
    md += [f"## {TITLES[m]}\n\n![{m}]({m}.png)\n\n*{captions[m]}*\n" for m in captions]
    md += ["## Trials", "", markdown_table(tshow), ""]
    if skipped_lines:
        md += [f"## Skipped log files ({len(skipped_lines)})", "", *[f"- {s}" for s in skipped_lines], ""]
    md += [f"Tables: {', '.join(csvs)} (full precision).", ""]
    _write(out / "report.md", "\n".join(md))

    e = html.escape
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
            f"<style>{CSS}</style></head><body><h1>{e(title)}</h1>",
            f"<ul>{''.join(f'<li>{e(f)}</li>' for f in facts)}</ul><p class='note'>{e(HINDSIGHT)}</p>",
            "<h2>Groups (configuration without seed)</h2>", gshow.to_html(index=False, border=0)]
    if size_caption:
        page += [f"<h2>{e(SIZE_SECTION)}</h2><figure><img src='size_effect.png' alt='{e(SIZE_SECTION)}'>"
                 f"<figcaption>{e(size_caption)}</figcaption></figure>"]
    page += [f"<figure><img src='{m}.png' alt='{e(TITLES[m])}'><figcaption>{e(captions[m])}</figcaption></figure>"
             for m in captions]
    page += ["<h2>Trials</h2>", tshow.to_html(index=False, border=0)]
    if skipped_lines:
        page += [f"<h2>Skipped log files ({len(skipped_lines)})</h2><ul>",
                 *[f"<li>{e(s)}</li>" for s in skipped_lines], "</ul>"]
    links = ", ".join(f"<a href='{c}'>{c}</a>" for c in csvs)
    page += [f"<p>Tables: {links} (full precision).</p></body></html>"]
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
