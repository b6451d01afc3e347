"""Tune's experiment snapshot, kept whole across a driver that dies while writing it.

Every 2 s Tune writes its snapshot (trial states, the searcher's and the search generator's state) to a staging
folder and then copies that folder into the experiment's folder (RUN_DIR/tune, RUN_DIR/tune-confirm). The copy is
not atomic: a driver killed during it leaves a file cut short there (seen: an empty `searcher-state-*.pkl`).
Tune's resume then fails half-way, logs it, and silently starts the experiment over with a search that thinks
trials are still running which no longer exist: the sweep waits forever.

Two parts prevent that, used by sweeps/runner.py:

- `SnapshotCopy`, a Tune callback: whenever Tune takes a snapshot (it asks callbacks for their state last, once
  the staging folder is complete, before copying it out), it writes the snapshot's files as one tar file,
  atomically, to `.snapshot.tar` in the experiment's folder. It keeps no state of its own for Tune to save.
- `repair(experiment)`, first thing on --resume (before the runner or Tune reads the snapshot): checks each file
  Tune will read (the newest of each kind, Tune's own choice) for completeness without loading it; if one is cut
  short, it puts back every snapshot file from the intact copy, so the files agree with each other, and says so.
  With no intact copy it raises UserError with what to do. `refuse_restart()` turns Tune's "Failed to restore
  the run state" into an error instead of a fresh start, for any other cause.

    python -m pytest tests/test_tune_state.py -q
"""
from __future__ import annotations

import fnmatch
import io
import json
import logging
import pickletools
import tarfile
from pathlib import Path

from ray import tune

from analysis.files import atomic_write
from trainables.errors import UserError

COPY = ".snapshot.tar"
# What Tune reads on resume: the newest file (by name) of each kind. `tuner.pkl` is written when a driver starts.
KINDS = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl", "basic-variant-state-*.json",
         "callback-states-*.pkl", "tuner.pkl")


def _kind(name: str) -> str | None:
    return next((k for k in KINDS if fnmatch.fnmatch(name, k)), None)


def intact(data: bytes) -> bool:
    """Whether a snapshot file is whole: a pickle stream that reaches its STOP opcode (checked opcode by opcode,
    nothing is loaded), or JSON that parses. Empty is never whole."""
    if data[:1] == b"\x80":  # pickle protocol >= 2: Tune's pickled states (some are named .json)
        try:
            for _ in pickletools.genops(io.BytesIO(data)):
                pass
            return True
        except Exception:  # truncated: "pickle exhausted before seeing STOP", or an unknown opcode
            return False
    try:
        json.loads(data)
        return True
    except ValueError:
        return False


def newest(folder: Path) -> dict[str, Path]:
    """Kind → the file of that kind that Tune's resume reads (the greatest name, as Tune picks it)."""
    found: dict[str, Path] = {}
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.is_file() and (kind := _kind(path.name)) and (kind not in found or path.name > found[kind].name):
            found[kind] = path
    return found


def write_copy(staging: Path, copy: Path) -> None:
    """The snapshot files in `staging`, and `tuner.pkl` beside `copy` when whole (Tuner writes it straight to
    RUN_DIR/tune), as one tar written atomically to `copy`: all of them complete, or the previous copy."""
    files = {p.name: p for p in sorted(staging.iterdir()) if p.is_file() and _kind(p.name)}
    tuner = copy.parent / "tuner.pkl"
    if tuner.is_file() and intact(tuner.read_bytes()):
        files["tuner.pkl"] = tuner
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in files.items():
            tar.add(path, arcname=name, recursive=False)
    atomic_write(copy, buf.getvalue())


def read_copy(copy: Path) -> dict[str, bytes]:
    """Name → bytes of the intact copy; {} when there is none or it is unreadable."""
    try:
        with tarfile.open(copy, mode="r") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile() and _kind(m.name)}
    except (OSError, tarfile.TarError):
        return {}


def repair(experiment: Path) -> list[str]:
    """Make the snapshot files Tune will read in `experiment` whole again; returns one note per file put back.
    Raises UserError when a file is cut short and no intact copy of it exists."""
    damaged = [path for path in newest(experiment).values() if not intact(path.read_bytes())]
    if not damaged:
        return []
    saved = read_copy(experiment / COPY)
    missing = [p for p in damaged if p.name not in saved or not intact(saved[p.name])]
    if missing:
        names = ", ".join(p.name for p in missing)
        raise UserError(f"cannot resume {experiment.parent}: Tune's snapshot file(s) {names} in {experiment} were "
                        f"cut off (the driver stopped while writing them) and no intact copy exists; the finished "
                        f"trials' logs are in {experiment.parent / 'logs'}; start a new sweep with --out NEW_DIR")
    notes = []
    for name, data in saved.items():  # all of them, so that the files Tune reads come from one snapshot
        path = experiment / name
        if not path.exists() or path.read_bytes() != data:
            atomic_write(path, data)
            if path in damaged:
                notes.append(f"note: {path} was cut off when the driver stopped; put back from the intact copy of "
                             f"Tune's last snapshot")
    return notes


class SnapshotCopy(tune.Callback):
    """Writes the intact copy of each Tune snapshot (see the module docstring). A failure to write it (a full
    disk) is reported once and never stops the sweep: the copy only matters if the driver dies mid-snapshot."""

    def __init__(self, experiment: Path):
        self.copy = Path(experiment) / COPY
        self.staging: Path | None = None
        self._warned = False

    def on_trial_start(self, iteration, trials, trial, **info):
        # a trial's storage names the driver's staging folder (the same one the controller writes)
        self.staging = Path(trial.storage.experiment_driver_staging_path)

    def _find_staging(self) -> Path | None:
        """Before any trial started (a kill during the first snapshot copy): the newest staging folder of this
        experiment in this driver's Ray session, where Tune puts it (artifacts/<time>/<name>/driver_artifacts)."""
        try:
            from ray.train.constants import _get_ray_train_session_dir

            found = Path(_get_ray_train_session_dir()).glob(f"*/{self.copy.parent.name}/driver_artifacts")
            return max((p for p in found if p.is_dir()), key=lambda p: p.stat().st_mtime, default=None)
        except Exception:  # Ray's internals moved: the first trial's start names it
            return None

    def get_state(self):  # called when Tune snapshots, after the staging folder holds every file
        if self.staging is None:
            self.staging = self._find_staging()
        if self.staging is not None and self.staging.is_dir():
            try:
                write_copy(self.staging, self.copy)
            except OSError as err:
                if not self._warned:
                    self._warned = True
                    print(f"warning: could not keep a copy of Tune's snapshot in {self.copy} ({err.strerror}); "
                          f"the sweep goes on")
        return None  # no state of its own: Tune writes no callback file for it


class RestoreFailed(UserError):
    pass


class _RefuseRestart(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Failed to restore the run state"):
            err = record.exc_info[1] if record.exc_info else None
            cause = f" ({type(err).__name__}: {(str(err).strip().splitlines() or [''])[-1]})" if err else ""
            raise RestoreFailed(f"Tune could not restore the sweep's state{cause}; nothing was rerun and the logs "
                                f"are as they were: start a new sweep with --out NEW_DIR, or report this with the "
                                f"files of RUN_DIR/tune")
        return True


def refuse_restart() -> None:
    """Make Tune's failed restore an error. Tune logs the failure and starts the experiment over with whatever
    part of the search state it had restored, which can wait forever for trials that no longer exist. The filter
    goes first, before any that rewrites the record."""
    logger = logging.getLogger("ray.tune.execution.tune_controller")
    if not any(isinstance(f, _RefuseRestart) for f in logger.filters):
        logger.filters.insert(0, _RefuseRestart())
