"""Figures for analysis.report as PNG bytes plus a caption that explains them (matplotlib's Agg canvas only: no
pyplot, no display, no ray, no torch). Every plot shows at most MAX_PLOTTED_GROUPS lines (the best groups) or
draws scatter points in one call, so a 20,000-trial sweep plots as fast as a small one.

The caption is the figure's title: the page shows it under the image, so the PNG carries none (panel titles
only). Accuracy axes are in percent; panels whose value ranges differ more than SHARED_SCALE times get their own
y axis, and a loss spanning more than LOG_SPAN times within one axes is drawn on a log scale.

    png, caption = plot_curves(curves_table, groups_table, "test_acc")
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

from analysis.logs import CONFIG_PREFIX, SHOWN_DIGITS, _formatted, format_value, group_labels
from analysis.tables import PLATEAU_PP, _order_key, choice_phrase, chosen_on, rank_column

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
SHARED_SCALE = 10  # panels share a y axis only while their largest values are within this factor
LOG_SPAN = 100  # a loss axes whose values span more than this factor goes to a log scale
PCT = 100  # accuracy is a fraction in the logs, percent on every axis
TRAIN_LABEL = "dashed: training set"



def _top_groups(groups: pd.DataFrame) -> list[str]:
    """The MAX_PLOTTED_GROUPS best groups (analysis.tables.rank_column), in the table's order."""
    ranked = groups.sort_values(rank_column(groups), ascending=False, kind="stable")["group"]
    keep = set(ranked.head(MAX_PLOTTED_GROUPS))
    return [g for g in groups["group"] if g in keep]


def _ranked_by(groups: pd.DataFrame) -> str:
    return "mean validation accuracy" if rank_column(groups) == "best_val_acc_mean" else "mean best test accuracy"


def _rows_of(table: pd.DataFrame, column: str, keys: list[str]) -> dict[str, pd.DataFrame]:
    """The rows of ``table`` for each of ``keys`` (by ``column``), split in one pass: a comparison over the whole
    table per key costs a scan of every row (a 2,000-group curves table has 100,000) for each line drawn."""
    sub = table[table[column].isin(keys)]
    found = dict(tuple(sub.groupby(column, sort=False, observed=True)))
    return {k: found.get(k, sub.iloc[:0]) for k in keys}


def _draw_curves(ax, curv: pd.DataFrame, shown: list[str], labels: dict, colors: dict, metric: str) -> None:
    """One metric per epoch on one axes: a mean line, a ± std band and a dashed train line per group."""
    train = metric.replace("test_", "train_") + "_mean"
    scale = PCT if "acc" in metric else 1
    rows = _rows_of(curv, "group", shown)
    for group in shown:
        g = rows[group]
        color = colors[group]
        mean, std = g[f"{metric}_mean"] * scale, g[f"{metric}_std"] * scale
        ax.plot(g["epoch"], mean, color=color, marker="o", markersize=3, label=labels[group])
        # accuracy lies in [0, 100]% and loss is >= 0: a band past those would show impossible values
        lo, hi = (mean - std).clip(lower=0), (mean + std).clip(upper=PCT if "acc" in metric else None)
        ax.fill_between(g["epoch"], lo, hi, color=color, alpha=0.2, linewidth=0)
        if train in g:
            ax.plot(g["epoch"], g[train] * scale, color=color, linestyle="--", alpha=0.6, linewidth=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _plotted_range(curv: pd.DataFrame, shown: list[str], metric: str) -> tuple[float, float]:
    """(smallest positive, largest) value a curve axes draws for these groups: means, means + std, train."""
    rows = curv[curv["group"].isin(shown)]
    cols = [f"{metric}_mean", metric.replace("test_", "train_") + "_mean"]
    values = [rows[c].to_numpy(float) for c in cols if c in rows]
    values.append((rows[f"{metric}_mean"] + rows[f"{metric}_std"].fillna(0)).to_numpy(float))
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    return (float(v.min()), float(v.max())) if len(v) else (np.nan, np.nan)


def _loss_scale(ax, low: float, high: float, metric: str) -> bool:
    """Log y for a loss whose values span more than LOG_SPAN times (a line near 0 beside one near 400 would be
    flat); True when it did."""
    if "loss" in metric and low > 0 and high / low > LOG_SPAN:
        ax.set_yscale("log")
        # 1-2-5 ticks as plain numbers: with decade ticks only, a loss of 2.3 sits below the lowest label
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        return True
    return False


def _ylabel(metric: str) -> str:
    return TITLES[metric] + (" (%)" if "acc" in metric else "")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")  # "tight" keeps the outside legend in the image
    return buf.getvalue()


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
        caption += f"; top {len(shown)} of {len(groups)} groups by {_ranked_by(groups)}"
    if "loss" in metric and _spans(*_plotted_range(curv, shown, metric)):
        caption += f"; log scale: the losses span more than {LOG_SPAN}×"
    short = dict(zip(groups["group"], group_labels(groups, gcols, digits=SHOWN_DIGITS)))
    fig = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend switch, works headless
    ax = fig.add_subplot()
    _draw_curves(ax, curv, shown, short, {g: f"C{i % 10}" for i, g in enumerate(shown)}, metric)
    handles, _ = ax.get_legend_handles_labels()
    if metric.replace("test_", "train_") + "_mean" in curv:
        handles.append(Line2D([], [], color="gray", linestyle="--", label=TRAIN_LABEL))
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the data
    ax.set(xlabel="epoch", ylabel=_ylabel(metric))
    _loss_scale(ax, *_plotted_range(curv, shown, metric), metric)
    return _png(fig), caption


def _spans(low: float, high: float) -> bool:
    return bool(low > 0 and high / low > LOG_SPAN)


def _plot_curves_by_model(curv: pd.DataFrame, groups: pd.DataFrame, metric: str, gcols: list[str]):
    """plot_curves with one panel per model; a label keeps its colour in every panel, so one legend serves all.
    The panels share a y axis unless their largest values differ more than SHARED_SCALE times (a loss of 2.3
    would be a flat line at 0 beside one of 400); a panel whose loss spans more than LOG_SPAN times is log."""
    rest = [c for c in gcols if c != MODEL_COLUMN]
    model = groups[MODEL_COLUMN].map(format_value)
    labels = dict(zip(groups["group"], group_labels(groups, rest, digits=SHOWN_DIGITS)))
    palette = {lab: f"C{i % 10}" for i, lab in enumerate(dict.fromkeys(labels.values()))}
    colors = {g: palette[lab] for g, lab in labels.items()}
    models = list(dict.fromkeys(model))  # groups are sorted already, so this is the models' sorted order
    panels = [(m, _top_groups(groups[model == m])) for m in models]
    caption = f"{TITLES[metric]} per epoch, one panel per model; {BAND}"
    if any(len(shown) < (model == m).sum() for m, shown in panels):
        caption += f"; in each panel the top {MAX_PLOTTED_GROUPS} groups by {_ranked_by(groups)}"
    ranges = [_plotted_range(curv, shown, metric) for _, shown in panels]
    tops = [hi for _, hi in ranges if hi > 0]
    logs = ["loss" in metric and _spans(*r) for r in ranges]
    shared = not any(logs) and (not tops or max(tops) / min(tops) <= SHARED_SCALE)
    if not shared:
        caption += ("; each panel has its own y axis (their scales differ more than "
                    f"{SHARED_SCALE}×)" + (f", log where a panel's losses span more than {LOG_SPAN}×" if any(logs)
                                          else ""))
    ncols = min(len(models), 3)  # beyond 3 panels a single row gets too narrow to read
    nrows = -(-len(models) // ncols)
    fig = Figure(figsize=(4.5 * ncols + 2, 4.5 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharey=shared, squeeze=False).ravel()
    for ax, (m, shown), (low, high) in zip(axes, panels, ranges):
        _draw_curves(ax, curv, shown, labels, colors, metric)
        ax.set_title(f"model={m}", fontsize="medium")
        ax.set_xlabel("epoch")
        ax.tick_params(labelleft=True)  # sharey hides the inner tick labels; each panel stays readable alone
        if not shared:
            _loss_scale(ax, low, high, metric)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(_ylabel(metric))
    on_show = {labels[g] for _, shown in panels for g in shown}
    shown_labels = [lab for lab in palette if lab in on_show]  # palette follows the groups' sorted order
    handles = [Line2D([], [], color=palette[lab], marker="o", markersize=3, label=lab) for lab in shown_labels]
    if metric.replace("test_", "train_") + "_mean" in curv:
        handles.append(Line2D([], [], color="gray", linestyle="--", label=TRAIN_LABEL))
    axes[ncols - 1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.subplots_adjust(hspace=0.35, wspace=0.25)  # room for each panel's x label and its own tick labels
    return _png(fig), caption


def _size_frame(trials: pd.DataFrame, gcols: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Trials with a numeric training-set size, plus "line" (the label of the other varying config values)."""
    rest = [c for c in gcols if c != SIZE_COLUMN]
    data = trials.assign(size=pd.to_numeric(trials[SIZE_COLUMN], errors="coerce"))
    data = data[data["size"].notna()]  # "None" (all images) has no place on a size axis
    data = data.assign(line=group_labels(data, rest))
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
    short = dict(zip(table["line"], group_labels(table, rest, digits=SHOWN_DIGITS)))
    sizes = sorted(table[SIZE_COLUMN].unique())
    # Lines are nudged sideways a little so that error bars at the same size do not hide each other.
    span = (sizes[-1] - sizes[0]) or 1
    step = 0.012 * span if len(shown) > 1 else 0.0
    caption = ("Best test accuracy, best test loss and the epochs where each was reached, against training-set "
               "size (images per digit); marker = mean across seeds, bar = ± 1 std (none with one seed), "
               "faint dots = single seeds, lines nudged sideways so they do not overlap; best values and their "
               f"epochs are {choice_phrase(trials)}")
    if len(lines) > len(shown):
        caption += f"; top {len(shown)} of {len(lines)} lines by mean best test accuracy"
    dropped = len(trials) - len(data)
    if dropped:
        caption += f"; {dropped} trial(s) without a numeric train_per_class not shown"
    fig = Figure(figsize=(11, 8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    table_rows, seed_rows = _rows_of(table, "line", shown), _rows_of(data, "line", shown)
    for ax, col in zip(axes, ["best_test_acc", "best_test_loss", "best_acc_epoch", "best_loss_epoch"]):
        for i, line in enumerate(shown):
            color, dx = f"C{i % 10}", (i - (len(shown) - 1) / 2) * step
            rows, seeds = table_rows[line], seed_rows[line]
            scale = PCT if col == "best_test_acc" else 1
            mean, std = rows[f"{col}_mean"] * scale, rows[f"{col}_std"].fillna(0) * scale
            lo, hi = mean - std, mean + std
            if col == "best_test_acc":  # a bar past 0 or 100% would show impossible values
                lo, hi = lo.clip(0, PCT), hi.clip(0, PCT)
            ax.errorbar(rows[SIZE_COLUMN] + dx, mean, yerr=[mean - lo, hi - mean], color=color, marker="o",
                        markersize=4, capsize=3, label=short[line])
            ax.plot(seeds["size"] + dx, pd.to_numeric(seeds[col], errors="coerce").astype(float) * scale,
                    color=color, marker="o", markersize=3, linestyle="none", alpha=0.3)
        ax.set_title(SIZE_TITLES[col], fontsize="medium")
        ax.set_xticks(sizes)
        if "epoch" in col:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("training images per digit (train_per_class)")
        ax.set_ylabel("epoch" if "epoch" in col else SIZE_TITLES[col] + (" (%)" if "acc" in col else ""))
        if "epoch" in col and (lim := ax.get_ylim())[1] - lim[0] < 2:
            # a flat line gets ±5% around its value, too narrow for two whole epochs: the ticks would read 1.975
            middle = round(sum(lim) / 2)
            ax.set_ylim(middle - 1, middle + 1)
        ax.grid(alpha=0.3)
        if col == "best_test_loss":
            low, high = _positive_range(table_rows, shown, "best_test_loss_mean")
            if _loss_scale(ax, low, high, "loss"):
                caption += f"; best test loss on a log scale (it spans more than {LOG_SPAN}×)"
    handles, _ = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="gray", marker="o", markersize=3, linestyle="none", alpha=0.3,
                          label="single seeds"))
    axes[1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.subplots_adjust(hspace=0.2)  # shared x: the top row has no x labels
    return _png(fig), caption


def _positive_range(rows: dict[str, pd.DataFrame], shown: list[str], col: str) -> tuple[float, float]:
    v = np.concatenate([rows[line][col].to_numpy(float) for line in shown]) if shown else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    return (float(v.min()), float(v.max())) if len(v) else (np.nan, np.nan)



def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend switch, works headless
    return fig


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def plot_tradeoff(budget: pd.DataFrame, plateau: float, compute: str, by_val: bool = False) -> tuple[bytes, str]:
    """Accuracy against the epoch budget (left) and the marginal gain of each extra epoch (right); ``by_val``:
    best-so-far epochs and the best group were chosen on the validation split (analysis.tradeoff.budget_table)."""
    fig = _figure(12, 4.5)
    ax, ax2 = fig.subplots(1, 2)
    E = budget["E"]
    ax.plot(E, budget["best_group_best_so_far"] * PCT, color="C0", label="best group, best-so-far")
    ax.plot(E, budget["best_group_acc_at_E"] * PCT, color="C0", linestyle="--", label="best group, at epoch E")
    ax.plot(E, budget["mean_trial_best_so_far"] * PCT, color="C1", label="average trial, best-so-far")
    ax.plot(E, budget["mean_trial_acc_at_E"] * PCT, color="C1", linestyle="--", label="average trial, at epoch E")
    if not np.isnan(plateau):
        ax.axvline(plateau, color="gray", linestyle=":", label=f"plateau (epoch {plateau:g})")
    ax.set(xlabel="epoch budget E", ylabel="test accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)  # under it, off the lines
    ax2.bar(E, budget["marginal_gain_best_group"].fillna(0) * 100, color="C0", alpha=0.7, label="best group")
    # no point at E=1 (nothing before it to gain on): a 0 there would read as a first epoch that added nothing
    ax2.plot(E, budget["marginal_gain_mean_trial"] * 100, color="C1", marker="o", markersize=2,
             label="average trial")
    ax2.axhline(0, color="black", linewidth=0.5)
    ax2.set(xlabel="epoch budget E", ylabel="gain in best-so-far accuracy from epoch E (pp)")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    chosen = ("the test accuracy at the epoch up to E with the best validation accuracy" if by_val else
              "the best epoch up to E, chosen on the test set, hence optimistic")
    ranked = "validation" if by_val else "test"
    caption = (f"Test accuracy if every trial had stopped at epoch E: solid = best-so-far ({chosen}), dashed = the "
               f"accuracy at epoch E itself; best group = the group with the highest mean {ranked} accuracy across "
               "seeds at E, average trial = the mean over all trials that reached E; "
               f"right: percentage points gained by the E-th epoch; plateau = first E whose best-so-far is within "
               f"{PLATEAU_PP * 100:g} pp of the final best")
    fig.subplots_adjust(wspace=0.25)
    return _png(fig), caption


COMPUTE_TITLES = {"compute_gpu_seconds": "GPU-seconds per trial (seconds × GPU share)",
                  "compute_seconds": "seconds per trial"}


def plot_pareto(trials: pd.DataFrame, front: pd.Series, compute: str, marks: dict[str, tuple[str, str]],
                features: bool = False) -> tuple[bytes, str]:
    """Best accuracy against compute per trial, the Pareto front as a step line; marks: what to call a group's
    trials -> (the group, its label as the page shows it); ``features``: compute includes each trial's share of the
    feature pass (the axis label says so)."""
    fig = _figure(9, 5.5)
    ax = fig.add_subplot()
    x, y = trials[compute].astype(float), trials["best_test_acc"].astype(float) * PCT
    many = len(trials) > 500  # thousands of dots need to be small and faint; a few dozen need to be seen
    ax.scatter(x, y, s=6 if many else 25, color="gray", alpha=0.35 if many else 0.6, linewidths=0,
               rasterized=len(trials) > 2000, label="trial")
    f = trials[front].sort_values(compute)
    ax.step(f[compute], f["best_test_acc"] * PCT, where="post", color="C3", marker="o", markersize=4,
            label=f"Pareto front ({len(f)} trials)")
    for i, (name, (group, shown)) in enumerate(marks.items()):
        sel = trials["group"] == group
        ax.scatter(x[sel], y[sel], s=40, marker="*^"[i % 2], color=f"C{i}", zorder=3,
                   label=f"{name}: {_short(shown, 50)}")
    if x.min() > 0 and x.max() / max(x.min(), 1e-12) > 50:
        ax.set_xscale("log")
    what = COMPUTE_TITLES[compute] + (", training + its share of the feature pass" if features else "")
    ax.set(xlabel=what, ylabel="best test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    caption = (f"Best test accuracy against compute, one dot per trial; red = the Pareto front (no other trial is "
               f"both at least as accurate and cheaper); compute = {what}; best accuracy: its "
               f"epoch {choice_phrase(trials)}")
    return _png(fig), caption


def plot_best_epoch_hist(trials: pd.DataFrame) -> tuple[bytes, str]:
    """How many trials reached their best accuracy at each epoch, stacked by how each trial ended."""
    fig = _figure(9, 4)
    ax = fig.add_subplot()
    epoch = trials["best_acc_epoch"].astype("float").fillna(0).astype(int).to_numpy()
    stopped = trials["stopped_early"].to_numpy(bool)
    reason = trials["stop_reason"].astype(object).to_numpy()
    failed = ~stopped & np.isin(reason, ["error", "diverged"])
    bins = np.arange(1, max(epoch.max(), int(trials["budget"].max())) + 1)
    bottom = np.zeros(len(bins))
    for mask, color, label in ((~stopped & ~failed, "C0", "trained for all its epochs"),
                               (stopped, "C1", "stopped early by the scheduler"),
                               (failed, "C3", "ended by an error or a diverged loss")):
        counts = np.bincount(epoch[mask], minlength=bins[-1] + 1)[1:]
        if counts.any() or label.startswith("trained"):
            ax.bar(bins, counts, bottom=bottom, color=color, label=label)
            bottom += counts
    ax.set(xlabel="epoch of best test accuracy", ylabel="trials")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    tie = "ties to the lower val_loss, then the earlier" if chosen_on(trials) != "test" else "earliest on ties"
    caption = (f"Epoch at which each trial reached its best accuracy ({tie}), {choice_phrase(trials)}; "
               "a pile-up at the last epoch means the budget cut training short")
    return _png(fig), caption


def plot_isolation(iso: pd.DataFrame, groups: pd.DataFrame, gcols: list[str]) -> tuple[bytes, str]:
    """One panel per varied hyperparameter: best group mean accuracy at each value (over all other values)."""
    n = len(gcols)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig = _figure(4.5 * ncols, 3.6 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    y = groups["best_test_acc_mean"].astype(float) * PCT
    dot = {"s": 8, "alpha": 0.3} if len(groups) > 500 else {"s": 20, "alpha": 0.5}  # a few groups must be seen
    for ax, col in zip(axes, gcols):
        name = col.removeprefix(CONFIG_PREFIX)
        part = iso[iso["param"] == name]
        num = pd.to_numeric(groups[col], errors="coerce")
        if num.notna().all() and part["numeric_value"].notna().all():  # numbers on a true (maybe log) axis
            rast = len(groups) > 2000
            if len(part) > 12:  # continuous (lr, ...): every group a dot, the 10 best highlighted
                ax.scatter(num, y, s=6, alpha=0.4, color="C0", linewidths=0, rasterized=rast)
                top = groups.loc[y.nlargest(min(10, len(y))).index]
                ax.scatter(pd.to_numeric(top[col]), top["best_test_acc_mean"] * PCT, s=18, color="C3",
                           label="top 10 groups")
                ax.legend(fontsize="x-small")
            else:
                ax.scatter(num, y, color="gray", linewidths=0, rasterized=rast, **dot)
                ax.plot(part["numeric_value"], part["best_group_acc"] * PCT, color="C0", marker="o")
            if num.min() > 0 and num.max() / num.min() > 20:
                ax.set_xscale("log")
        else:
            labels = part["value"].tolist()
            pos = {v: i for i, v in enumerate(labels)}
            text = _formatted(groups[col])
            xs = np.array([pos.get(v, np.nan) for v in text], dtype=float)
            ax.scatter(xs, y, color="gray", linewidths=0, rasterized=len(groups) > 2000, **dot)
            ax.plot(range(len(labels)), part["best_group_acc"] * PCT, color="C0", marker="o")
            ax.set_xticks(range(len(labels)), [_short(v, 12) for v in labels],
                          rotation=45 if len(labels) > 6 else 0, fontsize="small")
        ax.set_title(name, fontsize="medium")
        ax.set_ylabel("mean best test accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    caption = ("Isolation plots: for each varied hyperparameter, the best group (mean across seeds of the best test "
               "accuracy) at each value, taking the best over all other hyperparameters; gray dots = every group; "
               "numeric values on a numeric axis (log when they span decades); with more than 12 values a scatter "
               "of every group, the 10 best in red")
    fig.subplots_adjust(wspace=0.3, hspace=0.5)  # room for each panel's own y label and rotated x labels
    return _png(fig), caption


MAX_AUDIT_LINES = 200  # partial curves drawn in the audit plot: those that came closest to the winner


def plot_audit(df: pd.DataFrame, audit: pd.DataFrame, facts: dict) -> tuple[bytes, str]:
    """The winner's best-so-far curve against the stopped trials' partial best-so-far curves and stop points."""
    fig = _figure(10, 5)
    ax = fig.add_subplot()
    shown = audit.nlargest(MAX_AUDIT_LINES, "gap_to_winner")
    sub = df[df["trial_id"].isin(shown["trial_id"])][["trial_id", "epoch", "test_acc"]]
    sub = sub.assign(bsf=sub.groupby("trial_id", sort=False)["test_acc"].cummax() * PCT)
    segs = [g[["epoch", "bsf"]].to_numpy(float) for _, g in sub.groupby("trial_id", sort=False)]
    ax.add_collection(LineCollection(segs, colors="gray", alpha=0.35, linewidths=0.8))
    ahead = shown["ahead_of_winner"].to_numpy(bool)
    ax.scatter(shown["stop_epoch"][~ahead], shown["best_so_far_at_stop"][~ahead] * PCT, marker="x", color="C0",
               s=20, label="stopped trial, behind the winner")
    if ahead.any():
        ax.scatter(shown["stop_epoch"][ahead], shown["best_so_far_at_stop"][ahead] * PCT, marker="x", color="C3",
                   s=30, label="stopped trial, ahead of the winner at that epoch")
    w = df[df["trial_id"] == facts["winner"]]
    ax.plot(w["epoch"], w["test_acc"].cummax() * PCT, color="black", linewidth=2,
            label=f"winner {facts['winner']} (best-so-far)")
    ax.autoscale()
    ax.set(xlabel="epoch", ylabel="best-so-far test accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    caption = ("Early stopping audit: best-so-far test accuracy of the trials a scheduler stopped (gray, x = where "
               "it stopped) against the eventual winner's (black) at the same epoch")
    if len(audit) > len(shown):
        caption += f"; the {len(shown)} of {len(audit)} stopped trials closest to the winner"
    return _png(fig), caption


def plot_variants(curv: pd.DataFrame, groups: pd.DataFrame, variants: list[str]) -> tuple[bytes, str]:
    """One panel per test variant (test_acc/clean, /elastic, ...): mean accuracy per epoch of the top groups."""
    shown = _top_groups(groups)
    gcols = [c for c in groups if c.startswith(CONFIG_PREFIX)]
    labels = dict(zip(groups["group"], group_labels(groups, gcols, digits=SHOWN_DIGITS)))
    ncols = min(len(variants), 3)
    nrows = -(-len(variants) // ncols)
    fig = _figure(4.5 * ncols + 2, 4 * nrows)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    by_group = _rows_of(curv, "group", shown)
    for ax, v in zip(axes, variants):
        for i, g in enumerate(shown):
            rows = by_group[g]
            ax.plot(rows["epoch"], rows[f"{v}_mean"] * PCT, color=f"C{i % 10}", marker="o", markersize=3,
                    label=labels[g])
        ax.set_title(v.removeprefix("test_acc/"), fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelleft=True)
        ax.grid(alpha=0.3)
    for ax in axes[len(variants):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("test accuracy (%)")
    axes[ncols - 1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    caption = "Test accuracy per epoch on each test variant, one panel per variant; line = mean across seeds"
    if len(groups) > len(shown):
        caption += f"; top {len(shown)} of {len(groups)} groups by {_ranked_by(groups)}"
    fig.subplots_adjust(hspace=0.35)
    return _png(fig), caption


def plot_compare(curves_by_run: dict[str, pd.DataFrame], groups_by_run: dict[str, pd.DataFrame],
                 labels: dict[tuple[str, str], str], top: int = 3) -> tuple[bytes, str]:
    """Mean test accuracy per epoch of each run's best groups on one axes: one line style per run;
    labels: (run, group) -> the legend text (groups labelled by what varies across both runs)."""
    fig = _figure(10, 5)
    ax = fig.add_subplot()
    styles = ["-", "--", ":", "-."]
    i = 0
    for k, (run, curv) in enumerate(curves_by_run.items()):
        best = groups_by_run[run].nlargest(top, rank_column(groups_by_run[run]))["group"]
        for g in best:
            rows = curv[curv["group"] == g]
            ax.plot(rows["epoch"], rows["test_acc_mean"] * PCT, linestyle=styles[k % 4], color=f"C{i % 10}", marker="o",
                    markersize=3, label=f"{run}: {_short(labels.get((run, g), g), 50)}")
            i += 1
    ax.set(xlabel="epoch", ylabel="test accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    caption = (f"Test accuracy per epoch of the {top} best groups of each run (mean across seeds); solid = this "
               "run, dashed = the compared run")
    return _png(fig), caption
