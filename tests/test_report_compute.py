"""Tests for the report's compute (issue 15): the feature pass of a cached transfer study counts, split over the
trials by the images each used, and a run without GPUs shows no GPU-seconds columns. Logs are written through the
sweep's real ParquetLogger (tests/helpers.py), with the feature_key and feature_images columns a cached-mode
transfer trial reports; RUN_DIR/features.json is written by hand in the driver's format.

    python -m pytest tests/test_report_compute.py -q

Data: 2 backbones x 2 training-set sizes, one seed, 2 epochs of 1 s each (2 s of training per trial, 8 in all).
resnet50's features were computed twice (a resumed run recomputed them: 10 s + 6 s), vgg19's once (40 s): 56 s of
feature pass. Each trial used 300 (10 per digit) or 500 (30 per digit) of its backbone's images, so its share is
3/8 or 5/8 of its backbone's passes: r10 6 s, r30 10 s, v10 15 s, v30 25 s.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import build_report
from helpers import LogTrial, epoch_metrics, write_logs

KEYS = {"resnet50": "resnet50|none|32|fp32", "vgg19": "vgg19|none|32|fp32"}
TRIALS = {  # trial_id -> (model, train_per_class, images used from its pass, test accuracy per epoch)
    "r10": ("resnet50", 10, 300, [0.50, 0.60]),
    "r30": ("resnet50", 30, 500, [0.70, 0.80]),
    "v10": ("vgg19", 10, 300, [0.60, 0.70]),
    "v30": ("vgg19", 30, 500, [0.70, 0.75]),
}
PASSES = [("resnet50", 10.0), ("vgg19", 40.0), ("resnet50", 6.0)]  # the resumed run's second resnet50 pass
SHARE = {"r10": 6.0, "r30": 10.0, "v10": 15.0, "v30": 25.0}


def write_run(run: Path, gpu: float | None = None, features: bool = True) -> Path:
    """The transfer run; ``gpu``: the GPU share every trial and feature task held (None: a CPU run)."""
    trials = [LogTrial(tid, {"model": model, "train_per_class": size, "seed": 0, "epochs": 2, "weights": "none",
                             "image_size": 32, "backbone_mode": "cached"},
                       [epoch_metrics(a, seconds=1.0, lr=0.001) for a in acc],
                       extra={"feature_key": KEYS[model], "feature_images": float(images)} if features else {})
              for tid, (model, size, images, acc) in TRIALS.items()]
    write_logs(run / "logs", trials, resources={"cpu": 1, "gpu": gpu or 0.0})
    if features:
        passes = [{"key": KEYS[m], "model": m, "weights": "none", "image_size": 32, "feature_dtype": "fp32",
                   "images": 800, "seconds": s, "gpus": gpu or 0.0, "gpu_seconds": s * (gpu or 0.0),
                   "finished": "2026-11-30T14:38:20+00:00"} for m, s in PASSES]
        (run / "features.json").write_text(json.dumps({"passes": passes}))
    (run / "sweep.json").write_text(json.dumps({"configs": [{"model": "resnet50", "train_per_class": 10}]}))
    return run


def _tables(md: str) -> list[list[str]]:
    """The header cells of every Markdown table in the report."""
    return [[c.strip() for c in line.strip("|").split("|")] for i, line in enumerate(md.splitlines())
            if line.startswith("| ") and md.splitlines()[i + 1].startswith("|---")]


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory) -> Path:
    return build_report(write_run(tmp_path_factory.mktemp("compute") / "run")).parent


def test_the_compute_line_names_the_feature_pass(cpu_report):
    md = (cpu_report / "report.md").read_text()
    line = next(line for line in md.splitlines() if line.startswith("- Compute:"))
    assert line.startswith("- Compute: 8 s of training + 56 s of feature pass (3 backbone passes")
    assert "= 64 s" in line
    assert "Compute: 8 s of training + 56 s of feature pass" in (cpu_report / "index.html").read_text()


def test_each_trial_carries_its_share_of_the_feature_pass(cpu_report):
    t = pd.read_csv(cpu_report / "trials.csv").set_index("trial_id")
    for tid, share in SHARE.items():
        assert t.loc[tid, "total_seconds"] == pytest.approx(2.0), tid  # training alone stays visible
        assert t.loc[tid, "feature_seconds"] == pytest.approx(share), tid
        assert t.loc[tid, "compute_seconds"] == pytest.approx(2.0 + share), tid
    assert t["feature_seconds"].sum() == pytest.approx(56.0)
    md = (cpu_report / "report.md").read_text()
    trials_table = next(h for h in _tables(md) if h[0] == "trial_id" and "stop reason" in h)
    assert {"training seconds", "feature-pass seconds"} <= set(trials_table)


def test_pareto_and_ratios_count_the_feature_pass(cpu_report):
    # training alone costs 2 s everywhere, so only the most accurate trial (r30) would be on the front; with
    # the feature pass r10 (8 s) is the cheapest trial and joins it
    t = pd.read_csv(cpu_report / "trials.csv").set_index("trial_id")
    assert sorted(t.index[t["pareto"]]) == ["r10", "r30"]
    c = pd.read_csv(cpu_report / "comparison.csv").set_index("comparison").loc["best vs baseline"]
    assert (c["best group"], c["reference group"]) == ("model=resnet50, train_per_class=30",
                                                       "model=resnet50, train_per_class=10")
    assert c["Δ seconds / trial"] == pytest.approx(12.0 - 8.0)  # 0 from training alone
    b = pd.read_csv(cpu_report / "tradeoff.csv").set_index("E")
    assert b["cumulative_compute_seconds"].tolist() == pytest.approx([4.0 + 56.0, 8.0 + 56.0])


def test_a_search_headline_counts_the_feature_pass(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "optuna.db").write_bytes(b"")  # a search's run folder: the report opens with the headline
    md = (build_report(run).parent / "report.md").read_text()
    # winner r30 (12 s with its share) against the baseline r10 (8 s): 1.5x, where training alone says 1x
    assert "at 1× the epochs and 1.5× the compute" in md.split("## ")[0]


def test_a_cpu_run_has_no_gpu_seconds_column(cpu_report):
    md, page = (cpu_report / "report.md").read_text(), (cpu_report / "index.html").read_text()
    tables = _tables(md)
    assert len(tables) >= 5
    for header in tables:
        assert not [c for c in header if "GPU" in c], header
    assert not re.search(r"<th>[^<]*GPU[^<]*</th>", page)
    assert md.count("No trial held a GPU, so the tables leave out GPU-seconds") == 1
    assert "GPU-seconds" not in next(line for line in md.splitlines() if line.startswith("- Compute:"))
    assert (pd.read_csv(cpu_report / "trials.csv")["gpu_seconds"] == 0).all()  # the CSV keeps the column


def test_a_gpu_run_shows_gpu_seconds_of_both(tmp_path):
    out = build_report(write_run(tmp_path / "run", gpu=0.5)).parent
    md = (out / "report.md").read_text()
    line = next(line for line in md.splitlines() if line.startswith("- Compute:"))
    assert "4 GPU-seconds of training + 28 of feature pass = 32 GPU-seconds" in line
    assert "No trial held a GPU" not in md
    groups_table = next(h for h in _tables(md) if h[:2] == ["group", "n_seeds"])
    assert {"training GPU-seconds", "feature-pass GPU-seconds"} <= set(groups_table)
    t = pd.read_csv(out / "trials.csv").set_index("trial_id")
    assert t.loc["v30", "compute_gpu_seconds"] == pytest.approx(0.5 * (2 + 25))


def test_without_features_json_compute_is_training_and_the_report_says_so(tmp_path):
    out = build_report(write_run(tmp_path / "run", features=False)).parent
    md = (out / "report.md").read_text()
    assert "- Compute: 8 s of training (the sum of the trials' epoch seconds)." in md
    assert "no features.json" in md
    assert "feature-pass" not in md
    assert (pd.read_csv(out / "trials.csv")["feature_seconds"] == 0).all()
