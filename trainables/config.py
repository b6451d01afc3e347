"""Validated trial configurations: the single source of truth for every hyperparameter.

Every trainable has a frozen dataclass derived from `TrialConfig`. A field's metadata says everything about it:
its help, its allowed range (gt/ge/lt/le), its choices, what None means (`none`), and extra command-line names
(`aliases`). Sweep scripts generate their study options from these fields (sweeps/options.py), and
`Cfg.from_dict(d)` rejects unknown keys and out-of-range values with one message that names the key, the value and
what is allowed; sweeps call it on every trial configuration before Ray starts, so a typo never costs a cluster
allocation. A subclass changes a default by redeclaring the field with a plain value; the metadata is inherited.

    @dataclass(frozen=True)
    class MyConfig(SGDConfig):
        lr: float = 0.05                     # the study's default; range and help come from SGDConfig.lr
        width: int = field(default=8, metadata={"ge": 1, "help": "hidden units"})   # becomes --width

    MyConfig.from_dict({"lr": -1})   # ConfigError: config 'lr' = -1 is out of range: must be > 0
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import field
from typing import Any

from trainables.errors import ConfigError, UserError

__all__ = ["ConfigError", "UserError", "TrialConfig", "SGDConfig"]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, allows None) for `X | None` / `Optional[X]`."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _coerce(label: str, value: Any, tp: Any) -> Any:
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{label} = None is not allowed: expected {inner.__name__}")
    # bool is an int subclass; a flag given where a number is expected is almost always a mistake
    if inner is bool:
        if isinstance(value, bool):
            return value
    elif inner is int:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
    elif inner is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif inner is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{label} = {value!r} has the wrong type: expected {inner.__name__}")


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """Base for trial configs. Field metadata: gt/ge/lt/le bounds, choices, help."""

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def label(cls, name: str) -> str:
        """How messages name a field."""
        return f"config '{name}'"

    @classmethod
    def meta(cls, name: str) -> dict[str, Any]:
        """The field's metadata merged along the class hierarchy, so a subclass that only changes a default
        (`lr: float = 0.05`) keeps the base's help and range."""
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            f = getattr(klass, "__dataclass_fields__", {}).get(name)
            if f is not None:
                merged.update(f.metadata)
        return merged

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        types_ = cls.field_types()
        unknown = sorted(set(values) - set(types_))
        if unknown:
            raise ConfigError(
                f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"for {cls.__name__}; known keys: {', '.join(sorted(types_))}"
            )
        kwargs = {k: _coerce(cls.label(k), v, types_[k]) for k, v in values.items()}
        cfg = cls(**kwargs)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Range checks from field metadata, then the subclass's cross-field rules (`extra_checks`)."""
        ops = {"gt": (lambda v, b: v > b, ">"), "ge": (lambda v, b: v >= b, ">="),
               "lt": (lambda v, b: v < b, "<"), "le": (lambda v, b: v <= b, "<=")}
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), self.meta(f.name)
            if value is None:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{self.label(f.name)} = {value!r} is not allowed: must be a finite number")
            choices = meta.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(
                    f"{self.label(f.name)} = {value!r} is not allowed: choose one of {', '.join(map(repr, choices))}"
                )
            for key, (ok, sym) in ops.items():
                if key in meta and not ok(value, meta[key]):
                    raise ConfigError(f"{self.label(f.name)} = {value!r} is out of range: must be {sym} {meta[key]}")
        self.extra_checks()

    def extra_checks(self) -> None:
        """Override for rules that involve several fields."""

    def check_data(self, data: Any) -> None:
        """Override for rules that need the loaded data; sweeps run it on the driver before any trial starts."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: cls.meta(f.name).get("help", "") for f in dataclasses.fields(cls)}


@dataclasses.dataclass(frozen=True)
class SGDConfig(TrialConfig):
    """What every study trains with: a seed, an epoch budget, SGD with momentum and a StepLR, a training subset and
    a test limit. Each study redeclares the defaults it needs (its reference's); help and ranges live here."""

    seed: int = field(default=0, metadata={"ge": 0, "aliases": ("--seeds",),
                                           "help": "model init, data order and subset draw"})
    epochs: int = field(default=20, metadata={"ge": 1, "le": 10_000, "help": "training epochs (the budget)"})
    batch_size: int = field(default=64, metadata={"ge": 1, "help": "SGD mini-batch size"})
    lr: float = field(default=0.01, metadata={"gt": 0, "le": 10, "help": "SGD learning rate"})
    momentum: float = field(default=0.0, metadata={"ge": 0, "lt": 1, "help": "SGD momentum"})
    lr_step: int = field(default=0, metadata={"ge": 0,
                                              "help": "StepLR step in epochs; 0 keeps the learning rate constant"})
    gamma: float = field(default=0.1, metadata={"gt": 0, "le": 1, "help": "StepLR decay factor"})
    weight_decay: float = field(default=0.0, metadata={"ge": 0, "lt": 1, "help": "SGD weight decay (L2 penalty)"})
    train_per_class: int | None = field(default=None, metadata={
        "ge": 1, "aliases": ("--sizes", "--size"), "none": "the whole training set",
        "help": "training images per digit (a stratified subset drawn with the seed, nested across sizes)"})
    val_per_class: int | None = field(default=None, metadata={
        "ge": 0, "none": "a tenth of the smallest digit's training images",
        "help": "validation images per digit, held out of the training split with the seed (disjoint from every "
                "training subset of that seed) and logged as val_loss/val_acc; searches, schedulers and the "
                "report choose on them. 0: no validation split (choices fall back to the test set)"})
    test_limit: int | None = field(default=None, metadata={
        "ge": 1, "none": "the whole test set", "help": "evaluate on the first N test images"})
    compile: str = field(default="off", metadata={
        "choices": ("off", "default", "reduce-overhead", "max-autotune"),
        "help": "torch.compile the model (reduce-overhead and max-autotune use CUDA graphs on a GPU); compiled in a "
                "warm-up before the first epoch, whose time is logged as compile_seconds"})

    def check_data(self, data: Any) -> None:
        from trainables.data import check_per_class  # torch: only where data is loaded

        check_per_class(self.train_per_class, data, self.val_per_class)
