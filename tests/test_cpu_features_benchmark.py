"""benchmarks/cpu_features.py times the CPU feature pass against the NCHW fp32 pass it replaced; here at a tiny
size, checking what it computes (the features of each path, the main job's image count), not how fast."""
from __future__ import annotations

import json

from helpers import run_cli


def test_cpu_features_benchmark_compares_the_passes_on_the_same_images(mnist_dir, tmp_path):
    out = tmp_path / "cpu.json"
    done = run_cli("benchmarks/cpu_features.py", "--models", "resnet18", "--images", "70", "--image-size", "64",
                   "--threads", "1", "--data-dir", str(mnist_dir), "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resnet18: before" in done.stdout and "the main job's pass over" in done.stdout
    figures = json.loads(out.read_text())
    row = figures["backbones"]["resnet18"]
    assert row["images"] == 70 and figures["threads"] == 1
    for key in ("before", "fp32", "bf16"):
        assert row[f"{key}_img_s"] > 0 and row[f"paper_{key}_h"] > 0
    # the default pass computes the baseline's features to float32 rounding; bf16 to bf16 rounding
    assert row["fp32_rel_diff_to_before"] < 1e-5
    assert 0 < row["bf16_rel_diff_to_before"] < 0.05
    # the main job's grid on mnist-5k: up to 90 training and validation images per digit in its subsets, and
    # every test image
    assert 10_000 + 900 <= row["paper_images"] <= 10_000 + 5_000


def test_cpu_features_benchmark_says_what_data_it_needs(tmp_path):
    done = run_cli("benchmarks/cpu_features.py", "--data-dir", str(tmp_path / "nowhere"),
                   env={"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
