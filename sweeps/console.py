"""What a sweep prints while it runs, and the report it refreshes meanwhile.

By default a sweep prints what it will run, a progress bar per backbone for the feature pass (images/s, ETA), one
view of the trials (done / running / pending / stopped early / failed, epochs done of the total, the best metric
so far and its trial, elapsed and ETA), and at the end the summary and where the report is. On a terminal the
bars update in place (tqdm); when stdout is not a terminal (CI, `ray job logs`, a file) the same facts come as
one line per finished trial and a status line at most every 30 s.

Ray's own output stays out of the way unless `--verbose`: Tune's per-trial boxes and status tables, the workers'
"Checkpoint successfully created" messages, the traceback a trial's process prints when Ray ends it with SIGTERM
after a scheduler stopped it, and the token-authentication notice of a local Ray. Other worker output, warnings
and errors still come through.

`LiveReport` rebuilds RUN_DIR/report in a separate low-priority process when a trial ends, at most once a minute,
so a researcher can look at a long sweep before it finishes; the runner stops it before the final report.

    quiet_ray(verbose)                                  # before ray.init
    filter_worker_output(verbose)                       # after ray.init
    callbacks = [TrialProgress(total_trials=30, epochs=50, metric="val_acc"), LiveReport(run_dir)]
    with FeatureProgress({"resnet50|imagenet|224|fp32": 12700}) as bars: bars.update(key, done, seconds)
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray import tune
from tqdm import tqdm

STATUS_EVERY_S = 30.0  # without a terminal: the longest silence while trials run
# Worker lines that say nothing a researcher needs: Ray Train's notes after every per-epoch checkpoint and when a
# retried trial restores one (the failure itself is reported).
_CHATTER = ("Checkpoint successfully created at:", "from checkpoint: Checkpoint(")
# a lost node's message: its first sentences say what happened; the log tail after them is Ray's internals
RAYLET_LOG_TAIL = re.compile(r"(Raylet is terminated\..*?)\s*Last \d+ lines of the Raylet logs:", re.DOTALL)


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def fmt_metric(name: str, value: float | None) -> str:
    """Accuracies in percent with one decimal, anything else as a plain number."""
    if value is None:
        return f"{name} -"
    return f"{name} {100 * value:.1f}%" if name.endswith("acc") else f"{name} {value:.4g}"


# -- Ray's output -------------------------------------------------------------------------------------------------
class _DropMessages(logging.Filter):
    def __init__(self, *needles: str):
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self.needles)


def quiet_ray(verbose: bool) -> None:
    """Before ray.init: the local cluster's token-authentication notice is for cluster operators, not for a
    researcher running a sweep on a laptop. Tune's newer console output prints its experiment box and folder
    even when silent (verbose=0); its classic output stays silent."""
    if not verbose:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        # Optuna announces every study it creates; its warnings still show. Its messages come from child loggers
        # ("optuna.storages..."), which a filter on "optuna" never sees: set the level through Optuna's own API.
        if "optuna" in sys.modules:  # imported by search scripts only; nothing else logs through it
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
        for name in ("ray._private.authentication.authentication_token_setup", "ray"):
            logging.getLogger(name).addFilter(_DropMessages("Token authentication is enabled"))


def drop_chatter(lines: list[str]) -> list[str]:
    """Worker output minus Ray's routine messages and the SIGTERM traceback of a process Ray ended on purpose
    (a trial a scheduler stopped, a worker ended at shutdown): a traceback block whose last line is `SystemExit`
    raised by Ray's SIGTERM handler, with the "Exception ignored in" line before it when the signal arrived in a
    callback. A lost node's "Raylet is terminated" message keeps its first sentences, not the 20 lines of Ray's
    internal log it quotes. Every other line, warnings and real tracebacks included, is kept."""
    kept: list[str] = []
    block: list[str] = []
    for line in lines:
        if any(c in line for c in _CHATTER):
            continue
        if (died := RAYLET_LOG_TAIL.search(line)) is not None:
            line = line[:died.end(1)] + " (its log: raylet.out in that node's Ray logs)"
        if block:
            block.append(line)
            if line and not line.startswith((" ", "\t")) and not line.startswith("Traceback"):
                # the exception line ends the block
                if not (line.startswith("SystemExit") and any("sigterm" in b.lower() for b in block)):
                    kept.extend(block)
                elif kept and kept[-1].startswith("Exception ignored in"):
                    kept.pop()  # Python's header for an exception raised in a callback, here the SIGTERM one
                block = []
            continue
        if line.startswith("Traceback (most recent call last)"):
            block = [line]
            continue
        kept.append(line)
    kept.extend(block)
    return kept


def filter_worker_output(verbose: bool) -> None:
    """After ray.init: pass the workers' output, and the errors Ray publishes to the driver (a lost node's), through
    `drop_chatter` on their way to this terminal, each of those errors once. Uses two private hooks of Ray's: its
    handler list for worker output and the function its error listener prints with; where this Ray has neither,
    its output is left as it is."""
    if verbose:
        return
    said: set[str] = set()  # a lost node's message comes from each of its Ray agents: say it once

    def keep(lines: list[str]) -> list[str]:
        out = []
        for line in drop_chatter(lines):
            if line.startswith("Raylet is terminated"):
                if line in said:
                    continue
                said.add(line)
            out.append(line)
        return out

    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
        original = dict(getattr(dispatcher, "handlers", [])).get("ray_print_logs")
    except ImportError:
        original = None
    if original is not None:
        def filtered(data: dict[str, Any]) -> None:
            if lines := keep(list(data.get("lines") or [])):
                original({**data, "lines": lines})

        dispatcher.remove_handler("ray_print_logs")
        dispatcher.add_handler("ray_print_logs", filtered)
    try:
        from ray._private import worker as ray_worker
        printer = ray_worker.print_to_stdstream  # called by the thread that prints errors published to the driver
    except (ImportError, AttributeError):
        return
    if getattr(printer, "filtered", False):  # a second sweep in this process
        return

    def print_kept(data: dict[str, Any], ignore_prefix: bool) -> None:
        if lines := keep(list(data.get("lines") or [])):
            printer({**data, "lines": lines}, ignore_prefix=ignore_prefix)

    print_kept.filtered = True
    ray_worker.print_to_stdstream = print_kept


# -- the feature pass -----------------------------------------------------------------------------------------------
class FeatureProgress:
    """One bar per feature task (images done of all, images/s, ETA) on a terminal; otherwise a line per task at
    most every 30 s and when it is done."""

    def __init__(self, totals: dict[str, int], stream: TextIO | None = None, every_s: float = STATUS_EVERY_S,
                 initial: dict[str, int] | None = None):
        """`initial`: images of a task's pass done before it started (read back from disk); its speed and ETA
        count only its own."""
        self.totals, self.stream, self.every_s = totals, stream or sys.stdout, every_s
        self.tty = is_terminal(self.stream)
        self.bars: dict[str, tqdm] = {}
        self.initial = {k: (initial or {}).get(k, 0) for k in totals}
        self.done = dict(self.initial)
        self.seconds: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self.last_line = self.t0

    def __enter__(self) -> "FeatureProgress":
        if self.tty:
            for pos, (key, total) in enumerate(self.totals.items()):
                self.bars[key] = tqdm(total=total, initial=self.initial[key], desc=f"features {label(key)}",
                                      unit="img", position=pos, file=self.stream, dynamic_ncols=True, leave=True)
        return self

    def update(self, key: str, done: int, seconds: float) -> None:
        """Task `key` has done `done` images after `seconds` of its own time."""
        self.done[key], self.seconds[key] = done, seconds
        if self.tty:
            bar = self.bars[key]
            bar.update(done - bar.n)
        self.tick()

    def tick(self) -> None:
        """Without a terminal: a line per unfinished task when 30 s have passed since the last."""
        now = time.perf_counter()
        if self.tty or now - self.last_line < self.every_s:
            return
        self.last_line = now
        for k, total in self.totals.items():
            done, seconds = self.done[k], self.seconds.get(k, 0.0)
            if done >= total:
                continue
            own = done - self.initial[k]
            rate = own / seconds if own > 0 and seconds > 0 else None
            speed = f"{rate:.0f} images/s, ETA {fmt_duration((total - done) / rate)}" if rate else "starting"
            self.line(f"features: {label(k)}: {done:,} of {total:,} images ({speed})")

    def line(self, text: str) -> None:
        if self.tty:
            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()


def label(key: str) -> str:
    """'resnet50|imagenet|224|fp32' → 'resnet50, imagenet, 224 px, fp32'"""
    from trainables.transfer import split_feature_key

    model, weights, size, dtype = split_feature_key(key)
    return f"{model}, {weights}, {size} px, {dtype}"


# -- the trials -------------------------------------------------------------------------------------------------------
class RestoreNotes(tune.Callback):
    """Prints, on stderr, what a trial's restore skipped (unreadable checkpoints, where it resumed), which the trial
    sends with its first result after restoring (trainables.loop.RESTORE_NOTES). Results reach the driver for
    sure; a trial's own stderr may not, when the sweep ends soon after."""

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        from trainables.loop import RESTORE_NOTES

        for line in str(result.get(RESTORE_NOTES) or "").splitlines():
            tqdm.write(line, file=sys.stderr)  # above the progress view's bars, on a terminal


class TrialProgress(tune.Callback):
    """The view of a sweep's trials. `total_trials` and `epochs` (per trial) are the plan; a trial stopped early
    takes its unrun epochs out of the total, so the ETA is for the work that is left."""

    def __init__(self, total_trials: int, epochs: int, metric: str, mode: str = "max", phase: str = "trials",
                 stream: TextIO | None = None, every_s: float = STATUS_EVERY_S,
                 tags: list[tuple[dict[str, Any], str]] | None = None):
        self.total, self.epochs, self.metric, self.mode, self.phase = total_trials, epochs, metric, mode, phase
        # (settings, tag): a trial whose config holds all of a tag's settings is shown with the tag, e.g. a
        # confirm trial's role and seed ("baseline, seed 1"), which its id alone does not say
        self.tags = tags or []
        self.stream, self.every_s = stream, every_s
        self.best: tuple[float, str] | None = None
        self.counts: dict[str, int] = {}
        self.epochs_done = self.epochs_total = 0
        self.t0 = self.last_line = None
        self.bar: tqdm | None = None  # the terminal view: a text line and a bar of epochs
        self.line: tqdm | None = None
        self.drawn = 0.0
        self.reported: dict[str, str] = {}  # trial_id → "ended" or "failed", as the end hooks saw it

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "bar": None, "line": None}  # Tune pickles its callbacks with the experiment

    @property
    def tty(self) -> bool:
        return is_terminal(self.stream or sys.stdout)

    # Tune hooks
    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = self.last_line = now
            for trial in trials:  # a resumed sweep: what its trials reached before
                self._note_best(trial)
        self._count(trials)
        if self.tty:
            self._draw()
        elif now - self.last_line >= self.every_s:
            self.last_line = now
            self._print(self.status())

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and value == value:
            self._offer(float(value), trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trials, trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trials, trial, failed=True)

    def on_experiment_end(self, trials: list, **info) -> None:
        self._count(trials)
        if self.bar is not None:
            self._draw(force=True)
            self.line.close()
            self.bar.close()
            self.line = self.bar = None

    # state
    def _offer(self, value: float, trial_id: str) -> None:
        better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
        if better:
            self.best = (value, trial_id)

    def _note_best(self, trial) -> None:
        value = (getattr(trial, "metric_analysis", {}) or {}).get(self.metric, {}).get(self.mode)
        if isinstance(value, (int, float)):
            self._offer(float(value), trial.trial_id)

    def _count(self, trials: list) -> None:
        counts = {"done": 0, "running": 0, "stopped early": 0, "failed": 0}
        done_epochs = total_epochs = 0
        for trial in trials:
            ran = int((trial.last_result or {}).get("epoch") or 0)
            budget = int(trial.config.get("epochs") or self.epochs)
            # a trial's end hooks run before Tune sets its status
            ended = self.reported.get(trial.trial_id) or {"TERMINATED": "ended", "ERROR": "failed"}.get(trial.status)
            if ended == "ended":
                early = ran < budget and not (trial.last_result or {}).get("stop_reason")
                counts["stopped early" if early else "done"] += 1
                total_epochs += ran
            elif ended == "failed":
                counts["failed"] += 1
                total_epochs += ran
            else:
                if trial.status == "RUNNING":
                    counts["running"] += 1
                total_epochs += budget
            done_epochs += ran
        started = len(trials)
        counts["pending"] = max(self.total - started, 0) + sum(
            t.status == "PENDING" and t.trial_id not in self.reported for t in trials)
        self.counts = counts
        self.epochs_done = done_epochs
        self.epochs_total = total_epochs + max(self.total - started, 0) * self.epochs

    def eta(self) -> float | None:
        if self.t0 is None or self.epochs_done == 0:
            return None
        rate = (time.perf_counter() - self.t0) / self.epochs_done
        return rate * max(self.epochs_total - self.epochs_done, 0)

    def status(self, short: bool = False) -> str:
        """One line: trials ended (how), running and pending, the best so far; unless `short` (the terminal view,
        whose bar shows them), also the epochs, elapsed time and ETA."""
        c = self.counts
        ended = c.get("done", 0) + c.get("stopped early", 0) + c.get("failed", 0)
        best = ("" if self.best is None
                else f" · best {fmt_metric(self.metric, self.best[0])} ({short_id(self.best[1])})")
        text = (f"{self.phase}: {ended}/{self.total} ended ({c.get('done', 0)} done, {c.get('stopped early', 0)} "
                f"stopped early, {c.get('failed', 0)} failed), {c.get('running', 0)} running, "
                f"{c.get('pending', 0)} pending")
        if short:
            return text + best
        elapsed = time.perf_counter() - (self.t0 or time.perf_counter())
        return (f"{text} · epochs {self.epochs_done}/{self.epochs_total}{best} · "
                f"{fmt_duration(elapsed)} elapsed, ETA {fmt_duration(self.eta())}")

    def _ended(self, trials: list, trial, failed: bool) -> None:
        if trial.trial_id in self.reported:
            return
        self.reported[trial.trial_id] = "failed" if failed else "ended"
        self._count(trials)
        result = trial.last_result or {}
        ran, budget = int(result.get("epoch") or 0), int(trial.config.get("epochs") or self.epochs)
        value = result.get(self.metric)
        if failed:
            from sweeps.parquet_logger import _last_error_line

            how = f"failed after {ran} epoch(s): {_last_error_line(trial)}"
        elif result.get("stop_reason"):
            how = f"ended ({result['stop_reason']}) at epoch {ran}" + (f" of {budget}" if budget else "")
        elif ran < budget:
            how = f"stopped early at epoch {ran} of {budget}"
        else:
            how = f"done, {ran} epochs"
        best = (trial.metric_analysis or {}).get(self.metric, {}).get(self.mode)
        tag = next((t for settings, t in self.tags
                    if all(trial.config.get(k) == v for k, v in settings.items())), None)
        name = short_id(trial.trial_id) + (f" ({tag})" if tag else "")
        text = (f"trial {name} {how} · {fmt_metric(self.metric, value)} "
                f"(best {fmt_metric(self.metric, best).split(' ', 1)[1]})")
        if failed or not self.tty:
            c = self.counts
            self._print(f"{text} · {c['done'] + c['stopped early'] + c['failed']}/{self.total} ended")
        if self.tty:
            self._draw(force=True)

    # output
    def _print(self, text: str) -> None:
        if self.tty:
            tqdm.write(text, file=self.stream or sys.stdout)
        else:
            print(text, file=self.stream or sys.stdout, flush=True)

    def _draw(self, force: bool = False) -> None:
        """Two lines updated in place: the trials' counts and best so far, and a bar of epochs with elapsed and ETA
        (at most a few redraws a second: Tune's loop steps far more often)."""
        now = time.perf_counter()
        if not force and self.bar is not None and now - self.drawn < 0.5:
            return
        self.drawn = now
        stream = self.stream or sys.stdout
        if self.bar is None:
            self.line = tqdm(total=0, bar_format="{desc}", file=stream, dynamic_ncols=True, leave=True)
            self.bar = tqdm(total=max(self.epochs_total, 1), unit="epoch", file=stream, dynamic_ncols=True,
                            leave=True, bar_format=f"{self.phase}: {{percentage:3.0f}}%|{{bar}}| {{n_fmt}}/"
                                                   "{total_fmt} epochs [{elapsed}<{remaining}]")
        self.line.set_description_str(self.status(short=True), refresh=True)
        self.bar.total = max(self.epochs_total, 1)
        self.bar.n = self.epochs_done
        self.bar.refresh()


def short_id(trial_id: str) -> str:
    return trial_id.rsplit("_", 1)[-1] if "_" in trial_id else trial_id


# -- the live report ----------------------------------------------------------------------------------------------
class LiveReport(tune.Callback):
    """Rebuilds RUN_DIR/report (`python -m analysis.report RUN_DIR`, a separate process at low CPU priority, so
    trials never wait for it) after a trial ends, at most once every `every_s` seconds counted from the start.
    The report's first line says the run is in progress (it reads RUN_DIR/status.json). `stop()` ends a rebuild
    still running, so the final report is the last one written."""

    def __init__(self, run_dir: str | Path, every_s: float = 60.0):
        self.run_dir, self.every_s = Path(run_dir), every_s
        self.due = False
        self.last = time.monotonic()
        self.proc: subprocess.Popen | None = None

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.due = True

    on_trial_error = on_trial_complete

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "proc": None}  # Tune pickles its callbacks with the experiment

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if not self.due or time.monotonic() - self.last < self.every_s:
            return
        if self.proc is not None and self.proc.poll() is None:
            return  # the previous rebuild is still at work
        self.due, self.last = False, time.monotonic()
        try:  # where the run is now (a moved or copied run must not refresh the original's report)
            self.run_dir = Path(trials[0].storage.experiment_fs_path).parent
        except (AttributeError, IndexError, TypeError):
            pass
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.proc = subprocess.Popen([sys.executable, "-m", "analysis.report", str(self.run_dir)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, 15)
        except (AttributeError, OSError):
            pass

    def on_experiment_end(self, trials: list, **info) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
