"""What a search is declared with, without importing Optuna or Ray: `SearchSpace` (a search script's domains,
baseline and option defaults), its `Domain`s (`choice`, `uniform`, `loguniform`, `randint`: Ray Tune's domains of
those names, built only when the search is resolved, and said in words for --help and --dry-run), `SearchOptions`
(the `--num-samples`, `--asha`, ... flags, validated like a trial config) and `Search` (one sweep's resolved
settings, with Tune's domains). sweeps/search.py turns a `Search` into Ray Tune parts.

    SEARCH = SearchSpace(space={"lr": loguniform(1e-3, 0.3), "lr_step": randint(0, 21)}, baseline={...})
    str(randint(0, 21))     # 'an integer from 0 to 20'
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from trainables.config import ConfigError, TrialConfig


@dataclass(frozen=True)
class SearchOptions(TrialConfig):
    """A search's settings; sweep scripts generate `--num-samples`, `--asha`, ... from these fields, validated
    like a trial config (messages name the flag)."""

    num_samples: int = field(default=20, metadata={"ge": 1, "help": "trials in the study, the baseline included"})
    max_concurrent: int = field(default=4, metadata={"ge": 1, "help": "trials running at once"})
    search_seed: int = field(default=0, metadata={"ge": 0, "help": "seed of Optuna's TPE sampler"})
    asha: str = field(default="2,3", metadata={
        "metavar": "GRACE,FACTOR", "help": "ASHA early stopping: grace period in epochs and reduction factor; "
                                           "off disables it"})
    plateau: int | None = field(default=None, metadata={
        "ge": 1, "metavar": "EPOCHS", "none": "off",
        "help": "also stop a trial whose accuracy varied by < 0.002 (std) over EPOCHS epochs"})
    confirm: str = field(default="off", metadata={
        "metavar": "K,S", "help": "after the search, train its K best configurations (by validation accuracy) and "
                                  "the baseline again on S fresh seeds with the whole budget, logged as phase "
                                  "confirm; the report's tuned-vs-baseline headline uses these runs only; off: none"})

    @classmethod
    def label(cls, name: str) -> str:
        return "--" + name.replace("_", "-")

    def extra_checks(self) -> None:
        self.asha_tuple  # noqa: B018 (parses, or raises the user's error)
        self.confirm_tuple  # noqa: B018

    @property
    def confirm_tuple(self) -> tuple[int, int] | None:
        if self.confirm == "off":
            return None
        try:
            k, seeds = (int(part) for part in self.confirm.split(","))
        except ValueError:
            raise ConfigError(f"--confirm {self.confirm!r}: expected K,S such as 3,3, or off") from None
        if k < 1 or seeds < 1:
            raise ConfigError(f"--confirm {self.confirm}: K (configurations) and S (seeds) must be >= 1")
        return k, seeds

    @property
    def asha_tuple(self) -> tuple[int, float] | None:
        if self.asha == "off":
            return None
        try:
            grace, factor = self.asha.split(",")
            asha = (int(grace), float(factor))
        except ValueError:
            raise ConfigError(f"--asha {self.asha!r}: expected GRACE,FACTOR such as 2,3, or off") from None
        if asha[0] < 1 or not asha[1] > 1:
            raise ConfigError(f"--asha {self.asha}: the grace period must be >= 1 and the factor > 1")
        return asha


@dataclass(frozen=True)
class Domain:
    """A searched range: `kind` is the Ray Tune function that builds it (`tune()`), `args` its arguments."""

    kind: str
    args: tuple

    def tune(self) -> Any:
        from ray import tune  # when the search is resolved: --help and --dry-run's wording need no Ray

        return getattr(tune, self.kind)(*self.args)

    def __str__(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.args[0]))
        low, high = self.args
        if self.kind == "randint":  # Tune's upper bound is exclusive
            return f"an integer from {low} to {high - 1}"
        return f"{'log-uniform' if self.kind == 'loguniform' else 'uniform'} from {low:g} to {high:g}"


def choice(values: list) -> Domain:
    return Domain("choice", (list(values),))


def uniform(low: float, high: float) -> Domain:
    return Domain("uniform", (low, high))


def loguniform(low: float, high: float) -> Domain:
    return Domain("loguniform", (low, high))


def randint(low: int, high: int) -> Domain:
    """Integers low .. high - 1, as Ray Tune's randint."""
    return Domain("randint", (low, high))


@dataclass(frozen=True)
class SearchSpace:
    """What a search script declares: the domains to search, the reference configuration (run first, as the
    study's baseline), optional domains that `--tune-KEY` adds, its own SearchOptions defaults and what
    --smoke-test changes in them."""

    space: dict[str, Domain]
    baseline: dict[str, Any]
    optional: dict[str, Domain] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    smoke: dict[str, Any] = field(default_factory=lambda: {"num_samples": 4, "max_concurrent": 2, "asha": "1,2",
                                                           "confirm": "1,2"})


@dataclass
class Search:
    space: dict[str, Any]  # Tune domains (tune.choice, tune.loguniform, tune.randint, ...)
    baseline: dict[str, Any]  # the original study's configuration, run first
    num_samples: int = 20
    max_concurrent: int = 4
    seed: int = 0
    asha: tuple[int, float] | None = (2, 3.0)  # (grace period in epochs, reduction factor); None: off
    plateau: int | None = None  # stop after this many epochs without accuracy spread; None: off
    confirm: tuple[int, int] | None = None  # (K best configurations, S fresh seeds) rerun after the search
    study_name: str = field(default_factory=lambda: time.strftime("study-%Y%m%d-%H%M%S"))
