"""benchmarks/gpu.py --smoke runs every section of the GPU benchmark on the CPU at tiny sizes, through the same
code as a GPU run (worker processes included, Ray, Optuna and elasticdeform unimportable as on the GPU machine),
and writes its figures. No timing is asserted here: the targets apply to a GPU run."""
from __future__ import annotations

import json
import numbers
from typing import Any, Iterator

from helpers import run_cli

SECTIONS = {"features": "(a)", "heads": "(b)", "stn": "(c)", "concurrent": "(d)", "dtype": "(e)"}


def numbers_in(tree: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """(path, value) of every number in a JSON tree; booleans are not numbers here."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from numbers_in(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from numbers_in(value, f"{path}[{i}]")
    elif isinstance(tree, numbers.Real) and not isinstance(tree, bool):
        yield path, tree


def test_gpu_benchmark_smoke_runs_every_section(mnist_dir, tmp_path):
    out = tmp_path / "gpu.json"
    # one backbone: VGG19 takes the same code path at several times ResNet50's CPU time
    done = run_cli("benchmarks/gpu.py", "--smoke", "--models", "resnet50", "--data-dir", str(mnist_dir),
                   "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name, letter in SECTIONS.items():
        assert f"{letter} {name}" in done.stdout  # its progress line
    figures = json.loads(out.read_text())
    assert figures["smoke"] is True and figures["errors"] == {}
    assert figures["device"] and figures["torch"] and figures["weights"] == "none"
    assert set(figures["sections"]) == set(SECTIONS)
    for name, section in figures["sections"].items():
        found = list(numbers_in(section))
        # Accuracies after one tiny epoch (and their differences) may be 0, seeds are; every time, count, rate and
        # ratio must be positive.
        bad = [(path, value) for path, value in found if not path.endswith(("_acc", ".seed")) and not value > 0]
        assert found and not bad, (name, bad)
        assert section["targets"], name
    assert {t["section"] for t in figures["targets"]} == set(SECTIONS.values())
    for t in figures["targets"]:
        # an accuracy (unit %) after a tiny smoke epoch may be 0; times, rates and ratios may not
        assert (t["measured"] >= 0 if t["unit"] == "%" else t["measured"] > 0), t
        assert t["target"] > 0 and t["op"] in (">=", "<=") and isinstance(t["met"], bool), t
    sections = figures["sections"]
    assert set(sections["features"]["backbones"]) == {"resnet50"}
    assert sections["heads"]["trials"] == 4 and sections["heads"]["workers"] == 2
    assert sections["stn"]["compiled"]["compile_s"] > 0 and "compile_s" not in sections["stn"]["ours"]
    acc = [t for t in figures["targets"] if t["unit"] == "%"]
    assert [t["measured"] for t in acc] == [100 * sections["stn"]["ours"]["test_acc"],
                                           100 * sections["stn"]["compiled"]["test_acc"]]
    assert sections["concurrent"]["alone"]["processes"] == 1 and sections["concurrent"]["shared"]["processes"] == 2
    # (e): the smoke grid's resnet50 trials, each trained on fp32 and on bf16 features of the same images.
    dtype = sections["dtype"]
    assert set(dtype["backbones"]) == {"resnet50"} and dtype["trials"] == 4 and len(dtype["pairs"]) == 4
    assert {(p["train_per_class"], p["seed"]) for p in dtype["pairs"]} == {(1, 0), (1, 1), (2, 0), (2, 1)}
    assert all(0 <= p[f"{d}_test_acc"] <= 1 for p in dtype["pairs"] for d in ("fp32", "bf16"))
    # bf16 autocast really ran: the features differ from fp32's, by rounding (well under a tenth), not by more.
    assert 0 < dtype["backbones"]["resnet50"]["feature_rel_diff_test"] < 0.1
