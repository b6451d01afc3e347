"""Optuna search with early stopping, for the sweep runner: `Search` says what to search and how to stop trials,
`build_search` turns it into Ray Tune parts with the study stored in `RUN_DIR/optuna.db` (SQLite).

- Optuna's TPE sampler (seeded) through Ray Tune's OptunaSearch, limited to --max-concurrent trials at once.
- The original study's configuration is enqueued first, so every study holds its own baseline.
- ASHA (grace period, reduction factor) and/or a plateau stopper end weak trials early, never the baseline (it
  runs its whole budget, so it is compared as published; its results still fill ASHA's rungs). Such trials reach
  Optuna as PRUNED with their per-epoch intermediate values, not as COMPLETE trials scored by a partial epoch
  (Ray's default), so the sampler is not misled; the logs' stop_reason says asha or plateau.
- On --resume, Optuna trials that were asked for but never reached Tune's last snapshot are marked FAIL, so the
  study holds no duplicate of any trial.

    optuna-dashboard sqlite:///RUN_DIR/optuna.db     # to browse the study
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import TrialPlateauStopper

from sweeps.search_space import Search

STUDY_FILE = "optuna.db"


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna PRUNED for trials stopped before their epoch budget (ASHA, plateau)
    and FAIL for diverged ones, and cleans orphaned RUNNING trials after a restore."""

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs  # the budget is fixed in these sweeps, never searched
        self._last_step: dict[str, int] = {}

    def _record(self, trial_id: str) -> optuna.trial.FrozenTrial:
        """The study's record of a trial Tune runs (one read of the study)."""
        return self._ot_study.get_trials(deepcopy=False)[self._ot_trials[trial_id].number]

    def _already_told(self, trial_id: str, record: optuna.trial.FrozenTrial | None = None) -> bool:
        """True when the study holds this trial as finished although Tune still runs it: after a driver kill,
        Tune's snapshot may predate the study's last write, and Tune then reruns the trial's last epochs."""
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return False
        if (record or self._record(trial_id)).state.is_finished():
            self._completed_trials.add(trial_id)
            return True
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_result(trial_id, result)
        record = self._record(trial_id)
        if self._already_told(trial_id, record):
            return
        epoch, value = result.get("epoch"), result.get(self.metric)
        if epoch is None or value is None:
            return super().on_trial_result(trial_id, result)
        # Step = the trial's epoch, not Tune's training_iteration (OptunaSearch's): a trial that resumed from an
        # older checkpoint than the one Tune's snapshot names (that one was unreadable) repeats epochs Tune counts
        # anew. A repeated epoch keeps its first value (Optuna refuses a second one, with a warning).
        if epoch not in record.intermediate_values:
            self._ot_trials[trial_id].report(value, epoch)
        self._last_step[trial_id] = max(epoch, self._last_step.get(trial_id, 0))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._already_told(trial_id):
            return
        if trial_id in self._completed_trials or trial_id not in self._ot_trials or error or not result:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        epoch, value = result.get("epoch"), result.get(self.metric)
        # A scheduler's STOP reaches the searcher with the stopping result only: record it as the last step.
        if epoch is not None and value is not None and epoch > self._last_step.get(trial_id, 0):
            ot_trial.report(value, epoch)
        if result.get("stop_reason") == "diverged":
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        elif epoch is not None and epoch < self._max_epochs:
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)  # keeps intermediate values
        else:
            return super().on_trial_complete(trial_id, result, error)
        self._completed_trials.add(trial_id)

    # Where this driver's study lives (RUN_DIR/optuna.db), set by build_search. The saved searcher state holds the
    # storage URL of the run's first driver; a run folder moved or copied since must not write there.
    study_file: Path | None = None

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        if self.study_file is not None:
            self._rebind(f"sqlite:///{self.study_file}")
        known = {t.number for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in known:  # asked after the last snapshot: Tune will ask again
                self._ot_study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)


    def _rebind(self, url: str) -> None:
        """Point the study, and every trial handle Tune keeps, at the study stored at `url`."""
        if getattr(self._storage, "url", None) == url:
            return
        self._storage = optuna.storages.RDBStorage(url)
        self._ot_study = optuna.load_study(study_name=self._ot_study.study_name, storage=self._storage,
                                           sampler=self._sampler)
        self._ot_trials = {tid: optuna.Trial(self._ot_study, t._trial_id) for tid, t in self._ot_trials.items()}


def is_baseline(config: dict[str, Any], baseline: dict[str, Any]) -> bool:
    """True for the trial of the study's enqueued baseline: every searched key holds the baseline's value (a
    sampled trial never matches a continuous domain's value exactly)."""
    return bool(baseline) and all(config.get(k) == v for k, v in baseline.items())


class BaselineKeepingASHA(ASHAScheduler):
    """ASHA that never stops the study's baseline: its results still fill the rungs (it is a fair competitor for
    the others), but it runs its whole epoch budget, so the report compares against the reference as published,
    not against its first epochs."""

    def __init__(self, *args, baseline: dict[str, Any], **kwargs):
        super().__init__(*args, **kwargs)
        self._baseline = dict(baseline)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == self.STOP and is_baseline(trial.config, self._baseline):
            return self.CONTINUE  # the trainable ends by itself at its budget
        return action


class RecordingPlateauStopper(TrialPlateauStopper):
    """A plateau stopper that remembers which trials it stopped, so the logs can say why; the baseline runs its
    budget (Tune's results carry each trial's config)."""

    def __init__(self, *args, baseline: dict[str, Any] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stopped: set[str] = set()
        self._baseline = dict(baseline or {})

    def __call__(self, trial_id: str, result: dict) -> bool:
        stop = super().__call__(trial_id, result)
        if stop and is_baseline(result.get("config") or {}, self._baseline):
            return False
        if stop:
            self.stopped.add(trial_id)
        return stop


def build_search(search: Search, run_dir: Path, metric: str, mode: str, max_epochs: int):
    """(search_alg, scheduler, stopper, early_stop_reason) for the Tuner and the Parquet logger."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}")
    PrunedAwareOptunaSearch.study_file = run_dir / STUDY_FILE
    searcher = PrunedAwareOptunaSearch(metric=metric, mode=mode, points_to_evaluate=[search.baseline],
                                       max_epochs=max_epochs,
                                       sampler=optuna.samplers.TPESampler(seed=search.seed),
                                       study_name=search.study_name, storage=storage)
    search_alg = ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)
    scheduler = None
    if search.asha is not None:
        grace, factor = search.asha
        scheduler = BaselineKeepingASHA(time_attr="epoch", max_t=max_epochs, grace_period=grace,
                                        reduction_factor=factor, baseline=search.baseline)
    stopper = None
    if search.plateau is not None:
        stopper = RecordingPlateauStopper(metric=metric, std=0.002, num_results=search.plateau,
                                          grace_period=search.plateau, mode=mode, baseline=search.baseline)

    def early_stop_reason(trial_id: str) -> str:
        return "plateau" if stopper is not None and trial_id in stopper.stopped else "asha"

    return search_alg, scheduler, stopper, early_stop_reason
