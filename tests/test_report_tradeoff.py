"""Tests for the tradeoff parts of analysis.report on hand-made logs with known numbers (no ray, no torch):
epochs to 95/99/100% of the best, plateau, GPU-seconds, t-intervals, the epoch-budget table, tuned vs baseline
(no Δ against a baseline stopped early), Pareto membership, isolation, the early-stopping audit, per-variant
tables, bad files, --compare and the section hook. The report of a real smoke search is checked in
tests/test_search.py, on the search it runs.

    python -m pytest tests/test_report_tradeoff.py -q

Data (written through the sweep's real ParquetLogger): budget 4 epochs. Group lr=0.1: a0, a1, a2 (10 s/epoch);
group lr=0.01: b0, b1 and b2 (ASHA-stopped after epoch 2; 5 s/epoch); group lr=0.001: c0 (ASHA-stopped after
epoch 1, but ahead of the winner a1 there; 2 s/epoch). Every trial holds half a GPU.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis import report
from analysis.report import Section, build_report
from analysis.tables import t975
from helpers import PNG_MAGIC, LogTrial, epoch_metrics, run_cli, write_logs

BUDGET = 4
TRIALS = {  # trial_id -> (lr, seed, test_acc per epoch, seconds per epoch, stop_reason)
    "a0": (0.1, 0, [0.50, 0.90, 0.96, 0.95], 10.0, "completed"),
    "a1": (0.1, 1, [0.80, 0.97, 0.99, 1.00], 10.0, "completed"),
    "a2": (0.1, 2, [0.70, 0.70, 0.70, 0.70], 10.0, "completed"),
    "b0": (0.01, 0, [0.30, 0.50, 0.60, 0.62], 5.0, "completed"),
    "b1": (0.01, 1, [0.40, 0.50, 0.55, 0.60], 5.0, "completed"),
    "b2": (0.01, 2, [0.20, 0.30], 5.0, "asha"),
    "c0": (0.001, 0, [0.85], 2.0, "asha"),
}


def write_run(run: Path, trials=TRIALS, gpus=True, sweep=True) -> Path:
    logs = [LogTrial(tid, {"batch_size": 64, "epochs": BUDGET, "lr": lr, "seed": seed},
                     [epoch_metrics(a, seconds=seconds, lr=lr, **{"test_acc/clean": a, "test_acc/zoom": a - 0.1})
                      for a in acc], end=reason)
            for tid, (lr, seed, acc, seconds, reason) in trials.items()]
    write_logs(run / "logs", logs, resources={"cpu": 1, "gpu": 0.5})
    if not gpus:  # logs from before the cpus/gpus columns existed (by hand: the logger always writes them)
        for f in (run / "logs").glob("*.parquet"):
            pq.write_table(pq.read_table(f).drop(["cpus", "gpus"]), f)
    if sweep:  # the study's first configuration: the baseline
        (run / "sweep.json").write_text(json.dumps({"configs": [{"lr": 0.01, "batch_size": 64, "seed": 0}],
                                                    "resources_per_trial": {"cpu": 1, "gpu": 0.5}}))
    return run


@pytest.fixture(scope="module")
def rep(tmp_path_factory) -> Path:
    return build_report(write_run(tmp_path_factory.mktemp("tradeoff") / "run")).parent


def test_trial_figures(rep):
    t = pd.read_csv(rep / "trials.csv").set_index("trial_id")
    # a1: best 1.00 at epoch 4; 95% of it (0.95) first reached at 2, 99% at 3, 100% at 4; plateau (>= 0.995) at 4
    assert t.loc["a1", ["best_test_acc [fraction]", "best_acc_epoch", "epochs_to_95pct", "epochs_to_99pct",
                        "epochs_to_100pct", "epochs_to_plateau"]].tolist() == [1.0, 4, 2, 3, 4, 4]
    # a0: best 0.96 at 3 (final 0.95); 0.90 is below 95% of 0.96 (0.912)
    assert t.loc["a0", ["best_acc_epoch", "epochs_to_95pct", "epochs_to_99pct",
                        "final_test_acc [fraction]"]].tolist() == [3, 3, 3, 0.95]
    assert t.loc["a2", ["best_acc_epoch", "epochs_to_95pct", "epochs_to_100pct"]].tolist() == [1, 1, 1]
    assert t.loc["a0", ["epochs", "total_seconds", "gpus", "gpu_seconds"]].tolist() == [4, 40.0, 0.5, 20.0]
    assert t.loc["b2", ["epochs", "stop_reason", "stopped_early", "gpu_seconds"]].tolist() == [2, "asha", True, 5.0]
    assert not t.loc["a0", "stopped_early"]
    assert t.loc["a1", "best_test_acc/zoom [fraction]"] == pytest.approx(0.9)
    assert t.loc["b0", "final_test_acc/zoom [fraction]"] == pytest.approx(0.52)


def test_group_mean_std_and_t_interval(rep):
    g = pd.read_csv(rep / "groups.csv").set_index("group")
    # lr=0.1: best 0.96, 1.00, 0.70: mean 2.66/3; deviations .0733, .1133, -.1867, squares summing to .053067,
    # std (ddof=1) sqrt(.053067/2) = .16289; 95% half-interval t(0.975, 2) x std / sqrt(3) = 4.3027 x .16289 / 1.7321
    assert g.loc["lr=0.1", "best_test_acc_mean [fraction]"] == pytest.approx(2.66 / 3)
    assert g.loc["lr=0.1", "best_test_acc_std [fraction]"] == pytest.approx(0.16289, abs=1e-5)
    assert g.loc["lr=0.1", "best_test_acc_ci95 [fraction]"] == pytest.approx(0.40465, abs=1e-5)
    assert math.isnan(g.loc["lr=0.001", "best_test_acc_ci95 [fraction]"])  # one seed: no interval
    assert g.loc["lr=0.01", "gpu_seconds_mean"] == pytest.approx((10 + 10 + 5) / 3)
    assert g.loc["lr=0.01", "stopped_early"] == 1
    assert g.loc["lr=0.1", "best_test_acc/zoom_mean [fraction]"] == pytest.approx((0.86 + 0.9 + 0.6) / 3)
    md = (rep / "report.md").read_text()
    assert "Student-t" in md and "Accuracy per test variant" in md and "](variants.png)" in md


def test_t_quantiles():
    assert t975(1) == pytest.approx(12.7062, abs=1e-4) and t975(30) == pytest.approx(2.0423, abs=1e-4)
    assert t975(60) == pytest.approx(2.0003, abs=2e-4) and t975(1000) == pytest.approx(1.9623, abs=2e-4)
    assert math.isnan(t975(0))


def test_budget_table_plateau_and_curves(rep):
    b = pd.read_csv(rep / "tradeoff.csv").set_index("E")
    # best-so-far mean per group; only trials that reached E count (c0 only at E=1)
    assert b.loc[1, "best_group_best_so_far [fraction]"] == pytest.approx(0.85)
    assert b.loc[1, "best_group_best_so_far_group"] == "lr=0.001"
    assert b.loc[2, "best_group_best_so_far [fraction]"] == pytest.approx((0.9 + 0.97 + 0.7) / 3)
    assert b.loc[4, "best_group_best_so_far [fraction]"] == pytest.approx((0.96 + 1.0 + 0.7) / 3)
    assert b.loc[4, "best_group_acc_at_E [fraction]"] == pytest.approx((0.95 + 1.0 + 0.7) / 3)  # a0 fell back: 0.95
    assert b.loc[4, "marginal_gain_best_group [fraction]"] == pytest.approx((1.0 - 0.99) / 3)
    assert b.loc[2, "trials_at_E"] == 6 and b.loc[3, "trials_at_E"] == 5
    assert b.loc[1, "cumulative_compute_gpu_seconds"] == pytest.approx(0.5 * (3 * 10 + 3 * 5 + 2))
    assert b.loc[4, "cumulative_compute_gpu_seconds"] == pytest.approx(86.0)
    md = (rep / "report.md").read_text()
    # plateau: first E within 0.5 pp of the final best (0.8867 - 0.005 <= 0.8833 at E=3)
    assert "epoch 3 of 4" in md
    assert "chosen on the test set" in md or "on the test set" in md.split("## Tradeoff")[1]
    curves = pd.read_csv(rep / "curves.csv")
    row = curves[(curves.group == "lr=0.1") & (curves.epoch == 4)].iloc[0]
    assert row["test_acc_best_so_far_mean [fraction]"] == pytest.approx((0.96 + 1.0 + 0.7) / 3)


def test_tradeoff_figure_draws_no_gain_for_the_first_epoch(monkeypatch):
    from analysis import plots

    made, real = [], plots._figure

    def figure(*size):
        made.append(real(*size))
        return made[-1]

    monkeypatch.setattr(plots, "_figure", figure)
    budget = pd.DataFrame({"E": [1, 2, 3], "best_group_best_so_far": [0.5, 0.6, 0.65],
                           "best_group_acc_at_E": [0.5, 0.6, 0.65], "mean_trial_best_so_far": [0.4, 0.5, 0.52],
                           "mean_trial_acc_at_E": [0.4, 0.5, 0.52], "marginal_gain_best_group": [np.nan, 0.1, 0.05],
                           "marginal_gain_mean_trial": [np.nan, 0.1, 0.02]})
    png, _ = plots.plot_tradeoff(budget, plateau=2.0, compute="seconds")
    assert png.startswith(PNG_MAGIC)
    gains = made[0].axes[1]
    # the average trial's gains from epoch 2 on, in points; epoch 1 has none (not a gain of 0)
    line = gains.lines[0].get_ydata()
    assert np.isnan(line[0]) and list(line[1:]) == pytest.approx([10.0, 2.0])
    assert [bar.get_height() for bar in gains.patches] == pytest.approx([0.0, 10.0, 5.0])


def test_best_vs_baseline_and_median(rep):
    c = pd.read_csv(rep / "comparison.csv").set_index("comparison")
    base = c.loc["best vs baseline"]
    assert (base["best group"], base["reference group"]) == ("lr=0.1", "lr=0.01")  # lr=0.01 from sweep.json
    # b2, a baseline seed, was stopped by ASHA after epoch 2 of 4: no fair comparison, so no Δ
    assert base[[c for c in c.columns if c.startswith("Δ")]].isna().all()
    assert base["note"] == ("The baseline (lr=0.01) was stopped early (by asha) at epoch 2 of 4 (1 of 3 trials), so "
                            "no fair comparison exists.")
    assert base["note"] in (rep / "report.md").read_text()
    median = c.loc["best vs median group"]
    assert median["reference group"] == "lr=0.001"
    assert median["Δ best acc [fraction]"] == pytest.approx((0.96 + 1.0 + 0.7) / 3 - 0.85)
    assert "the first configuration in sweep.json" in (rep / "report.md").read_text()


def test_best_vs_a_baseline_that_ran_its_budget(tmp_path):
    finished = {**TRIALS, "b2": (0.01, 2, [0.20, 0.30, 0.40, 0.45], 5.0, "completed")}
    c = pd.read_csv(build_report(write_run(tmp_path / "run", finished)).parent / "comparison.csv")
    base = c.set_index("comparison").loc["best vs baseline"]
    assert base["Δ best acc [fraction]"] == pytest.approx((0.96 + 1.0 + 0.7) / 3 - (0.62 + 0.60 + 0.45) / 3)
    assert base["Δ epochs run"] == 0
    assert base["Δ GPU-seconds / trial"] == pytest.approx(20 - 10)
    assert pd.isna(base["note"])


def test_baseline_override_and_fallback(tmp_path):
    out = build_report(write_run(tmp_path / "run"), baseline="lr=0.001").parent
    c = pd.read_csv(out / "comparison.csv").set_index("comparison")
    assert c.loc["best vs baseline", "reference group"] == "lr=0.001"
    out = build_report(write_run(tmp_path / "nosweep", sweep=False)).parent
    c = pd.read_csv(out / "comparison.csv").set_index("comparison")
    assert c.loc["best vs baseline", "reference group"] == "lr=0.001"  # the first group in table order
    assert "the first group in the table" in (out / "report.md").read_text()


def test_pareto_membership(rep):
    t = pd.read_csv(rep / "trials.csv").set_index("trial_id")
    # gpu-seconds: c0 1 (acc .85), b2 5, b0/b1 10, a* 20: only c0 and a1 (1.00) are not beaten
    assert sorted(t.index[t["pareto"]]) == ["a1", "c0"]
    assert sorted(pd.read_csv(rep / "pareto.csv")["trial_id"]) == ["a1", "c0"]
    assert "2 of 7 trials are on the Pareto front" in (rep / "report.md").read_text()


def test_isolation_table(rep):
    iso = pd.read_csv(rep / "isolation.csv")
    assert iso["param"].tolist() == ["lr"] * 3
    assert iso["value"].astype(str).tolist() == ["0.001", "0.01", "0.1"]  # numeric order
    np.testing.assert_allclose(iso["best_group_acc [fraction]"],
                               [0.85, (0.62 + 0.6 + 0.3) / 3, (0.96 + 1.0 + 0.7) / 3])


def test_stop_audit(rep):
    a = pd.read_csv(rep / "audit.csv").set_index("trial_id")
    assert sorted(a.index) == ["b2", "c0"]
    assert a.loc["b2", ["stop_epoch", "epochs_saved", "seconds_saved", "gpu_seconds_saved"]].tolist() == \
        [2, 2, 10.0, 5.0]
    assert a.loc["c0", ["stop_epoch", "epochs_saved", "seconds_saved", "gpu_seconds_saved"]].tolist() == \
        [1, 3, 6.0, 3.0]
    # the winner a1 (best full-budget trial) had 0.80 at epoch 1 and 0.97 at epoch 2
    assert a.loc["c0", ["winner_best_so_far_at_stop [fraction]", "ahead_of_winner"]].tolist() == [0.8, True]
    assert a.loc["b2", "winner_best_so_far_at_stop [fraction]"] == 0.97 and not a.loc["b2", "ahead_of_winner"]
    md = (rep / "report.md").read_text()
    assert "2 of 7 trials were stopped before their epoch budget (asha: 2)" in md
    assert "5 epochs not run (vs 23 run), about 8 GPU-seconds" in md
    assert f"({8 / 94 * 100:.1f}% of what the sweep would have used" in md  # percent with one decimal
    assert "1 stopped trial(s) were ahead of the winner" in md


def test_pages_link_every_file(rep):
    page, md = (rep / "index.html").read_text(), (rep / "report.md").read_text()
    for name in ("tradeoff", "pareto", "best_epoch", "isolation", "audit", "variants", "test_acc", "test_loss"):
        data = (rep / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        assert f"src='{name}.png'" in page and f"]({name}.png)" in md
    for csv in ("trials", "groups", "curves", "tradeoff", "comparison", "pareto", "isolation", "audit"):
        assert (rep / f"{csv}.csv").is_file() and f"href='{csv}.csv'" in page
    assert " failed\n" not in md  # no section fell over
    assert "86 GPU-seconds" in md  # compute in the overview: 3 x 20 + 2 x 10 + 5 + 1


def test_old_logs_without_gpus_count_zero_and_say_so(tmp_path):
    out = build_report(write_run(tmp_path / "run", gpus=False, sweep=False)).parent
    t = pd.read_csv(out / "trials.csv")
    assert (t["gpu_seconds"] == 0).all() and t["total_seconds"].sum() == pytest.approx(40 * 3 + 20 * 2 + 10 + 2)
    md = (out / "report.md").read_text()
    assert "no gpus column" in md and "counts as 0" in md
    assert "No trial held a GPU share, so compute is wall-clock seconds" in md
    # ... unless sweep.json says what each trial held
    run = write_run(tmp_path / "run2", gpus=False)
    t = pd.read_csv(build_report(run).parent / "trials.csv").set_index("trial_id")
    assert t.loc["a0", "gpu_seconds"] == 20.0


def test_truncated_and_empty_files_are_named(tmp_path):
    run = write_run(tmp_path / "run")
    good = (run / "logs" / "a0.parquet").read_bytes()
    (run / "logs" / "truncated.parquet").write_bytes(good[: len(good) // 2])
    (run / "logs" / "empty.parquet").write_bytes(b"")
    out = build_report(run).parent
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert "Skipped log files (2)" in md and "Skipped log files (2)" in page
    for name in ("truncated.parquet", "empty.parquet"):
        assert f"- {name}: " in md and f"<li>{name}: " in page
    assert len(pd.read_csv(out / "trials.csv")) == len(TRIALS)


def test_compare_cli(tmp_path):
    run = write_run(tmp_path / "run")
    other = write_run(tmp_path / "other", {k: v for k, v in TRIALS.items() if k.startswith("b")})
    proc = run_cli("-m", "analysis.report", str(run), "--compare", str(other), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = run / "report"
    comp = pd.read_csv(out / "compare.csv").set_index("run")
    assert comp.loc["run", "best group"] == "lr=0.1" and comp.loc["other", "best group"] == "lr=0.01"
    delta = comp.loc["Δ (run − other)"]
    assert delta["best acc (mean) [fraction]"] == pytest.approx((0.96 + 1.0 + 0.7) / 3 - (0.62 + 0.6 + 0.3) / 3)
    assert delta["GPU-seconds (total)"] == pytest.approx(86 - 25) and delta["trials"] == 4
    both = pd.read_csv(out / "compare_groups.csv")
    assert sorted(zip(both["run"], both["group"])) == [("other", "lr=0.01"), ("run", "lr=0.001"),
                                                        ("run", "lr=0.01"), ("run", "lr=0.1")]
    page = (out / "index.html").read_text()
    assert "Comparison with other" in page and "src='compare.png'" in page


def test_section_hook(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "SECTIONS", list(report.SECTIONS))

    def sigma(data):
        n = len(data.trials)
        return Section("Sigma curve", f"{n} trials ![s](s.png)", f"<p>{n} trials</p><img src='s.png'>",
                       {"s.png": b"\x89PNG fake", "sigma.csv": "a,b\n1,2\n"})

    def broken(data):
        raise RuntimeError("boom")

    report.register_section(sigma)
    report.register_section(broken)
    out = build_report(write_run(tmp_path / "run")).parent
    md, page = (out / "report.md").read_text(), (out / "index.html").read_text()
    assert "## Sigma curve\n\n7 trials" in md and "<p>7 trials</p>" in page
    assert (out / "s.png").read_bytes() == b"\x89PNG fake" and (out / "sigma.csv").is_file()
    assert "href='sigma.csv'" in page
    assert "Section broken failed" in md and "RuntimeError: boom" in md
    assert md.index("Sigma curve") < md.index("## Trials")  # extra sections come before the long tables
