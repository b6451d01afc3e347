"""Benchmark: the report on 1M log rows in two layouts, against reading them alone, time and peak memory.

Writes synthetic logs shaped like sweeps/parquet_logger.py's (contract columns, status, stop_reason, error,
failures, cpus, gpus, config/* of a transfer-style grid: model x train_per_class x lr x batch_size x lr_step,
10 seeds each, so 2,000 groups at 1M rows) twice, the same rows in two layouts:

  trial files:  one file per trial (20,000 files x 50 epochs), as the sweeps write them;
  shared files: files of 5,000 rows (200 files, 100 trials each), rows in arrival order (epoch 1 of every trial
                in the file, then epoch 2, ...) and pyarrow's default write options, as other tools write them.

Per layout it runs, each in a fresh process timed from here (interpreter start and imports included):

  (a) the plain read: analysis.logs.load_logs (every file, skipped files listed, dedup, sorted);
  (b) the full report: python -m analysis.report RUN --out DIR (tables, every plot, report.md, index.html).

and takes each process's peak RSS (os.wait4, children included) and the rows' in-memory size as load_logs
returns them (DataFrame.memory_usage(deep=True)). Writing the files is not timed. Targets, set for 1M rows and
checked from there on (with fewer rows the report's fixed costs, imports and plots, dominate): shared files, report
<= 10 s; trial files, report <= 1.5x the read; both, the report's peak RSS <= 4x the rows' in-memory size (checked
when the rows take >= 100 MB: below that the interpreter's own memory dominates). It prints the figures and a JSON
line (--json writes it to a file too) and exits 1 when a target is missed. CPU seconds are printed too: on a
machine shared with running sweeps the wall times grow with the load, the CPU seconds do not.

    python benchmarks/analysis_scale.py                          # 1M rows, both layouts (a few minutes)
    python benchmarks/analysis_scale.py --rows 100000 --layout shared   # a quick try
    python benchmarks/analysis_scale.py --keep /tmp/scale        # keep (and reuse) the written logs
    python benchmarks/analysis_scale.py --search                 # every trial its own group (a random search)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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

MODELS = ["resnet50", "vgg19"]
SIZES = [10, 30, 50, 70, 90]
LRS = list(np.round(np.geomspace(1e-4, 0.1, 10), 6))
BATCHES = [4, 16, 32, 64]
STEPS = [0, 5, 7, 10, 15]
SEEDS = 10  # 2 * 5 * 10 * 4 * 5 = 2,000 groups x 10 seeds = 20,000 trials
LAYOUTS = ("trial", "shared")
LAYOUT_NAMES = {"trial": "trial files", "shared": "shared files"}
MEMORY_CHECK_BYTES = 100e6  # below this the interpreter's fixed memory (libraries, matplotlib) dominates
TARGET_ROWS = 1_000_000  # the time targets are set for this size


def trial_config(i: int, search: bool) -> dict:
    """Trial i's configuration: the grid above in order (seeds innermost), or a random-search sample."""
    if search:
        rng = np.random.default_rng([1, i])
        return {"model": MODELS[rng.integers(2)], "train_per_class": int(rng.choice(SIZES)),
                "lr": float(np.exp(rng.uniform(np.log(1e-4), np.log(0.1)))),
                "batch_size": int(rng.choice(BATCHES)), "lr_step": int(rng.integers(0, 21)), "seed": 0}
    g, seed = divmod(i, SEEDS)
    g, step = divmod(g, len(STEPS))
    g, batch = divmod(g, len(BATCHES))
    g, lr = divmod(g, len(LRS))
    g, size = divmod(g, len(SIZES))
    return {"model": MODELS[g % 2], "train_per_class": SIZES[size], "lr": float(LRS[lr]),
            "batch_size": BATCHES[batch], "lr_step": STEPS[step], "seed": seed}


def trial_table(i: int, epochs: int, search: bool) -> pa.Table:
    """Trial i's rows; seeded by i alone, so both layouts hold the same rows."""
    cfg = trial_config(i, search)
    rng = np.random.default_rng([0, i])
    tid, n, ep = f"bench_{i:05d}", epochs, np.arange(1, epochs + 1)
    # A saturating curve whose ceiling grows with training-set size and peaks near lr = 0.01, plus noise.
    ceiling = 0.55 + 0.4 * (1 - np.exp(-cfg["train_per_class"] / 40)) - 0.05 * abs(np.log10(cfg["lr"]) + 2)
    speed = 3.0 + 10 * rng.random()
    acc = np.clip(ceiling * (1 - np.exp(-ep / speed)) + rng.normal(0, 0.01, n), 0, 1)
    loss = np.clip(2.3 * np.exp(-ep / speed) + 0.1 + rng.normal(0, 0.02, n), 0.01, None)
    status = "error" if rng.random() < 0.01 else "terminated"
    return pa.table({
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
    })


def write_chunk(args) -> int:
    """Write trials [start, stop) (runs in a worker process): a file per trial, or files of per_file trials."""
    logs, layout, start, stop, per_file, epochs, search = args
    if layout == "trial":
        from sweeps.parquet_logger import WRITE_OPTIONS  # files exactly as the sweeps write them

        for i in range(start, stop):
            pq.write_table(trial_table(i, epochs, search), logs / f"bench_{i:05d}.parquet", **WRITE_OPTIONS)
        return stop - start
    for first in range(start, stop, per_file):
        table = pa.concat_tables([trial_table(i, epochs, search) for i in range(first, min(first + per_file, stop))])
        k = table.num_rows // epochs
        arrival = np.arange(table.num_rows).reshape(k, epochs).T.ravel()  # epoch-major: as results come in
        pq.write_table(table.take(arrival), logs / f"part-{first // per_file:05d}.parquet")
    return stop - start


def write_logs(logs: Path, layout: str, trials: int, epochs: int, per_file: int, search: bool,
               workers: int) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    unit = per_file if layout == "shared" else 1
    step = -(-trials // (workers * 8 * unit)) * unit  # chunks hold whole files
    jobs = [(logs, layout, s, min(s + step, trials), per_file, epochs, search) for s in range(0, trials, step)]
    with ProcessPoolExecutor(workers) as pool:
        assert sum(pool.map(write_chunk, jobs)) == trials


def _read_child(run: str) -> None:
    """The plain read, in its own process (--_read): prints when it finished and the rows' size."""
    from analysis.logs import load_logs

    t0 = time.perf_counter()
    df = load_logs(run)
    done, read_s = time.time(), time.perf_counter() - t0
    print(json.dumps({"done": done, "load_logs_s": read_s, "rows": len(df),
                      "memory": int(df.memory_usage(deep=True).sum())}))


def _child(cmd: list[str]) -> tuple[float, float, float, int, str]:
    """Run cmd; (start time, wall seconds, CPU seconds, peak RSS in bytes) and its stdout. The child's rusage
    from wait4 covers it and its own finished children (reader and section processes)."""
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")
    return start, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, out


def measure(run: Path, layout: str) -> dict:
    load = os.getloadavg()[0]
    start, _, read_cpu, read_rss, out = _child([sys.executable, __file__, "--_read", str(run)])
    info = json.loads(out.strip().splitlines()[-1])
    read_s = info["done"] - start  # up to the end of load_logs, not the memory count after it
    _, report_s, report_cpu, report_rss, _ = _child(
        [sys.executable, "-m", "analysis.report", str(run), "--out", str(run / "report")])
    return {"layout": layout, "rows": info["rows"], "files": len(list((run / "logs").glob("*.parquet"))),
            "load": round(load, 2), "read_s": round(read_s, 3), "load_logs_s": round(info["load_logs_s"], 3),
            "read_cpu_s": round(read_cpu, 3), "read_peak_rss": read_rss,
            "report_s": round(report_s, 3), "report_cpu_s": round(report_cpu, 3), "report_peak_rss": report_rss,
            "rows_memory": info["memory"], "ratio": round(report_s / read_s, 2),
            "memory_ratio": round(report_rss / info["memory"], 2)}


def check(r: dict, args) -> list[str]:
    """The targets r misses, as text."""
    missed = []
    timed = r["rows"] >= TARGET_ROWS
    if timed and r["layout"] == "shared" and r["report_s"] > args.max_report_s:
        missed.append(f"shared files: report {r['report_s']:.2f} s > {args.max_report_s:g} s")
    if timed and r["layout"] == "trial" and r["ratio"] > args.max_ratio:
        missed.append(f"trial files: report / read {r['ratio']:.2f}x > {args.max_ratio:g}x")
    if r["rows_memory"] >= MEMORY_CHECK_BYTES and r["memory_ratio"] > args.max_memory_ratio:
        missed.append(f"{LAYOUT_NAMES[r['layout']]}: peak RSS {r['memory_ratio']:.2f}x the rows > "
                      f"{args.max_memory_ratio:g}x")
    return missed


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--_read"]:
        _read_child(sys.argv[2])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--rows", type=int, default=1_000_000, help="log rows in each layout (default: 1000000)")
    p.add_argument("--epochs", type=int, default=50, help="epochs (rows) per trial (default: 50)")
    p.add_argument("--rows-per-file", type=int, default=5000,
                   help="rows per file in the shared-files layout, rounded to whole trials (default: 5000)")
    p.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both", help="which layout(s) (default: both)")
    p.add_argument("--search", action="store_true", help="random-search configs: every trial its own group")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes writing the files")
    p.add_argument("--keep", type=Path, default=None,
                   help="write into this folder and keep it; logs already there with the right file count are reused")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    p.add_argument("--max-report-s", type=float, default=10.0,
                   help="target for the shared-files report (default: 10 s)")
    p.add_argument("--max-ratio", type=float, default=1.5,
                   help="target for report / read time on trial files (default: 1.5)")
    p.add_argument("--max-memory-ratio", type=float, default=4.0,
                   help="target for the report's peak RSS / the rows' in-memory size (default: 4)")
    args = p.parse_args(argv)

    trials = max(1, args.rows // args.epochs)
    per_file = max(1, args.rows_per_file // args.epochs)
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    tmp = None
    base = args.keep or Path(tmp := tempfile.mkdtemp(prefix="analysis_scale_"))
    results = []
    try:
        for layout in layouts:
            run = base / f"{layout}_files"
            logs = run / "logs"
            files = trials if layout == "trial" else -(-trials // per_file)
            if not (logs.is_dir() and len(list(logs.glob("*.parquet"))) == files):
                shutil.rmtree(run, ignore_errors=True)
                t0 = time.perf_counter()
                write_logs(logs, layout, trials, args.epochs, per_file, args.search, args.workers)
                print(f"wrote {trials * args.epochs:,} rows as {files:,} {LAYOUT_NAMES[layout]} in "
                      f"{time.perf_counter() - t0:.1f} s (not timed) into {logs}", flush=True)
            results.append(measure(run, layout))
            if not args.keep:
                shutil.rmtree(run, ignore_errors=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    missed = []
    mb = 1 / 2**20
    print(f"cores: {os.cpu_count()}; times include each process's start and imports")
    for r in results:
        missed += check(r, args)
        print(f"\n{LAYOUT_NAMES[r['layout']]}: {r['rows']:,} rows in {r['files']:,} files "
              f"(load average before: {r['load']:.1f})")
        print(f"  (a) read:   {r['read_s']:6.2f} s  (CPU {r['read_cpu_s']:.2f} s; load_logs {r['load_logs_s']:.2f} s; "
              f"peak RSS {r['read_peak_rss'] * mb:,.0f} MiB)")
        unchecked = "" if r["rows"] >= TARGET_ROWS else f", not checked below {TARGET_ROWS:,} rows"
        target = f"; target <= {args.max_report_s:g} s{unchecked}" if r["layout"] == "shared" else ""
        print(f"  (b) report: {r['report_s']:6.2f} s  (CPU {r['report_cpu_s']:.2f} s{target})")
        target = f"  (target <= {args.max_ratio:g}x{unchecked})" if r["layout"] == "trial" else ""
        print(f"  report / read: {r['ratio']:.2f}x{target}")
        print(f"  report peak RSS {r['report_peak_rss'] * mb:,.0f} MiB = {r['memory_ratio']:.2f}x the rows in memory "
              f"({r['rows_memory'] * mb:,.0f} MiB)  (target <= {args.max_memory_ratio:g}x"
              + ("" if r["rows_memory"] >= MEMORY_CHECK_BYTES else "; not checked below 100 MB of rows") + ")")
        if r["load"] > 1.5:
            print(f"  note: other processes kept the machine busy (load {r['load']:.1f} on {os.cpu_count()} cores): "
                  "wall times are inflated; the CPU seconds are what a quiet machine needs")
    summary = {"results": results, "ok": not missed, "missed": missed,
               "report": str(base) if args.keep else None}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    for m in missed:
        print(f"FAIL: {m}", file=sys.stderr)
    return 0 if not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
