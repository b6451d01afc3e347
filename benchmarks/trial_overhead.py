"""Benchmark: what Ray Tune costs per trial in a real sweep, with the runner's settings and, in the same run, with
one new worker process per trial (Tune's default, which the runner used before it set `reuse_actors`).

Each side is one sweep of `sweeps/stn_mnist.py`'s study through the real runner (`run_study`: a local Ray, the
Tuner, a checkpoint every epoch, the Parquet logs) in its own Python process, on so little data that the trials
hardly compute; the default is the sweep issue 13 measured (10 seeds x 2 epochs, 10 images per digit, 100 test
images):

    python benchmarks/trial_overhead.py --data-dir ../shared/data/mnist-5k           # both sides, 10 trials
    python benchmarks/trial_overhead.py --trials 40 --no-baseline --json /tmp/overhead.json

    overhead per trial = (sweep wall - Ray start - compute / concurrency) / (trials / concurrency)

sweep wall is the `run_study` call (the driver's own imports of torch and Ray come before it and are printed
apart), Ray start the runner's `ray.init`, compute the sum of the logs' epoch_seconds, concurrency the trials that
fit at once (cluster CPUs / --cpus-per-trial). The figure spreads a sweep's one-off costs (the first worker
process importing torch, the teardown) over its trials, so it falls as --trials grows; the parts printed under it
are measured in the same run: data load, the wait until the first trial runs (worker start and imports), the
trials from the first start to the last end, the teardown, and "per trial once running", the same formula over the
span from the first trial's start to the last one's end (what one more trial costs).

Target: overhead per trial <= 1.5 s on a 2-core machine (--target). The exit status is 0 when the sweeps ran,
whatever the figures (timings on a shared machine are noisy: compare the two sides of one run, repeat when close);
--check makes a missed target exit 1.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist-5k"
TARGET_S = 1.5  # issue 13: overhead per trial on a 2-core machine
SIDES = {"runner": "the runner's settings with reuse_actors", "baseline": "a new worker process per trial"}


def _timeline_callback(events: list):
    """A Tune callback that appends (what, trial id, time, pid, epoch_seconds) to `events` in the driver."""
    from ray import tune

    class Timeline(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            events.append(("start", trial.trial_id, time.perf_counter(), None, None))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            events.append(("result", trial.trial_id, time.perf_counter(), result.get("pid"),
                           result.get("epoch_seconds")))

        def on_trial_complete(self, iteration, trials, trial, **info):
            events.append(("end", trial.trial_id, time.perf_counter(), None, None))

        def on_trial_error(self, iteration, trials, trial, **info):
            events.append(("end", trial.trial_id, time.perf_counter(), None, None))

    return Timeline()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def trial_parts(events: list) -> dict[str, float | None]:
    """Means over the trials that ran once (no retry), from the driver's view of each trial: start to its first
    result, one result to the next, its last result to its end; each gap less the epoch_seconds it holds."""
    by_trial: dict[str, list] = {}
    for e in events:
        by_trial.setdefault(e[1], []).append(e)
    first, between, last = [], [], []
    for evs in by_trial.values():
        starts = [e for e in evs if e[0] == "start"]
        results = [e for e in evs if e[0] == "result"]
        ends = [e for e in evs if e[0] == "end"]
        if len(starts) != 1 or len(ends) != 1 or not results or any(r[4] is None for r in results):
            continue
        first.append(results[0][2] - starts[0][2] - results[0][4])
        between += [b[2] - a[2] - b[4] for a, b in zip(results, results[1:])]
        last.append(ends[0][2] - results[-1][2])
    return {"trial_start_to_first_result_s": _mean(first), "result_to_result_s": _mean(between),
            "last_result_to_trial_end_s": _mean(last)}


def run_side(side: str, args: argparse.Namespace, out: Path) -> dict:
    """In this process: one sweep through run_study, timed in parts. `side` "baseline" turns reuse_actors off."""
    t = time.perf_counter()
    import dataclasses

    import ray
    from ray import tune

    from sweeps import runner
    from sweeps.parquet_logger import ParquetLogger  # noqa: F401  (imported by the runner; here, before the clock)
    from sweeps.stn_mnist import STUDY

    # The study's trainable and the parts that import torch: the runner imports them itself when they are not yet
    # (`Study.loaded`, so that --help answers without torch), which is the driver's import, not the sweep's.
    loaded = STUDY.loaded()
    driver_imports = time.perf_counter() - t
    torch_before_wall = "torch" in sys.modules

    marks: dict = {}
    events: list = []
    timeline = _timeline_callback(events)

    # The runner builds its configs from the `ray.tune` module at call time: these subclasses add the timeline
    # and turn actor reuse off on the baseline side. Everything else is the runner's own.
    class TuneConfig(tune.TuneConfig):
        def __init__(self, **kw):
            if side == "baseline":
                kw["reuse_actors"] = False
            marks["reuse_actors"] = kw.get("reuse_actors", False)
            super().__init__(**kw)

    class RunConfig(tune.RunConfig):
        def __init__(self, **kw):
            super().__init__(**{**kw, "callbacks": [*(kw.get("callbacks") or []), timeline]})

    tune.TuneConfig, tune.RunConfig = TuneConfig, RunConfig
    start_ray, fit = runner.start_ray, tune.Tuner.fit

    def timed_start_ray(address, *more):
        t0 = time.perf_counter()
        ctx = start_ray(address, *more)
        marks["ray_start_s"] = time.perf_counter() - t0
        marks["cluster_cpus"] = ray.cluster_resources().get("CPU", 0)
        return ctx

    def timed_fit(self):
        marks["fit_start"] = time.perf_counter()
        try:
            return fit(self)
        finally:
            marks["fit_end"] = time.perf_counter()

    def timed_load(data_dir):
        t0 = time.perf_counter()
        data = loaded.load_data(data_dir)
        marks["data_load_s"] = time.perf_counter() - t0
        return data

    runner.start_ray, tune.Tuner.fit = timed_start_ray, timed_fit
    study = dataclasses.replace(loaded, load_data=timed_load)
    argv = ["--data-dir", str(args.data_dir), "--out", str(out), "--seeds", *map(str, range(args.trials)),
            "--epochs", str(args.epochs), "--train-per-class", str(args.train_per_class),
            "--test-limit", str(args.test_limit), "--cpus-per-trial", str(args.cpus_per_trial),
            "--gpus-per-trial", "0", "--no-report"]
    t0 = time.perf_counter()
    code = runner.run_study(study, argv)
    t_end = time.perf_counter()

    import pyarrow.parquet as pq

    logs = pq.read_table(out / "logs", columns=["trial_id", "epoch_seconds"]) if (out / "logs").is_dir() else None
    starts = [e[2] for e in events if e[0] == "start"]
    ends = [e[2] for e in events if e[0] == "end"]
    if not (starts and ends and "fit_start" in marks):
        raise SystemExit(f"{side}: the sweep ran no trial (exit {code})")
    return {
        "side": side, "reuse_actors": marks["reuse_actors"], "exit_code": code, "driver_imports_s": driver_imports,
        "torch_imported_before_wall": torch_before_wall,
        "wall_s": t_end - t0, "ray_start_s": marks["ray_start_s"], "cluster_cpus": marks["cluster_cpus"],
        "data_load_s": marks["data_load_s"],
        "until_first_trial_s": min(starts) - marks["fit_start"],
        "trials_span_s": max(ends) - min(starts),
        "teardown_s": t_end - max(ends),
        "tune_teardown_s": marks["fit_end"] - max(ends),
        "compute_s": sum(logs.column("epoch_seconds").to_pylist()) if logs is not None else 0.0,
        "epochs_logged": logs.num_rows if logs is not None else 0,
        "trials_run": len({e[1] for e in events if e[0] == "start"}),
        "worker_processes": len({e[3] for e in events if e[0] == "result" and e[3] is not None}),
        **trial_parts(events),
    }


def figures(r: dict, trials: int, cpus_per_trial: float) -> dict:
    """The overhead figures of one side's measurements."""
    concurrency = max(1, min(trials, math.floor(r["cluster_cpus"] / cpus_per_trial)))
    slots = trials / concurrency
    return {**r, "concurrency": concurrency,
            "overhead_per_trial_s": (r["wall_s"] - r["ray_start_s"] - r["compute_s"] / concurrency) / slots,
            "per_trial_once_running_s": (r["trials_span_s"] - r["compute_s"] / concurrency) / slots}


def run_child(side: str, args: argparse.Namespace, work: Path) -> dict:
    """One side in a fresh Python process (so neither side finds torch or Ray already imported)."""
    result, log = work / f"{side}.json", work / f"{side}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_side", side, "--_out", str(work / side),
           "--_result", str(result), "--data-dir", str(args.data_dir), "--trials", str(args.trials),
           "--epochs", str(args.epochs), "--train-per-class", str(args.train_per_class),
           "--test-limit", str(args.test_limit), "--cpus-per-trial", str(args.cpus_per_trial)]
    print(f"{side}: {SIDES[side]}: {args.trials} trial(s) ... (output: {log})", flush=True)
    with open(log, "w") as f:
        code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0 or not result.is_file():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the {side} sweep failed (exit {code}); the end of {log}:\n{tail}")
    measured = json.loads(result.read_text())
    if measured["exit_code"] != 0:  # a failed or unfinished trial would skew the figures
        raise RuntimeError(f"the {side} sweep exited {measured['exit_code']}; see {log}")
    return figures(measured, args.trials, args.cpus_per_trial)


def _row(label: str, key: str, sides: list[dict]) -> str:
    cells = ("-" if s[key] is None else f"{s[key]:.2f} s" if isinstance(s[key], float) else str(s[key]) for s in sides)
    return f"  {label:<40}" + "".join(f"{c:>12}" for c in cells)


ROWS = [("driver imports (not in the wall)", "driver_imports_s"),
        ("sweep wall (run_study)", "wall_s"),
        ("  Ray start", "ray_start_s"),
        ("  data load", "data_load_s"),
        ("  until the first trial runs", "until_first_trial_s"),
        ("  first trial start -> last trial end", "trials_span_s"),
        ("  teardown", "teardown_s"),
        ("    of it in Tuner.fit", "tune_teardown_s"),
        ("compute (sum of epoch_seconds)", "compute_s"),
        ("worker processes that ran trials", "worker_processes"),
        ("per trial, mean, less its epochs:", None),
        ("  start -> first result", "trial_start_to_first_result_s"),
        ("  result -> next result", "result_to_result_s"),
        ("  last result -> trial end", "last_result_to_trial_end_s"),
        ("per trial once running", "per_trial_once_running_s"),
        ("overhead per trial", "overhead_per_trial_s")]


def report(sides: list[dict], args: argparse.Namespace) -> dict:
    """Print the table; the summary that --json writes."""
    r = sides[0]
    met = r["overhead_per_trial_s"] <= args.target
    print(f"\n{args.trials} trial(s) x {args.epochs} epoch(s), {args.train_per_class} images per digit, "
          f"{args.test_limit} test images; {args.cpus_per_trial:g} CPU per trial, {r['cluster_cpus']:g} in Ray: "
          f"concurrency {r['concurrency']}")
    print(f"  {'':<40}" + "".join(f"{s['side']:>12}" for s in sides))
    for label, key in ROWS:
        print(_row(label, key, sides) if key else f"  {label}")
    print(f"  target: overhead per trial <= {args.target:g} s: {'met' if met else 'MISSED'} "
          f"({r['overhead_per_trial_s']:.2f} s)")
    summary = {"target_s": args.target, "trials": args.trials, "epochs": args.epochs,
               "train_per_class": args.train_per_class, "test_limit": args.test_limit,
               "cpus_per_trial": args.cpus_per_trial, "concurrency": r["concurrency"],
               "overhead_per_trial_s": r["overhead_per_trial_s"],
               "per_trial_once_running_s": r["per_trial_once_running_s"],
               "meets_target": met, "sides": {s["side"]: s for s in sides}}
    if len(sides) > 1:
        b = sides[1]
        summary["baseline_ratio"] = b["overhead_per_trial_s"] / r["overhead_per_trial_s"]
        print(f"  baseline / runner: {summary['baseline_ratio']:.1f}x the overhead per trial, "
              f"{b['per_trial_once_running_s'] / r['per_trial_once_running_s']:.1f}x per trial once running, "
              f"{b['wall_s'] / r['wall_s']:.1f}x the sweep wall")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                   help=f"torchvision MNIST root (default: {DEFAULT_DATA})")
    p.add_argument("--trials", type=int, default=10, help="trials per sweep, one seed each (default: 10)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial, one checkpoint each (default: 2)")
    p.add_argument("--train-per-class", type=int, default=10, help="training images per digit (default: 10)")
    p.add_argument("--test-limit", type=int, default=100, help="test images (default: 100)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs per trial (default: 1)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the sweep with a new worker process per trial (the runner's side only)")
    p.add_argument("--target", type=float, default=TARGET_S,
                   help=f"target overhead per trial, seconds (default: {TARGET_S:g})")
    p.add_argument("--check", action="store_true", help="exit 1 when the runner's side misses the target")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", type=Path, help="run the sweeps in this folder and keep it (default: a temporary one)")
    for hidden in ("--_side", "--_out", "--_result"):  # one side, in the child process run_child starts
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.data_dir = args.data_dir.expanduser().resolve()
    if args.trials < 1:
        p.error(f"--trials {args.trials}: must be >= 1")

    if args._side:
        result = run_side(args._side, args, Path(args._out))
        Path(args._result).write_text(json.dumps(result, indent=1) + "\n")
        return 0

    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="trial-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sides = [run_child(side, args, work) for side in (["runner"] if args.no_baseline else SIDES)]
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = report(sides, args)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if args.check and not summary["meets_target"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
