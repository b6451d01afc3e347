"""The one place that starts Ray and runs a Tuner; every sweep script is a `Study` plus a call to `run_study`.

What it does, in order: build the command line from the study's config class and resolve it (sweeps/options.py),
validate every trial configuration (no Ray yet), print them and stop on `--dry-run`, check that RUN_DIR is
writable, load the data once and check every configuration against it (`cfg.check_data`), start a local Ray (or
join `--address`), run or resume the Tuner with storage in `RUN_DIR/tune` and the Parquet callback writing
`RUN_DIR/logs/`, then print the best trial and write the report to `RUN_DIR/report/`.

    STUDY = Study(name="stn_mnist", doc=__doc__, trainable=train_stn, config_cls=STNConfig, ...)
    raise SystemExit(run_study(STUDY))            # or run_study(STUDY, ["--smoke-test", "--out", "/tmp/x"])
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from analysis.files import atomic_write
from sweeps.options import Plan, build_parser, describe, resolve, resolved_args
from sweeps.search import build_search
from sweeps.study import Study
from trainables.errors import UserError

__all__ = ["Study", "run_study"]

TUNE_DIR = "tune"  # RUN_DIR/tune holds Ray Tune's experiment (trial folders, checkpoints, state for --resume)


def parse_gpus(value: str) -> float | None:
    if value == "auto":
        return None
    try:
        gpus = float(value)
    except ValueError:
        raise UserError(f"--gpus-per-trial {value!r}: expected a number such as 0, 0.25 or 1, or 'auto'") from None
    if gpus < 0:
        raise UserError(f"--gpus-per-trial {value}: must be >= 0")
    return gpus


def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(f"RUN_DIR {run_dir} is not writable ({err.strerror}): pass --out with a folder you can "
                        f"write to") from None


def start_ray(address: str | None):
    """Join the cluster at `address`, or start a local Ray whose dashboard (when ray[default] is installed)
    listens on 127.0.0.1 only: the dashboard can run jobs, so it must not face the network."""
    import ray

    if address:
        return ray.init(address=address, configure_logging=True, logging_level="WARNING")
    return ray.init(dashboard_host="127.0.0.1", configure_logging=True, logging_level="WARNING")


def run_study(study: Study, argv: list[str] | None = None) -> int:
    """Parse the command line, then run (or resume) the sweep; returns the process exit code: 0 ok, 1 some trials
    failed, 2 bad input (one `error:` line)."""
    args = build_parser(study).parse_args(argv)
    try:
        plan = resolve(study, args)
        return _run(study, plan, args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(study: Study, plan: Plan, args: argparse.Namespace) -> int:
    gpus = parse_gpus(args.gpus_per_trial)
    if args.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial {args.cpus_per_trial}: must be > 0")
    if args.dry_run:
        print("\n".join(describe(study, plan, args, gpus)))
        return 0

    run_dir = args.out.expanduser().resolve()
    check_writable(run_dir)
    experiment = run_dir / TUNE_DIR

    import ray
    from ray import tune

    from sweeps.parquet_logger import ParquetLogger

    restoring = experiment.exists() and tune.Tuner.can_restore(experiment)
    if restoring and not args.resume:
        raise UserError(f"{run_dir} already holds a sweep: pass --resume to continue it, or --out NEW_DIR to "
                        f"start another")
    if args.resume and not restoring:
        print(f"note: nothing to resume in {run_dir}; starting a new sweep")

    # --resume restarts each trial from the newest checkpoint named in Tune's experiment snapshot, which Tune
    # writes every 10 s by default: a driver killed in between would cost the newer epochs. The snapshot is a
    # small JSON file, so take it every 2 s (set TUNE_GLOBAL_CHECKPOINT_S to override).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    t0 = time.perf_counter()
    data = study.load_data(args.data_dir.expanduser().resolve())
    for cfg in plan.configs:
        cfg.check_data(data)
    print(f"data: {getattr(data, 'describe', lambda: type(data).__name__)()} "
          f"(loaded in {time.perf_counter() - t0:.1f} s)")

    start_ray(args.address)
    try:
        if gpus is None:
            gpus = study.gpu_share if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            if gpus == 0 and args.address:
                print("note: the cluster has no GPU right now, so trials get none; an autoscaling cluster adds "
                      "GPU workers only when asked: pass --gpus-per-trial (e.g. 1 or 0.25)")
        resources = {"cpu": args.cpus_per_trial, "gpu": gpus}
        shared = study.prepare(data, plan.configs, resources, args) if study.prepare is not None else {}
        trainable = tune.with_resources(tune.with_parameters(study.trainable, data=data, **shared), resources)
        print(f"{study.name}: {len(plan.configs)} trial(s), {args.cpus_per_trial:g} CPU + {gpus:g} GPU each; "
              f"cluster: {ray.cluster_resources().get('CPU', 0):g} CPU, {ray.cluster_resources().get('GPU', 0):g} GPU")
        if not restoring:  # a resumed sweep keeps its first configuration (Tune ignores a changed space)
            atomic_write(run_dir / "sweep.json", json.dumps({
                "sweep": study.name, "argv": sys.argv, "args": resolved_args(args), "options": plan.values,
                "resources_per_trial": resources, "configs": [c.to_dict() for c in plan.configs]},
                indent=2, default=str) + "\n")
        search_alg = scheduler = stopper = early_stop_reason = None
        if plan.search is not None:
            search_alg, scheduler, stopper, early_stop_reason = build_search(
                plan.search, run_dir, study.metric, study.mode, max(c.epochs for c in plan.configs))
        if restoring:
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=plan.param_space,
                tune_config=tune.TuneConfig(metric=study.metric, mode=study.mode, num_samples=plan.num_samples,
                                            search_alg=search_alg, scheduler=scheduler),
                run_config=tune.RunConfig(
                    name=TUNE_DIR, storage_path=str(run_dir), stop=stopper,
                    callbacks=[ParquetLogger(run_dir / "logs", config_types=study.config_cls.field_types(),
                                             early_stop_reason=early_stop_reason, resources=resources)],
                    failure_config=tune.FailureConfig(max_failures=args.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=study.keep_checkpoints),
                    verbose=1,
                ),
            )
        results = tuner.fit()
    finally:
        ray.shutdown()
    return _summarize(args, study, run_dir, results, time.perf_counter() - t0)


def _summarize(args, study: Study, run_dir: Path, results, seconds: float) -> int:
    n_err = len(results.errors)
    print(f"\n{study.name}: {len(results)} trial(s) in {seconds:.0f} s, {n_err} failed")
    try:
        best = results.get_best_result(metric=study.metric, mode=study.mode, scope="all")
        print(f"best {study.metric} over all epochs: {best.metrics_dataframe[study.metric].max():.4f} "
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
