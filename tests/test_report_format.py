"""Tests for how the report reads (issue 15): accuracy in percent with one decimal wherever a person reads it
(the CSVs keep fractions, and every accuracy column's header says so with " [fraction]"), one format for
mean ± std that never wraps, a median row that says which middle group it is, figures without a title of their
own (the caption is the title), accuracy axes in percent, loss panels with their own y axes when their scales
differ more than 10×, and a best-epoch legend in plain words. Logs are written through the sweep's real
ParquetLogger (tests/helpers.py).

    python -m pytest tests/test_report_format.py -q

Data: 4 groups (lr) x 2 seeds, 2 epochs. Best accuracies per seed: lr=0.1 0.90/0.80 (mean 85%), lr=0.05
0.70/0.80 (75%), lr=0.01 0.60/0.70 (65%), lr=0.001 0.50/0.40 (45%). lr=0.1's trials train 100 s and 200 s
(mean 150, std 70.71); every other trial 2 s. With 4 groups the two middle ones are lr=0.05 and lr=0.01.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from analysis import plots
from analysis.report import build_report
from helpers import LogTrial, epoch_metrics, write_logs

BEST = {0.1: (0.90, 0.80), 0.05: (0.70, 0.80), 0.01: (0.60, 0.70), 0.001: (0.50, 0.40)}
SECONDS = {(0.1, 0): 50.0, (0.1, 1): 100.0}  # per epoch; 1 s elsewhere


def _trials() -> list[LogTrial]:
    return [LogTrial(f"t{lr}-{seed}", {"lr": lr, "seed": seed, "epochs": 2},
                     [epoch_metrics(best - 0.1, seconds=SECONDS.get((lr, seed), 1.0), lr=lr),
                      epoch_metrics(best, seconds=SECONDS.get((lr, seed), 1.0), lr=lr)])
            for lr, bests in BEST.items() for seed, best in enumerate(bests)]


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """The report, and every matplotlib Figure its plots module rendered (caught at PNG time)."""
    caught = {}
    original = plots._png

    def keep(fig):
        caught[len(caught)] = fig
        return original(fig)

    plots._png = keep
    try:
        run = tmp_path_factory.mktemp("format") / "run"
        write_logs(run / "logs", _trials(), resources={"cpu": 1, "gpu": 0})
        out = build_report(run).parent
    finally:
        plots._png = original
    return out, list(caught.values())


def _table(md: str, first: str, has: str = "") -> pd.DataFrame:
    """The Markdown table whose header starts with FIRST (and names HAS), as text cells."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |") and f"| {has}" in line)
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return pd.DataFrame(rows[2:], columns=rows[0])


def test_accuracy_in_percent_in_pages_fractions_in_csvs(figures):
    out, _ = figures
    md = (out / "report.md").read_text()
    groups = _table(md, "group").set_index("group")
    assert groups.loc["lr=0.1", "best acc % (mean ± std)"] == "85.0 ± 7.1"
    assert groups.loc["lr=0.001", "best acc % (mean ± std)"] == "45.0 ± 7.1"
    assert groups.loc["lr=0.1", "final acc %"] == "85.0 ± 7.1"
    trials = _table(md, "trial_id", "status").set_index("trial_id")
    assert trials.loc["t0.1-0", "best acc % (epoch)"] == "90.0 (2)"
    assert "Best group: lr=0.1: best test accuracy 85.0 ± 7.1% over 2 seed(s)." in md
    assert "lr: best at 0.1 (85.0%; range over values 45.0–85.0%)" in md  # isolation
    # no accuracy as a fraction in any shown table: every accuracy here is 30% or more, so a cell under an
    # accuracy header that starts below 1 is a fraction (differences in pp excepted)
    lines = md.splitlines()
    starts = [i for i, line in enumerate(lines[:-1]) if line.startswith("| ") and lines[i + 1].startswith("|---")]
    checked = 0
    for i in starts:
        table = _table("\n".join(lines[i:]), lines[i].strip("|").split("|")[0].strip())
        for col in [c for c in table if "acc" in c and not re.search(r"Δ|gain|pp", c)]:
            for cell in table[col]:
                if cell:
                    assert float(re.search(r"[\d.]+", cell).group()) >= 1, (col, cell)
                    checked += 1
    assert checked > 30
    csv = pd.read_csv(out / "groups.csv").set_index("group")
    assert csv.loc["lr=0.1", "best_test_acc_mean [fraction]"] == pytest.approx(0.85)  # the CSV keeps fractions
    page = (out / "index.html").read_text()
    assert "accuracies there are fractions in [0, 1]" in md and "accuracies there are fractions" in page
    assert "'[fraction]' in its header" in md and "[fraction]" in page  # and says how the CSVs mark them


# Every CSV the report writes, with its accuracy columns (accuracies, their spreads and their differences: the
# columns whose header must end in " [fraction]"), written out here rather than taken from analysis/, so that a
# column the report forgets to mark fails. DIFFERENCES may be negative.
VARIANTS = ("test_acc/clean", "test_acc/elastic")
TRIAL_ACCURACIES = ["best_val_acc", "best_test_acc", "final_test_acc",
                    *[f"{kind}_{v}" for v in VARIANTS for kind in ("best", "final")]]
GROUP_ACCURACIES = [f"{c}_{stat}" for c in TRIAL_ACCURACIES for stat in ("mean", "std", "ci95")]
ACCURACY_COLUMNS = {
    "trials.csv": TRIAL_ACCURACIES,
    "groups.csv": GROUP_ACCURACIES,
    "compare_groups.csv": GROUP_ACCURACIES,
    "curves.csv": [f"test_acc_{stat}" for stat in ("mean", "std", "min", "max")]
    + ["test_acc_best_so_far_mean", "val_acc_best_so_far_mean", "train_acc_mean", "val_acc_mean"]
    + [f"{v}_mean" for v in VARIANTS],
    "size_effect.csv": ["best_test_acc_mean", "best_test_acc_std"],
    "tradeoff.csv": ["best_group_acc_at_E", "best_group_best_so_far", "mean_trial_acc_at_E", "mean_trial_best_so_far",
                     "marginal_gain_best_group", "marginal_gain_mean_trial"],
    "comparison.csv": ["best acc (best)", "best acc (reference)", "Δ best acc", "Δ final acc"],
    "confirm.csv": ["baseline_test_acc", "winner_test_acc"],
    "confirm_ranked.csv": ["val_acc_mean", "val_acc_std", "test_acc_mean", "test_acc_std"],
    "pareto.csv": ["best_test_acc"],
    "isolation.csv": ["best_group_acc"],
    "audit.csv": ["best_so_far_at_stop", "acc_at_stop", "winner_acc_at_stop", "winner_best_so_far_at_stop",
                  "gap_to_winner"],
    "compare.csv": ["best acc (mean)"],
    "sigma_curve.csv": [f"{v}_{stat}" for v in (*VARIANTS, "test_acc") for stat in ("mean", "std")],
}
DIFFERENCES = {"marginal_gain_best_group", "marginal_gain_mean_trial", "Δ best acc", "Δ final acc", "gap_to_winner"}
# columns that hold no accuracy and keep their plain names: losses, seconds, epochs, a ratio, ink
PLAIN = {"trials.csv": ["best_test_loss", "best_val_loss", "total_seconds", "best_acc_epoch", "epochs_to_95pct"],
         "groups.csv": ["best_test_loss_mean", "total_seconds_mean", "best_acc_epoch_mean"],
         "curves.csv": ["test_loss_mean", "train_loss_mean", "val_loss_mean"],
         "tradeoff.csv": ["share_of_final_best", "cumulative_compute_gpu_seconds"],
         "comparison.csv": ["Δ epochs run", "Δ seconds / trial"],
         "audit.csv": ["seconds_saved", "epochs_saved"], "compare.csv": ["seconds (total)"],
         "confirm_ranked.csv": ["n_seeds", "epochs_mean"],
         "sigma_curve.csv": ["ink_in_frame"]}


def _every_csv_run(root: Path) -> tuple[Path, Path]:
    """A search (with a confirm phase) whose report writes every CSV there is, and a second run to compare it with:
    a validation split, two test variants, training-set sizes (size_effect.csv) and σ values (sigma_curve.csv)
    that vary, and one trial ASHA stopped after 2 of its 3 epochs (audit.csv)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    trials, phase = [], {}
    for ph in ("search", "confirm"):
        for lr in (0.1, 0.01):
            for size, sigma in ((10, 0.0), (100, 2.0)):
                for seed in (0, 1):
                    best = 0.5 + 3 * lr + size / 1000 + 0.02 * seed  # 0.54 to 0.92
                    stopped = (ph, lr, size, seed) == ("search", 0.01, 10, 1)
                    accs = [best - 0.2, best - 0.1, best][:2 if stopped else 3]
                    tid = f"{ph[0]}{len(trials)}"
                    phase[tid] = ph
                    trials.append(LogTrial(
                        tid, {"lr": lr, "train_per_class": size, "sigma": sigma, "seed": seed, "epochs": 3},
                        [epoch_metrics(a, seconds=2.0, lr=lr, val_acc=a - 0.05, val_loss=1.05 - a,
                                       **{"test_acc/clean": a, "test_acc/elastic": a - 0.3}) for a in accs],
                        end="asha" if stopped else "completed"))
    logs = write_logs(root / "run" / "logs", trials, resources={"cpu": 1, "gpu": 0.5})
    for tid, ph in phase.items():  # a search's logger writes the phase column
        table = pq.read_table(logs / f"{tid}.parquet")
        pq.write_table(table.append_column("phase", pa.array([ph] * table.num_rows, pa.string())),
                       logs / f"{tid}.parquet")
    write_logs(root / "other" / "logs", trials[8:], resources={"cpu": 1, "gpu": 0.5})
    return root / "run", root / "other"


def test_csv_headers_mark_every_accuracy_column_as_a_fraction(tmp_path):
    run, other = _every_csv_run(tmp_path)
    out = build_report(run, compare=other).parent
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(ACCURACY_COLUMNS)  # every CSV of the report
    for name, accuracies in ACCURACY_COLUMNS.items():
        table = pd.read_csv(out / name)
        marked = [c.removesuffix(" [fraction]") for c in table.columns if c.endswith(" [fraction]")]
        assert sorted(marked) == sorted(accuracies), name  # every accuracy column marked, nothing else
        for col in PLAIN.get(name, []):
            assert col in table.columns, (name, col)  # a loss, seconds or epoch column keeps its plain name
        rows = table[~table["run"].str.startswith("Δ")] if name == "compare.csv" else table  # not its Δ row
        for col in accuracies:
            values = rows[f"{col} [fraction]"].dropna()
            assert len(values), (name, col)
            low = -1 if col in DIFFERENCES else 0  # a fraction in [0, 1] (a difference of two: [-1, 1])
            assert values.between(low, 1).all(), (name, col, values.tolist())
    trials = pd.read_csv(out / "trials.csv").set_index("trial_id")
    # c15: lr=0.01, 100 per digit, seed 1: best 0.5 + 0.03 + 0.1 + 0.02, at full precision, not in percent
    assert trials.loc["c15", "best_test_acc [fraction]"] == pytest.approx(0.65)
    assert trials.loc["c15", "best_test_loss"] == pytest.approx(0.35)


def test_mean_and_std_share_one_format_and_do_not_wrap(figures):
    out, _ = figures
    md, page = (out / "report.md").read_text(), (out / "index.html").read_text()
    groups = _table(md, "group").set_index("group")
    # 100 s and 200 s: mean 150, std 70.71; one column, one number of decimals, no exponent
    assert groups.loc["lr=0.1", "training seconds"] == "150.0 ± 70.7"
    assert groups.loc["lr=0.01", "training seconds"] == "2.0 ± 0.0"
    assert "e+" not in md
    assert "<td class='n'>85.0 ± 7.1</td>" in page
    assert re.search(r"td\.n\{[^}]*white-space:nowrap", page)


def test_the_median_row_names_the_middle_group_it_uses(figures):
    out, _ = figures
    c = pd.read_csv(out / "comparison.csv").set_index("comparison")
    # groups by accuracy: 0.1 (85), 0.05 (75), 0.01 (65), 0.001 (45): the middle two are 0.05 and 0.01
    row = c.loc["best vs median group (upper of two)"]
    assert row["reference group"] == "lr=0.05"
    md = (out / "report.md").read_text()
    assert "of the 4 groups ranked by mean best test accuracy, the upper of the two middle ones" in md
    assert "lower median" not in md


def test_figures_carry_no_caption_of_their_own_and_show_percent(figures):
    out, figs = figures
    assert len(figs) >= 6
    md = (out / "report.md").read_text()
    captions = re.findall(r"^\*(.+)\*$", md, flags=re.M)
    for fig in figs:
        texts = [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]
        for text in texts:
            assert len(text) < 40 and not any(text and text in c for c in captions), text
        for ax in fig.axes:
            label = ax.get_ylabel().lower()
            assert "fraction" not in label
            if "(pp)" in label:  # a gain in percentage points
                continue
            if "accuracy" in label or "acc" in label.split():
                assert "(%)" in label, label
                low, high = ax.get_ylim()
                assert high > 2, (label, high)  # percent, not a fraction


def test_best_epoch_legend_in_plain_words():
    trials = pd.DataFrame({"best_acc_epoch": [1, 2, 2, 3], "budget": [3, 3, 3, 3],
                           "stopped_early": [False, True, False, False],
                           "stop_reason": ["completed", "asha", "error", "completed"], "chosen_on": "test"})
    caught = []
    original = plots._png
    plots._png = lambda fig: caught.append(fig) or original(fig)
    try:
        plots.plot_best_epoch_hist(trials)
    finally:
        plots._png = original
    labels = [t.get_text() for t in caught[0].axes[0].get_legend().get_texts()]
    assert labels == ["trained for all its epochs", "stopped early by the scheduler",
                      "ended by an error or a diverged loss"]
    assert not any("(or" in label for label in labels)


def test_loss_panels_get_their_own_axes_when_scales_differ(tmp_path):
    # resnet50's loss 100-400 beside vgg19's 2.3: on one shared axis vgg19 would be a flat line at zero
    losses = {"resnet50": [400.0, 100.0], "vgg19": [2.3, 2.2]}
    trials = [LogTrial(f"{m}-{seed}", {"model": m, "seed": seed, "epochs": 2},
                       [epoch_metrics(0.5 + 0.1 * e, test_loss=loss) for e, loss in enumerate(losses[m])])
              for m in losses for seed in (0, 1)]
    write_logs(tmp_path / "run" / "logs", trials)
    caught = []
    original = plots._png
    plots._png = lambda fig: caught.append(fig) or original(fig)
    try:
        png, caption = plots.plot_curves(*_curves(tmp_path / "run"), "test_loss")
        acc_png, acc_caption = plots.plot_curves(*_curves(tmp_path / "run"), "test_acc")
    finally:
        plots._png = original
    loss_axes = [ax for ax in caught[0].axes if ax.get_visible()]
    tops = [ax.get_ylim()[1] for ax in loss_axes]
    assert max(tops) > 100 and min(tops) < 10  # each panel scaled to its own losses
    assert "own y axis" in caption
    acc_axes = [ax for ax in caught[1].axes if ax.get_visible()]
    assert acc_axes[0].get_ylim() == acc_axes[1].get_ylim()  # accuracies share one scale
    assert "own y axis" not in acc_caption


def _curves(run: Path):
    from analysis.run import load_run

    d = load_run(run)
    return d.curves, d.groups
