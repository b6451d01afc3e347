"""benchmarks/trial_overhead.py runs its sweep through the real runner and writes its figures; no timing is asserted
here (the target lives in the benchmark). Only the runner's side runs: the baseline side (a new worker process per
trial, Tune's default) measures Ray, not this project, and would double the test's time."""
from __future__ import annotations

import json

import pytest

from helpers import run_cli


@pytest.mark.slow
def test_trial_overhead_benchmark_writes_its_figures(mnist_dir, tmp_path):
    out = tmp_path / "overhead.json"
    # one trial at a time (2 CPUs each on this 2-core machine): the runner's side needs one worker process
    done = run_cli("benchmarks/trial_overhead.py", "--trials", "3", "--epochs", "1", "--cpus-per-trial", "2",
                   "--no-baseline", "--data-dir", str(mnist_dir), "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "target: overhead per trial <=" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["trials"] == 3 and figures["target_s"] > 0
    assert set(figures["sides"]) == {"runner"}
    for side in figures["sides"].values():
        assert side["trials_run"] == 3 and side["epochs_logged"] == 3 * figures["epochs"]
        for key in ("wall_s", "ray_start_s", "compute_s", "until_first_trial_s", "trials_span_s", "teardown_s",
                    "overhead_per_trial_s", "per_trial_once_running_s"):
            assert isinstance(side[key], float), (key, side[key])
    runner = figures["sides"]["runner"]
    # the driver's own import of torch (the study's trainable, imported lazily by the runner) is measured apart
    # from the sweep wall, as the figure's definition says
    assert runner["torch_imported_before_wall"] is True
    assert runner["reuse_actors"]
    assert runner["worker_processes"] == 1  # the three trials shared one process
