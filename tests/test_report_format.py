"""Tests for how the report reads (issue 15): accuracy in percent with one decimal wherever a person reads it
(the CSVs keep fractions), one format for mean ± std that never wraps, a median row that says which middle group
it is, figures without a title of their own (the caption is the title), accuracy axes in percent, loss panels with
their own y axes when their scales differ more than 10×, and a best-epoch legend in plain words. Logs are written
through the sweep's real ParquetLogger (tests/helpers.py).

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
    assert csv.loc["lr=0.1", "best_test_acc_mean"] == pytest.approx(0.85)  # the CSV keeps fractions
    assert "accuracies there are fractions in [0, 1]" in md and "accuracies there are fractions" in (
        out / "index.html").read_text()


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
