"""The one place that starts Ray and runs a Tuner; every sweep script is a `Study` plus a call to `run_study`.

What it does, in order: build the command line from the study's config class and resolve it (sweeps/options.py),
validate every trial configuration (no Ray yet), print them and stop on `--dry-run`, check that RUN_DIR is
writable, load the data once and check every configuration against it (`cfg.check_data`), start a local Ray (or
join `--address`), run or resume the Tuner with storage in `RUN_DIR/tune` and the Parquet callback writing
`RUN_DIR/logs/`, then print the best trial and write the report to `RUN_DIR/report/`.

    STUDY = Study(name="stn_mnist", doc=__doc__, config_cls=STNConfig, parts=parts, ...)   # sweeps/study.py
    raise SystemExit(run_study(STUDY))            # or run_study(STUDY, ["--smoke-test", "--out", str(run_dir)])

Nothing here imports torch, Ray, Optuna or pandas before the command line is resolved and validated: `--help` and a
refused value answer in a fraction of a second.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from analysis.files import atomic_write
from analysis.runstate import LOCK, RunLock, RunLocked, write_status
from sweeps.confirm import CONFIRM_DIR, CONFIRM_FILE, best_configs, confirm_points, confirm_seeds, confirm_tags, \
    load_or_choose
from sweeps.options import build_parser, describe, resolve, resolved_args
from sweeps.resources import NoNodeLeft, check_address, check_fits
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


class _OneLineTrialErrors(logging.Filter):
    """Tune logs a failed trial's whole traceback on the driver; keep its last line (the error itself) and point
    at the full text Tune keeps in the trial's folder (error.txt)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            record.msg = f"{record.getMessage()}: {last} (traceback: error.txt in the trial's folder)"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


class _NoRestoreHint(logging.Filter):
    """Tune's own resume advice (`Tuner.restore(path=...)`) is not how a sweep resumes: the runner prints the
    sweep's command with --resume instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


class _NoMetricsOfUnstartedTrials(logging.Filter):
    """After an interrupted sweep Tune warns that it found no results for the trials that never started: the
    runner's summary already counts them as not finished. Any other failure to read results is still shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith("Failed to fetch metrics for"):
            return True
        return not all("were not found at" in line for line in text.splitlines()[1:])


def start_ray(address: str | None, verbose: bool = False):
    """Join the cluster at `address`, or start a local Ray whose dashboard (when ray[default] is installed)
    listens on 127.0.0.1 only: the dashboard can run jobs, so it must not face the network. Unless `verbose`,
    Ray's routine output is kept off the terminal (sweeps/console.py)."""
    import ray

    from sweeps.console import filter_worker_output, is_terminal, quiet_ray

    if not (is_terminal(sys.stdout) and is_terminal(sys.stderr)):
        # Ray colours the "(train_stn pid=...)" prefix of worker output: in a file or a CI log the codes are noise
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    logging.getLogger("ray.tune.tune").addFilter(_NoRestoreHint())
    logging.getLogger("ray.tune.execution.tune_controller").addFilter(_OneLineTrialErrors())
    logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(_NoMetricsOfUnstartedTrials())
    quiet_ray(verbose)
    if address:
        context = ray.init(address=address, configure_logging=True, logging_level="WARNING")
    else:
        # A local Ray starts one idle worker per CPU for the first driver. Tune never uses them: its trial actors
        # carry their own runtime env (env_vars), which an idle worker started without it does not match, so each
        # would import Ray for nothing and be killed later; tasks (the feature pass) start a worker when they need it.
        os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
        context = ray.init(dashboard_host="127.0.0.1", configure_logging=True, logging_level="WARNING")
    filter_worker_output(verbose)
    return context


def stop_ray() -> None:
    """`ray.shutdown()`, less a second. Ray stops a local cluster's processes one kind at a time, the GCS before
    the autoscaler monitor, whose SIGTERM handler then tries to tell the GCS and is killed only after its grace
    second. A local cluster never autoscales, so the monitor is killed first; a joined cluster is left alone (its
    processes are not this driver's)."""
    import ray

    try:
        from ray._private import ray_constants, worker

        node = worker._global_node
        if node is not None and node.is_head():
            for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
                info.process.kill()
                info.process.wait(timeout=5)
    except Exception:  # Ray's internals moved: shut down the slow way
        pass
    ray.shutdown()


def run_study(study: Study, argv: list[str] | None = None) -> int:
    """Parse the command line, then run (or resume) the sweep; returns the process exit code: 0 ok, 1 some trials
    failed or the environment failed (disk full, lost cluster), 2 bad input, 130 interrupted (Ctrl-C). Every
    failure is one `error:` line."""
    args = build_parser(study).parse_args(argv)
    try:
        return _run(study, args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the Tuner runs, or a second Ctrl-C during its last snapshot
        print(f"\ninterrupted: {_continue_hint(args)}", file=sys.stderr)
        return 130
    except NoNodeLeft as err:  # the feature pass found no node to run on any more
        print(f"error: {err}, {_continue_hint(args)}", file=sys.stderr)
        return 1
    except Exception as err:
        if isinstance(err, BrokenPipeError) and args.dry_run:
            # `--dry-run | head`: the reader has what it wanted and nothing ran, so there is nothing to resume.
            # (In a sweep, a broken pipe is an environment failure like any other: the resume hint below.) Point
            # stdout at /dev/null so that the exit's own flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141  # what a shell reports for a process ended by SIGPIPE
        # The environment failed under the sweep: a full disk, a folder gone, the cluster lost. The logs are
        # written atomically, so what is there is whole. Anything else is our own bug: its traceback helps.
        cause = _environment_cause(err)
        if cause is None:
            raise
        print(f"error: {cause}; the logs written so far are intact: fix that and {_continue_hint(args)}",
              file=sys.stderr)
        return 1


def _environment_cause(err: BaseException) -> str | None:
    """One line for an environment failure (also when Ray wraps it), None for anything else."""
    text = f"{type(err).__name__}: {err}"
    if "No space left on device" in text or "[Errno 28]" in text:
        return "No space left on device (RUN_DIR or Ray's temporary folder is full)"
    if isinstance(err, OSError):
        return f"{err.strerror or err}" + (f" ({err.filename})" if getattr(err, "filename", None) else "")
    if type(err).__module__.startswith("ray."):  # head lost, GCS gone, connection dropped
        last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        return f"the Ray cluster failed ({type(err).__name__}: {last})"
    return None


def _continue_hint(args: argparse.Namespace) -> str:
    """The exact command that continues this sweep."""
    return f"continue with: {shlex.join(continue_command(args))}"


def continue_command(args: argparse.Namespace) -> list[str]:
    """This process's command line with --resume and --out RUN_DIR (absolute), --dry-run dropped."""
    argv, out, skip = list(sys.argv[1:]), [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in ("--out", "--resume", "--dry-run"):
            skip = item == "--out"
            continue
        if item.startswith("--out="):
            continue
        out.append(item)
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else f"sweeps/{args.out.name}.py"
    return ["python", script, *out, "--resume", "--out", str(args.out.expanduser().resolve())]


def _stored_recipe(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "sweep.json").read_text()).get("recipe")
    except (OSError, ValueError):
        return None


def _check_numbers(args: argparse.Namespace, plan) -> float | None:
    """Resources and retries: one line for a value that cannot work. Returns the GPUs per trial (None: auto)."""
    gpus = parse_gpus(str(plan.recipe["gpus_per_trial"]))
    if not plan.recipe["cpus_per_trial"] > 0:
        raise UserError(f"--cpus-per-trial {plan.recipe['cpus_per_trial']}: must be > 0")
    if args.max_failures < 0:
        raise UserError(f"--max-failures {args.max_failures}: must be >= 0 (0: no retries)")
    seen: dict[str, int] = {}
    for i, cfg in enumerate(plan.configs if plan.search is None else [], 1):
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key in seen:
            raise UserError(f"trials {seen[key]} and {i} have the same configuration ({key}): a repeated value "
                            f"(e.g. --seeds 0 0) runs the same trial twice; give each value once")
        seen[key] = i
    return gpus


def _experiment_trials(experiment: Path) -> dict[str, str]:
    """Trial id → status in Tune's newest experiment snapshot ({} when there is none)."""
    for state in sorted(experiment.glob("experiment_state-*.json"), reverse=True):
        try:
            trial_data = json.loads(state.read_text())["trial_data"]
            return {t["trial_id"]: t["status"] for t in (json.loads(a) for a, _ in trial_data)}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return {}


def recreate_missing_checkpoints(experiment: Path) -> list[Path]:
    """Put an empty folder where Tune's snapshot names an unfinished trial's checkpoint that is gone. Tune's own
    restore fails on a missing folder on every retry ("does not exist on storage anymore"); an empty one reaches
    TuneReporter.restore, which reports it unreadable and falls back to an older checkpoint."""
    made = []
    for state in sorted(experiment.glob("experiment_state-*.json"), reverse=True)[:1]:
        try:
            trial_data = json.loads(state.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):
            return []
        for trial_json, meta_json in trial_data:
            trial, last = json.loads(trial_json), json.loads(meta_json).get("last_result") or {}
            name, logdir = last.get("checkpoint_dir_name"), trial.get("relative_logdir")
            if name and logdir and trial.get("status") != "TERMINATED" and not (experiment / logdir / name).exists():
                (experiment / logdir / name).mkdir(parents=True)
                made.append(experiment / logdir / name)
    return made


def set_aside_orphan_logs(run_dir: Path, known: set[str]) -> list[Path]:
    """Move logs of trials that Tune's snapshot does not know into RUN_DIR/tune/orphan-logs/. A driver killed
    between a trial's start and the next snapshot leaves such a file; resumed, the search asks for a new trial in
    its place, and the orphan's rows would count as one more trial of the run."""
    moved = []
    for path in sorted((run_dir / "logs").glob("*.parquet")):
        if path.stem not in known:
            target = run_dir / TUNE_DIR / "orphan-logs" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
            moved.append(target)
    return moved


def choice_metric(study: Study, configs) -> str:
    """What searches, schedulers and stoppers choose on: validation accuracy when every trial holds out a
    validation split (val_per_class is not 0), else the study's metric (the test set's)."""
    if study.metric == "test_acc" and configs and all(getattr(c, "val_per_class", 0) != 0 for c in configs):
        return "val_acc"
    return study.metric


def _run(study: Study, args: argparse.Namespace) -> int:
    run_dir = args.out.expanduser().resolve()
    stored = _stored_recipe(run_dir) if args.resume else None
    plan = resolve(study, args, stored)
    gpus = _check_numbers(args, plan)
    cpus = float(plan.recipe["cpus_per_trial"])
    if args.dry_run:
        print("\n".join(describe(study, plan)))
        return 0

    made = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # the folders this sweep will create
    check_writable(run_dir)
    try:
        with RunLock(run_dir):
            return _run_locked(study, args, plan, run_dir, cpus, gpus)
    finally:
        _remove_if_unused(run_dir, made)


def _remove_if_unused(run_dir: Path, made: list[Path]) -> None:
    """Tidy up after a sweep that ended before writing anything in RUN_DIR (missing data, a refused configuration,
    Ctrl-C before Ray): only the lock file is there. It goes, and so do the folders this sweep created (`made`:
    RUN_DIR and its parents created with it, such as `runs/` for the default `runs/NAME`); a folder that was
    there before stays."""
    try:
        if [p.name for p in run_dir.iterdir()] != [LOCK]:
            return
        (run_dir / LOCK).unlink()
        for folder in made:
            folder.rmdir()
    except OSError:  # another process wrote in it (or a parent) meanwhile: keep it
        pass


def _run_locked(study: Study, args: argparse.Namespace, plan, run_dir: Path, cpus: float,
                gpus: float | None) -> int:
    study = study.loaded()  # the trainable and the parts that import torch and Ray
    experiment = run_dir / TUNE_DIR
    restoring = (experiment / "tuner.pkl").exists()
    if restoring and not args.resume:
        raise UserError(f"{run_dir} already holds a sweep: pass --resume to continue it, or --out NEW_DIR to "
                        f"start another")
    if args.resume and not restoring:
        print(f"note: no trial had started in {run_dir}; starting the trials from the beginning")
    total = plan.num_samples if plan.search else len(plan.configs)
    confirm = plan.search.confirm if plan.search is not None else None
    seeds = confirm_seeds(plan.configs[0].seed, confirm[1]) if confirm else []
    search_done = False
    if restoring:
        from sweeps.tune_state import repair as repair_snapshot

        for name in (TUNE_DIR, CONFIRM_DIR):  # first: what follows reads Tune's snapshot
            if (run_dir / name / "tuner.pkl").exists():
                for note in repair_snapshot(run_dir / name):
                    print(note)
        statuses = _experiment_trials(experiment)
        search_done = _all_finished(statuses, total)
        confirmed = _experiment_trials(run_dir / CONFIRM_DIR)
        stored_points = _stored_points(run_dir)
        if search_done and (confirm is None or (stored_points is not None
                                                and _all_finished(confirmed, len(stored_points)))):
            n = len(statuses) + len(confirmed)
            print(f"{study.name}: the sweep in {run_dir} already finished ({n} trials); nothing to resume")
            write_status(run_dir, "finished", trials=n, finished=n)
            drop_scratch(study, run_dir)
            _write_report(args, run_dir)
            return 0
        for moved in set_aside_orphan_logs(run_dir, set(statuses) | set(confirmed)):
            print(f"note: {moved.name} belongs to a trial started after Tune's last snapshot; it is rerun, and "
                  f"its rows were moved to {moved.parent}")

    check_address(args.address)  # one line for an address that does not answer, before the data load
    # --resume restarts each trial from the newest checkpoint named in Tune's experiment snapshot, which Tune
    # writes every 10 s by default: a driver killed in between would cost the newer epochs. The snapshot is a
    # small JSON file, so take it every 2 s (set TUNE_GLOBAL_CHECKPOINT_S to override).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # A reused trial process (reuse_actors, when on) first waits for the previous trial's thread to exit, and fails
    # the next trial if it has not by then: wait longer than Tune's default, which a busy machine can exceed.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "10")
    t0 = time.perf_counter()
    data = study.load_data(args.data_dir.expanduser().resolve())
    # the confirm phase trains on new seeds (new subsets): checked now, and their features computed with the rest
    prep_configs = [*plan.configs, *(dataclasses.replace(plan.configs[0], seed=seed) for seed in seeds)]
    for cfg in prep_configs:
        cfg.check_data(data)
    print(f"data: {getattr(data, 'describe', lambda: type(data).__name__)()} "
          f"(loaded in {time.perf_counter() - t0:.1f} s)")

    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from sweeps.console import LiveReport, RestoreNotes, TrialProgress
    from sweeps.node_watch import NoNodeWatch
    from sweeps.parquet_logger import ParquetLogger
    from sweeps.search import build_search
    from sweeps.tune_state import SnapshotCopy, refuse_restart

    start_ray(args.address, args.verbose)
    live = None if args.no_report else LiveReport(run_dir)
    try:
        if gpus is None:
            gpus = ((share(plan.configs) if callable(share := study.gpu_share) else share)
                    if ray.cluster_resources().get("GPU", 0) > 0 else 0.0)
            if gpus == 0 and args.address and not ray.cluster_resources().get("GPU", 0):
                print("note: the cluster has no GPU right now, so trials get none; an autoscaling cluster adds "
                      "GPU workers only when asked: pass --gpus-per-trial (e.g. 1 or 0.25)")
        resources = {"cpu": cpus, "gpu": gpus}
        epochs = max(getattr(c, "epochs", 0) or 0 for c in plan.configs)  # a trial's budget (0: not an epoch study)
        # a trial no node can ever hold would wait forever
        if note := check_fits(resources, local=not args.address):
            print(note)
        shared = {}
        if study.prepare is not None:  # the transfer studies' feature pass: as long as a sweep, on a CPU
            write_status(run_dir, "running", trials=total, finished=0)
            try:
                shared = study.prepare(data, prep_configs, resources, args)
            except (KeyboardInterrupt, NoNodeLeft):
                write_status(run_dir, "interrupted", trials=total, finished=0)
                raise
        trainable = tune.with_resources(tune.with_parameters(study.trainable, data=data, **shared), resources)
        print(f"{study.name}: {total} trial(s), {cpus:g} CPU + {gpus:g} GPU each; "
              f"cluster: {ray.cluster_resources().get('CPU', 0):g} CPU, {ray.cluster_resources().get('GPU', 0):g} GPU"
              + (f"; up to {epochs} epochs per trial" if epochs else "") + f"; into {run_dir}")
        if not restoring:  # a resumed sweep keeps its first configuration (Tune ignores a changed space)
            atomic_write(run_dir / "sweep.json", json.dumps({
                "sweep": study.name, "argv": sys.argv, "args": resolved_args(args), "recipe": plan.recipe,
                "resources_per_trial": resources, "configs": [c.to_dict() for c in plan.configs],
                # what a None in a configuration stands for, so the report can say it (analysis reads no config class)
                "none_means": {name: meaning for name in study.config_cls.field_types()
                               if (meaning := study.config_cls.meta(name).get("none"))}},
                indent=2, default=str) + "\n")
        # on a cluster, trials that no node can hold any more (a lost node) end the sweep instead of waiting for ever
        watch = NoNodeWatch(resources) if args.address else None
        search_alg = scheduler = stopper = early_stop_reason = None
        metric = choice_metric(study, plan.configs)
        if plan.search is not None:
            if metric == study.metric:
                print(f"warning: no validation split (--val-per-class 0): the search and its early stopping choose "
                      f"on {metric}, the test set, so the best trial's test accuracy is optimistic")
            search_alg, scheduler, stopper, early_stop_reason = build_search(
                plan.search, run_dir, metric, study.mode, max(c.epochs for c in plan.configs))

        def make_tuner(name: str, param_space: dict, num_samples: int, search_alg, scheduler, stopper, reason,
                       phase: str | None, trials: int, tags: list | None = None):
            # what the terminal shows: Ray's own output with --verbose, else the progress view (sweeps/console.py)
            views = [] if args.verbose else [TrialProgress(trials, epochs, metric, study.mode,
                                                           phase=phase or "trials", tags=tags)]
            views += [live] if live is not None else []
            views.append(RestoreNotes())  # with or without --verbose: a skipped checkpoint is always said
            views += [watch] if watch is not None else []
            if (run_dir / name / "tuner.pkl").exists():
                refuse_restart()
                for made in recreate_missing_checkpoints(run_dir / name):
                    print(f"note: checkpoint {made} was missing; its trial resumes from an older one")
                tuner = tune.Tuner.restore(str(run_dir / name), trainable=trainable, resume_errored=True)
                # The restored run config is the one pickled when the sweep started: keep its Parquet logger (it
                # carries the run's log settings) and show this driver's views.
                config = getattr(getattr(tuner, "_local_tuner", None), "get_run_config", lambda: None)()
                if config is not None:
                    config.callbacks = [c for c in config.callbacks or [] if isinstance(c, ParquetLogger)] + views \
                        + [SnapshotCopy(run_dir / name)]
                    config.verbose = 1 if args.verbose else 0
                return tuner
            return tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(metric=metric, mode=study.mode, num_samples=num_samples,
                                            search_alg=search_alg, scheduler=scheduler,
                                            # one worker process per slot, torch imported once, instead of
                                            # one per trial (benchmarks/trial_overhead.py)
                                            reuse_actors=True),
                run_config=tune.RunConfig(
                    name=name, storage_path=str(run_dir), stop=stopper,
                    # no folder given: the logger writes beside the experiment, wherever RUN_DIR is by then
                    callbacks=[ParquetLogger(config_types=study.config_cls.field_types(), early_stop_reason=reason,
                                             resources=resources, phase=phase), *views,
                               SnapshotCopy(run_dir / name)],
                    failure_config=tune.FailureConfig(max_failures=args.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=study.keep_checkpoints),
                    verbose=1 if args.verbose else 0,
                ),
            )

        phase = "search" if plan.search is not None else None
        results = []
        # A first Ctrl-C is Tune's: it stops the trials, snapshots the experiment and returns; a second one raises
        # KeyboardInterrupt here, and the snapshot taken every 2 s is what --resume continues from.
        try:
            if not search_done:
                write_status(run_dir, "running", trials=total, finished=0)
                results.append(make_tuner(TUNE_DIR, plan.param_space, plan.num_samples, search_alg, scheduler,
                                          stopper, early_stop_reason, phase, total).fit())
            statuses = _experiment_trials(experiment)
            if confirm is not None and _all_finished(statuses, total, errors_ok=True):
                points = load_or_choose(run_dir, lambda: confirm_points(
                    best_configs(run_dir / "logs", set(statuses), list(plan.search.space), metric,
                                 plan.search.baseline, confirm[0]), plan.search.baseline, seeds))
                total += len(points)
                print(f"{study.name}: confirm phase: {len(points)} trial(s), the baseline and "
                      f"{len(points) // len(seeds) - 1} best configuration(s) on seeds {seeds}")
                write_status(run_dir, "running", trials=total, finished=len(statuses))
                # the keys the points set are domains holding their values (a fixed value there draws a warning)
                space = {**plan.param_space, **{k: tune.choice(sorted({pt[k] for pt in points})) for k in points[0]}}
                results.append(make_tuner(CONFIRM_DIR, space, len(points),
                                          BasicVariantGenerator(points_to_evaluate=points), None, None, None,
                                          "confirm", len(points), confirm_tags(points)).fit())
            elif confirm is not None:
                total += (confirm[0] + 1) * confirm[1]  # not started: the search did not finish
        except KeyboardInterrupt:
            write_status(run_dir, "interrupted", trials=total)
            raise
    finally:
        if live is not None:
            live.stop()  # a refresh still running must not overwrite the final report
        stop_ray()
    return _summarize(args, study, run_dir, results, time.perf_counter() - t0, total, metric,
                      stopped=watch.reason if watch is not None else None)


def drop_scratch(study: Study, run_dir: Path) -> None:
    """Remove the study's scratch folders from a finished sweep: nothing will resume from them."""
    for name in study.scratch:
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _all_finished(statuses: dict[str, str], total: int, errors_ok: bool = False) -> bool:
    """Every one of `total` trials ended (TERMINATED; also ERROR when `errors_ok`)."""
    ended = ("TERMINATED", "ERROR") if errors_ok else ("TERMINATED",)
    return len(statuses) >= total and all(s in ended for s in statuses.values())


def _stored_points(run_dir: Path) -> list | None:
    try:
        return json.loads((run_dir / CONFIRM_FILE).read_text())["points"]
    except (OSError, ValueError, KeyError):
        return None


def _summarize(args, study: Study, run_dir: Path, results: list, seconds: float, total: int, metric: str,
               stopped: str | None = None) -> int:
    """The sweep's last lines and exit code; `stopped`: why the runner stopped it (NoNodeWatch's reason)."""
    # Counted from Tune's final snapshots: after a Ctrl-C, Tune's in-memory trials read TERMINATED once their
    # actors are stopped, while the snapshot keeps what they were (RUNNING, PENDING).
    statuses = [*_experiment_trials(run_dir / TUNE_DIR).values(),
                *_experiment_trials(run_dir / CONFIRM_DIR).values()] or [
        "TERMINATED" if r.error is None else "ERROR" for grid in results for r in grid]
    finished, n_err = statuses.count("TERMINATED"), statuses.count("ERROR")
    # trials neither finished nor failed (stopped mid-way, or never started): the sweep was interrupted
    unfinished = max(total, len(statuses)) - finished - n_err
    interrupted = unfinished > 0
    write_status(run_dir, "interrupted" if interrupted else "failed" if n_err else "finished", trials=total,
                 finished=finished, failed=n_err)
    if not interrupted and not n_err:
        drop_scratch(study, run_dir)
    print(f"\n{study.name}: {finished} of {total} trial(s) finished in {seconds:.0f} s, {n_err} failed"
          + (f", {unfinished} did not finish (interrupted)" if interrupted else ""))
    try:
        print(_best_line(results[0], metric, study, search=len(results) > 1))
    except Exception:  # no trial reported anything (all failed), or the search ran before a resume
        pass
    for result in (r for grid in results for r in grid):
        if result.error is not None:
            print(f"  failed trial in {result.path}: {str(result.error).strip().splitlines()[-1]}")
    print(f"logs: {run_dir / 'logs'} (pandas.read_parquet reads it whole)")
    _write_report(args, run_dir)
    if interrupted and stopped:
        print(f"error: {stopped}, {_continue_hint(args)}", file=sys.stderr)
        return 1
    if interrupted:
        print(f"interrupted: {finished} of {total} trials finished, {unfinished} did not; {_continue_hint(args)}",
              file=sys.stderr)
        return 130
    return 1 if n_err else 0


def _best_line(grid, metric: str, study: Study, search: bool) -> str:
    """The best epoch of the (search's) trials on `metric`, chosen as the report chooses it (val_acc:
    analysis.tables.validation_order; otherwise the first best), the test accuracy there, and the config keys that
    varied between those trials, floats to 4 significant digits: what a reader compares (sweep.json and the report
    hold every key in full)."""
    import pandas as pd

    from analysis.logs import format_value
    from analysis.tables import validation_order
    from sweeps.console import fmt_metric

    rows = pd.concat([r.metrics_dataframe.assign(_result=i) for i, r in enumerate(grid)
                      if r.metrics_dataframe is not None and metric in r.metrics_dataframe], ignore_index=True)
    rows = rows[rows[metric].notna()].reset_index(drop=True)
    if metric == "val_acc":
        row = rows.iloc[validation_order(rows)[1][0]]
    else:
        row = rows.loc[rows[metric].idxmax() if study.mode == "max" else rows[metric].idxmin()]
    best = grid[int(row["_result"])]
    configs = [r.config for r in grid]
    varied = [k for k in best.config
              if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
    test = f" ({fmt_metric(study.metric, row[study.metric])} there)" if metric != study.metric else ""
    whose = "the search's trial" if search else "trial"
    return (f"best {fmt_metric(metric, row[metric])} at epoch {int(row['epoch'])} of {whose} {row['trial_id']}{test}"
            + (": " + ", ".join(f"{k}={format_value(best.config[k], 4)}" for k in varied) if varied else ""))


def _write_report(args, run_dir: Path) -> None:
    if args.no_report:
        return
    from analysis.report import write_report

    try:
        index, headline = write_report(run_dir)
        print(f"report: {index}")
        if headline:  # a search's honest answer, not only its best single trial
            print(headline)
    except Exception as err:  # the sweep's logs are safe; a report problem must not hide that
        print(f"warning: the report could not be written ({err}); run python -m analysis.report {run_dir}")
