"""The one place that starts Ray and runs a Tuner; every sweep script is a search space plus a call to `run_sweep`.

What it does, in order: validate every trial configuration (no Ray yet), print them and stop on `--dry-run`,
check that RUN_DIR is writable, load the data once (shared with every trial through Ray's object store), start a
local Ray (or join `--address`), run or resume the Tuner with storage in `RUN_DIR/tune` and the Parquet callback
writing `RUN_DIR/logs/`, then print the best trial and write the report to `RUN_DIR/report/`.

    parser = sweep_parser("stn_mnist", __doc__)
    args = parser.parse_args()
    raise SystemExit(run_sweep(args, Sweep(name=..., trainable=..., config_cls=..., param_space=..., ...)))
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ray.tune import grid_search
from ray.tune.search.variant_generator import generate_variants

from trainables.config import TrialConfig, UserError

TUNE_DIR = "tune"  # RUN_DIR/tune holds Ray Tune's experiment (trial folders, checkpoints, state for --resume)


class SweepError(UserError, RuntimeError):
    """A problem found before any trial starts; printed as one line."""


@dataclass
class Sweep:
    """What a sweep script declares: a trainable, its config class, the search space and the budget."""

    name: str
    trainable: Callable[..., None]
    config_cls: type[TrialConfig]
    param_space: dict[str, Any]
    load_data: Callable[[], Any]  # called once on the driver; the result reaches every trial as `data`
    check_data: Callable[[TrialConfig, Any], None] | None = None  # config rules that need the data
    metric: str = "test_acc"
    mode: str = "max"
    num_samples: int = 1
    search_alg: Any = None
    scheduler: Any = None
    # After Ray starts, before the Tuner: (data, configs, resources per trial) → more keyword arguments for the
    # trainable, shared by every trial through the object store (e.g. cached backbone features).
    prepare: Callable[[Any, list[TrialConfig], dict[str, float]], dict[str, Any]] | None = None
    gpu_share: float = 1.0  # GPUs per trial when --gpus-per-trial is auto and the cluster has GPUs
    # Checkpoints kept per trial; None keeps all. Tune's pruning of old checkpoints races with its experiment
    # snapshot: a driver killed in between makes --resume log errors for checkpoints already deleted. Trial
    # checkpoints hold only trainable state (the STN: 124 KB), so keeping all is cheap.
    keep_checkpoints: int | None = None
    search: Any = None  # a sweeps.search.Search: Optuna + early stopping instead of a grid


def sweep_parser(name: str, description: str | None) -> argparse.ArgumentParser:
    """The options every sweep script shares (the contract in DESIGN.md); scripts add their own."""
    p = argparse.ArgumentParser(prog=f"python sweeps/{name}.py", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("sweep options (every sweep script has these)")
    g.add_argument("--data-dir", default="data", type=Path,
                   help="torchvision MNIST root: DIR/MNIST/raw/*-ubyte; downloaded there when missing and online "
                        "(default: ./data)")
    g.add_argument("--out", type=Path, default=Path("runs") / name,
                   help=f"RUN_DIR for the Tune experiment, logs/ (Parquet) and report/ (default: runs/{name})")
    g.add_argument("--smoke-test", action="store_true",
                   help="a tiny version of the sweep that finishes in under 2 minutes on 2 CPU cores")
    g.add_argument("--resume", action="store_true",
                   help="continue the interrupted sweep in RUN_DIR: finished trials are kept, unfinished ones "
                        "resume from their last checkpoint")
    g.add_argument("--address", default=None,
                   help="Ray cluster to join (e.g. 'auto' on a cluster node, or ray://HOST:10001); "
                        "default: start a local Ray on this machine")
    g.add_argument("--dry-run", action="store_true", help="print the trial configurations and exit")
    g.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help="CPU cores per trial; torch threads are pinned to this (default: 1)")
    g.add_argument("--gpus-per-trial", default="auto",
                   help="GPUs per trial, fractions allowed (0.25 packs 4 trials on a GPU); "
                        "default: auto = a per-study share when the cluster has GPUs, else 0")
    g.add_argument("--max-failures", type=int, default=2,
                   help="retries of a trial that raised, each from its last checkpoint (default: 2)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any trial config key, e.g. --set momentum=0.9 (JSON values; repeatable)")
    g.add_argument("--no-report", action="store_true", help="skip writing RUN_DIR/report at the end")
    return p


def given(args: argparse.Namespace, keys: tuple[str, ...]) -> dict[str, Any]:
    """The study options the user set (None = not given, the study's default applies)."""
    return {k: v for k in keys if (v := getattr(args, k)) is not None}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SweepError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=0.05")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw  # a bare word is a string
    return out


def expand(param_space: dict[str, Any], num_samples: int = 1) -> list[dict[str, Any]]:
    """Every trial configuration of a grid (Tune's own variant generator), `num_samples` times."""
    return [spec for _ in range(num_samples) for _, spec in generate_variants(param_space)]


def validate(sweep: Sweep) -> list[TrialConfig]:
    """Every grid configuration; for a search, the baseline, samples, and both ends of every searched range."""
    configs = [sweep.config_cls.from_dict(v) for v in expand(sweep.param_space, 1 if sweep.search else
                                                               sweep.num_samples)]
    if sweep.search is not None:
        fixed = {k: v for k, v in sweep.param_space.items() if k not in sweep.search.space}
        configs.insert(0, sweep.config_cls.from_dict({**fixed, **sweep.search.baseline}))
        for key, domain in sweep.search.space.items():
            ends = list(getattr(domain, "categories", None) or [])
            if hasattr(domain, "lower"):
                upper = domain.upper - 1 if isinstance(domain.lower, int) else domain.upper  # randint: exclusive
                ends = [domain.lower, upper]
            for value in ends:
                sweep.config_cls.from_dict({**fixed, **sweep.search.baseline, key: value})
    return configs


def parse_gpus(value: str) -> float | None:
    if value == "auto":
        return None
    try:
        gpus = float(value)
    except ValueError:
        raise SweepError(f"--gpus-per-trial {value!r}: expected a number such as 0, 0.25 or 1, or 'auto'") from None
    if gpus < 0:
        raise SweepError(f"--gpus-per-trial {value}: must be >= 0")
    return gpus


def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise SweepError(f"RUN_DIR {run_dir} is not writable ({err.strerror}): pass --out with a folder you can "
                         f"write to") from None


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def start_ray(address: str | None):
    """Join the cluster at `address`, or start a local Ray whose dashboard (when ray[default] is installed)
    listens on 127.0.0.1 only: the dashboard can run jobs, so it must not face the network."""
    import ray

    if address:
        return ray.init(address=address, configure_logging=True, logging_level="WARNING")
    return ray.init(dashboard_host="127.0.0.1", configure_logging=True, logging_level="WARNING")


def run_sweep(args: argparse.Namespace, sweep: Sweep) -> int:
    """Run (or resume) the sweep; returns the process exit code: 0 ok, 1 some trials failed, 2 bad input."""
    try:
        return _run(args, sweep)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, sweep: Sweep) -> int:
    for key, value in parse_overrides(args.overrides).items():
        # a list becomes a grid axis: --set lr=[0.01,0.05]
        sweep.param_space[key] = grid_search(value) if isinstance(value, list) else value
    # Every default goes into the space, so each trial's config (and its logs' config/* columns) is complete.
    sweep.param_space = {**sweep.config_cls().to_dict(), **sweep.param_space}
    if sweep.search is not None:
        sweep.param_space.update(sweep.search.space)
        sweep.num_samples = sweep.search.num_samples
    configs = validate(sweep)
    gpus = parse_gpus(args.gpus_per_trial)
    if args.cpus_per_trial <= 0:
        raise SweepError(f"--cpus-per-trial {args.cpus_per_trial}: must be > 0")
    if args.dry_run:
        count = f"{sweep.num_samples} searched trials" if sweep.search else f"{len(configs)} trial configuration(s)"
        print(f"{sweep.name}: {count}; resources per trial: "
              f"{args.cpus_per_trial:g} CPU, {'auto' if gpus is None else f'{gpus:g}'} GPU")
        if sweep.search is not None:
            s = sweep.search
            print(f"Optuna TPE search (seed {s.seed}): {s.num_samples} trials, {s.max_concurrent} at once; "
                  f"ASHA {'off' if s.asha is None else f'grace {s.asha[0]}, factor {s.asha[1]:g}'}; plateau "
                  f"{'off' if s.plateau is None else f'{s.plateau} epochs'}")
            for key, domain in s.space.items():
                print(f"  search {key}: {domain.domain_str if hasattr(domain, 'domain_str') else domain}")
            print("trial 1 is the baseline, then samples such as:")
        for i, cfg in enumerate(configs, 1):
            print(f"{i:4d}  {json.dumps(cfg.to_dict())}")
        return 0

    run_dir = args.out.expanduser().resolve()
    check_writable(run_dir)
    experiment = run_dir / TUNE_DIR

    import ray
    from ray import tune

    from sweeps.parquet_logger import ParquetLogger

    restoring = experiment.exists() and tune.Tuner.can_restore(experiment)
    if restoring and not args.resume:
        raise SweepError(f"{run_dir} already holds a sweep: pass --resume to continue it, or --out NEW_DIR to "
                         f"start another")
    if args.resume and not restoring:
        print(f"note: nothing to resume in {run_dir}; starting a new sweep")

    # --resume restarts each trial from the newest checkpoint named in Tune's experiment snapshot, which Tune
    # writes every 10 s by default: a driver killed in between would cost the newer epochs. The snapshot is a
    # small JSON file, so take it every 2 s (set TUNE_GLOBAL_CHECKPOINT_S to override).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    t0 = time.perf_counter()
    data = sweep.load_data()
    if sweep.check_data is not None:
        for cfg in configs:
            sweep.check_data(cfg, data)
    print(f"data: {getattr(data, 'describe', lambda: type(data).__name__)()} "
          f"(loaded in {time.perf_counter() - t0:.1f} s)")

    start_ray(args.address)
    try:
        if gpus is None:
            gpus = sweep.gpu_share if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            if gpus == 0 and args.address:
                print("note: the cluster has no GPU right now, so trials get none; an autoscaling cluster adds "
                      "GPU workers only when asked: pass --gpus-per-trial (e.g. 1 or 0.25)")
        resources = {"cpu": args.cpus_per_trial, "gpu": gpus}
        shared = sweep.prepare(data, configs, resources) if sweep.prepare is not None else {}
        trainable = tune.with_resources(tune.with_parameters(sweep.trainable, data=data, **shared), resources)
        print(f"{sweep.name}: {len(configs)} trial(s), {args.cpus_per_trial:g} CPU + {gpus:g} GPU each; "
              f"cluster: {ray.cluster_resources().get('CPU', 0):g} CPU, {ray.cluster_resources().get('GPU', 0):g} GPU")
        if not restoring:  # a resumed sweep keeps its first configuration (Tune ignores a changed space)
            write_json_atomic(run_dir / "sweep.json", {
                "sweep": sweep.name, "argv": sys.argv, "args": vars(args), "resources_per_trial": resources,
                "configs": [c.to_dict() for c in configs]})
        search_alg, scheduler, stopper, early_stop_reason = sweep.search_alg, sweep.scheduler, None, None
        if sweep.search is not None:
            from sweeps.search import build_search

            search_alg, scheduler, stopper, early_stop_reason = build_search(
                sweep.search, run_dir, sweep.metric, sweep.mode, max(c.epochs for c in configs))
        if restoring:
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=sweep.param_space,
                tune_config=tune.TuneConfig(metric=sweep.metric, mode=sweep.mode, num_samples=sweep.num_samples,
                                            search_alg=search_alg, scheduler=scheduler),
                run_config=tune.RunConfig(
                    name=TUNE_DIR, storage_path=str(run_dir), stop=stopper,
                    callbacks=[ParquetLogger(run_dir / "logs", config_types=sweep.config_cls.field_types(),
                                             early_stop_reason=early_stop_reason, resources=resources)],
                    failure_config=tune.FailureConfig(max_failures=args.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=sweep.keep_checkpoints),
                    verbose=1,
                ),
            )
        results = tuner.fit()
    finally:
        ray.shutdown()
    return _summarize(args, sweep, run_dir, results, time.perf_counter() - t0)


def _summarize(args, sweep: Sweep, run_dir: Path, results, seconds: float) -> int:
    n_err = len(results.errors)
    print(f"\n{sweep.name}: {len(results)} trial(s) in {seconds:.0f} s, {n_err} failed")
    try:
        best = results.get_best_result(metric=sweep.metric, mode=sweep.mode, scope="all")
        print(f"best {sweep.metric} over all epochs: {best.metrics_dataframe[sweep.metric].max():.4f} "
              f"(config {json.dumps(best.config)})")
    except Exception:  # no trial reported anything (all failed): the errors below say why
        pass
    for result in results:
        if result.error is not None:
            print(f"  failed trial in {result.path}: {str(result.error).strip().splitlines()[-1]}")
    print(f"logs: {run_dir / 'logs'} (pandas.read_parquet reads it whole)")
    if not args.no_report:
        from analysis.report import build_report

        try:
            print(f"report: {build_report(run_dir)}")
        except Exception as err:  # the sweep's logs are safe; a report problem must not hide that
            print(f"warning: the report could not be written ({err}); run python -m analysis.report {run_dir}")
    return 1 if n_err else 0
