"""Benchmark: the report on a sweep-sized logs folder, 1M rows (20,000 trials x 50 epochs, one Parquet file per trial).

Writes synthetic logs shaped like sweeps/parquet_logger.py's (contract columns, status, stop_reason, error,
failures, cpus, gpus, config/* of a transfer-style grid: model x train_per_class x lr x batch_size x lr_step,
10 seeds each, so 2,000 groups) into a temporary folder, then times in one process, on the same files:

  (a) reading the dataset alone (analysis.logs.load_logs: every file, skipped files listed, dedup, sorted);
  (b) the full report (analysis.report.build_report: load, tables, every plot, report.md, index.html).

Writing the files is not timed. Targets: report <= 10 s and report <= 5x the read time; the script prints the
figures (and a JSON line) and exits 1 when a target is missed. It also prints CPU seconds: on a machine shared with
running sweeps the wall times grow with the load, the CPU seconds do not.

    python benchmarks/analysis_scale.py                      # 20,000 trials x 50 epochs
    python benchmarks/analysis_scale.py --trials 2000 --keep /tmp/scale   # smaller, keep the folder
    python benchmarks/analysis_scale.py --search             # every trial its own group (a random search)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
from sweeps.parquet_logger import WRITE_OPTIONS  # noqa: E402  (files exactly as the sweeps write them)

MODELS = ["resnet50", "vgg19"]
SIZES = [10, 30, 50, 70, 90]
LRS = list(np.round(np.geomspace(1e-4, 0.1, 10), 6))
BATCHES = [4, 16, 32, 64]
STEPS = [0, 5, 7, 10, 15]
SEEDS = 10  # 2 * 5 * 10 * 4 * 5 = 2,000 groups x 10 seeds = 20,000 trials


def trial_configs(n: int, search: bool, rng: np.random.Generator) -> list[dict]:
    """n configurations: the grid above in order (seeds innermost), or random-search samples (one seed each)."""
    out = []
    for i in range(n):
        if search:
            out.append({"model": MODELS[rng.integers(2)], "train_per_class": int(rng.choice(SIZES)),
                        "lr": float(np.exp(rng.uniform(np.log(1e-4), np.log(0.1)))),
                        "batch_size": int(rng.choice(BATCHES)), "lr_step": int(rng.integers(0, 21)), "seed": 0})
            continue
        g, seed = divmod(i, SEEDS)
        g, step = divmod(g, len(STEPS))
        g, batch = divmod(g, len(BATCHES))
        g, lr = divmod(g, len(LRS))
        g, size = divmod(g, len(SIZES))
        out.append({"model": MODELS[g % 2], "train_per_class": SIZES[size], "lr": float(LRS[lr]),
                    "batch_size": BATCHES[batch], "lr_step": STEPS[step], "seed": seed})
    return out


def write_chunk(args) -> int:
    """Write one file per trial for a chunk of configurations (runs in a worker process)."""
    logs, start, configs, epochs, seed = args
    rng = np.random.default_rng(seed)
    ep = np.arange(1, epochs + 1)
    for k, cfg in enumerate(configs):
        tid = f"bench_{start + k:05d}"
        # A saturating curve whose ceiling grows with training-set size and peaks near lr = 0.01, plus noise.
        ceiling = 0.55 + 0.4 * (1 - np.exp(-cfg["train_per_class"] / 40)) - 0.05 * abs(np.log10(cfg["lr"]) + 2)
        speed = 3.0 + 10 * rng.random()
        acc = np.clip(ceiling * (1 - np.exp(-ep / speed)) + rng.normal(0, 0.01, epochs), 0, 1)
        loss = np.clip(2.3 * np.exp(-ep / speed) + 0.1 + rng.normal(0, 0.02, epochs), 0.01, None)
        n = epochs
        status = "error" if rng.random() < 0.01 else "terminated"
        cols = {
            "trial_id": pa.array([tid] * n), "epoch": pa.array(ep, pa.int64()),
            "train_loss": loss * 0.8, "train_acc": np.minimum(acc + 0.03, 1.0), "test_loss": loss, "test_acc": acc,
            "epoch_seconds": rng.uniform(20, 40, n) * (1 + cfg["train_per_class"] / 50),
            "lr": np.full(n, cfg["lr"]),
            "status": pa.array([status] * n), "stop_reason": pa.array(["error" if status == "error" else "completed"] * n),
            "error": pa.array(["RuntimeError: CUDA out of memory" if status == "error" else None] * n, pa.string()),
            "failures": pa.array([0] * n, pa.int64()), "cpus": np.full(n, 2.0), "gpus": np.full(n, 0.25),
            "config/backbone_mode": pa.array(["cached"] * n), "config/batch_size": pa.array([cfg["batch_size"]] * n),
            "config/epochs": pa.array([epochs] * n), "config/gamma": np.full(n, 0.1),
            "config/image_size": pa.array([224] * n), "config/lr": np.full(n, cfg["lr"]),
            "config/lr_step": pa.array([cfg["lr_step"]] * n), "config/model": pa.array([cfg["model"]] * n),
            "config/momentum": np.full(n, 0.9), "config/seed": pa.array([cfg["seed"]] * n),
            "config/train_per_class": pa.array([cfg["train_per_class"]] * n), "config/weights": pa.array(["imagenet"] * n),
        }
        pq.write_table(pa.table(cols), logs / f"{tid}.parquet", **WRITE_OPTIONS)  # as sweeps/parquet_logger.py
    return len(configs)


def write_logs(logs: Path, trials: int, epochs: int, search: bool, workers: int) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    configs = trial_configs(trials, search, np.random.default_rng(0))
    step = -(-trials // (workers * 8))
    jobs = [(logs, s, configs[s:s + step], epochs, s) for s in range(0, trials, step)]
    with ProcessPoolExecutor(workers) as pool:
        assert sum(pool.map(write_chunk, jobs)) == trials


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the reader processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20_000, help="trial files to write (default: 20000)")
    p.add_argument("--epochs", type=int, default=50, help="epochs (rows) per trial (default: 50)")
    p.add_argument("--search", action="store_true", help="random-search configs: every trial its own group")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes writing the files")
    p.add_argument("--keep", type=Path, default=None, help="write into this folder and keep it (default: a temp dir)")
    p.add_argument("--max-report-s", type=float, default=10.0, help="target for the report (default: 10 s)")
    p.add_argument("--max-ratio", type=float, default=5.0, help="target for report / read time (default: 5)")
    args = p.parse_args(argv)

    from analysis.logs import load_logs
    from analysis.report import build_report

    tmp = None
    run = args.keep or Path(tmp := tempfile.mkdtemp(prefix="analysis_scale_")) / "run"
    try:
        logs = run / "logs"
        if not (logs.is_dir() and len(list(logs.glob("*.parquet"))) == args.trials):
            shutil.rmtree(run, ignore_errors=True)
            t0 = time.perf_counter()
            write_logs(logs, args.trials, args.epochs, args.search, args.workers)
            print(f"wrote {args.trials} files x {args.epochs} epochs in {time.perf_counter() - t0:.1f} s "
                  f"(not timed) into {logs}")
        load = os.getloadavg()[0]
        c0, t0 = _cpu(), time.perf_counter()
        df = load_logs(run)
        read_s, read_cpu = time.perf_counter() - t0, _cpu() - c0
        rows = len(df)
        del df
        c0, t0 = _cpu(), time.perf_counter()
        index = build_report(run)
        report_s, report_cpu = time.perf_counter() - t0, _cpu() - c0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    ratio = report_s / read_s
    ok = report_s <= args.max_report_s and ratio <= args.max_ratio
    print(f"rows: {rows:,} from {args.trials:,} files; cores: {os.cpu_count()}; load average before: {load:.1f}")
    print(f"(a) read the dataset: {read_s:.2f} s  (CPU {read_cpu:.2f} s)")
    print(f"(b) full report:      {report_s:.2f} s  (CPU {report_cpu:.2f} s; target <= {args.max_report_s:g} s)")
    print(f"report / read:        {ratio:.2f}x  (target <= {args.max_ratio:g}x)")
    if load > 1.5:
        print(f"note: other processes kept the machine busy (load {load:.1f} on {os.cpu_count()} cores): wall times "
              "are inflated; the CPU seconds (this process and its reader processes) are what a quiet machine needs")
    print(json.dumps({"rows": rows, "files": args.trials, "read_s": round(read_s, 3), "report_s": round(report_s, 3),
                      "read_cpu_s": round(read_cpu, 3), "report_cpu_s": round(report_cpu, 3), "load": round(load, 2),
                      "ratio": round(ratio, 2), "ok": ok, "report": str(index) if args.keep else None}))
    if not ok:
        print("FAIL: a target was missed", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
