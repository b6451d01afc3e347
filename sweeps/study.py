"""What a sweep script declares: `Study`, its study constants and the parts the runner wires together.

A script is its constants and one call (see sweeps/stn_mnist.py):

    def parts():  # what runs the sweep, imported only then
        from trainables.stn import train_stn
        return {"trainable": train_stn}

    STUDY = Study(name="stn_mnist", doc=__doc__, config_cls=STNConfig, parts=parts,
                  defaults={"seed": [0, 1, 2]}, smoke={"epochs": 2, ...}, gpu_share=0.25)
    if __name__ == "__main__":
        raise SystemExit(run_study(STUDY))

Every option of the study comes from `config_cls` (sweeps/options.py), so adding a hyperparameter is adding a
field to the config class. The config classes (trainables/configs.py) import neither torch nor Ray, and the parts
that do (the trainable, `prepare`, a `gpu_share` function) come from `parts`, called only when the sweep runs
(`Study.loaded`): `--help` and a refused value answer without loading them.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from sweeps.search_space import SearchSpace
from trainables.config import TrialConfig


def _load_mnist(data_dir: Path):
    from trainables.data import load_mnist  # torch: only when data is loaded

    return load_mnist(data_dir)


@dataclass(frozen=True)
class Study:
    name: str
    doc: str | None
    config_cls: type[TrialConfig]
    trainable: Callable[..., None] | None = None  # the Ray Tune function trainable (or from `parts`)
    # A function that imports and returns the parts that need torch or Ray ({"trainable": ..., "prepare": ...}),
    # called only when the sweep runs.
    parts: Callable[[], dict[str, Any]] | None = None
    # Study constants that differ from the config's defaults; a list is a grid axis (seeds, sizes, models).
    defaults: dict[str, Any] = field(default_factory=dict)
    smoke: dict[str, Any] = field(default_factory=dict)  # what --smoke-test sets (explicit options still win)
    search: SearchSpace | None = None  # an Optuna search instead of a grid
    # Called once on the driver with --data-dir; the result reaches every trial as `data`.
    load_data: Callable[[Path], Any] = _load_mnist
    # After Ray starts, before the Tuner: (data, configs, resources per trial, parsed options) → more keyword
    # arguments for the trainable, shared by every trial through the object store (e.g. cached features).
    prepare: Callable[[Any, list[TrialConfig], dict[str, float], argparse.Namespace], dict[str, Any]] | None = None
    extra_options: Callable[[argparse.ArgumentParser], None] | None = None  # options that are not config fields
    hidden: tuple[str, ...] = ()  # config keys without a flag (still settable with --set)
    notes: dict[str, str] = field(default_factory=dict)  # study-specific help, appended to a field's own
    metric: str = "test_acc"
    mode: str = "max"
    # GPUs per trial when --gpus-per-trial is auto and the cluster has GPUs; or a function of the trial configs
    # that returns it (the transfer studies: none for cached-mode heads, sweeps/features.py: trial_gpu_share).
    gpu_share: float | Callable[[list[TrialConfig]], float] = 1.0
    # Checkpoints kept per trial; None keeps all. Tune's pruning of old checkpoints races with its experiment
    # snapshot: a driver killed in between makes --resume log errors for checkpoints already deleted. Trial
    # checkpoints hold only trainable state (the STN: 124 KB), so keeping all is cheap.
    keep_checkpoints: int | None = None
    # RUN_DIR subfolders kept only until the sweep has finished: what a resumed sweep reuses (the transfer studies'
    # feature chunks, sweeps/features.py), removed once nothing is left to resume.
    scratch: tuple[str, ...] = ()

    def loaded(self) -> "Study":
        """This study with `parts` imported into its fields: what the runner runs."""
        return replace(self, parts=None, **self.parts()) if self.parts is not None else self
