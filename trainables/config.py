"""Validated trial configurations.

Every trainable has a frozen dataclass derived from `TrialConfig`. `Cfg.from_dict(d)` rejects unknown keys and
out-of-range values with one message that names the key, the value and what is allowed; sweeps call it on
every trial configuration before Ray starts, so a typo never costs a cluster allocation.

    @dataclass(frozen=True)
    class MyConfig(TrialConfig):
        lr: float = field(default=0.01, metadata={"gt": 0, "help": "SGD learning rate"})

    MyConfig.from_dict({"lr": -1})   # ConfigError: lr = -1 is out of range: must be > 0
"""
from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from typing import Any


class UserError(Exception):
    """Bad input found before any trial starts; sweeps print the message as one line and exit 2."""


class ConfigError(UserError, ValueError):
    """A trial configuration that cannot run; the message is meant for the user as it is."""


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, allows None) for `X | None` / `Optional[X]`."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _coerce(name: str, value: Any, tp: Any) -> Any:
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config '{name}' = None is not allowed: expected {inner.__name__}")
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
    raise ConfigError(f"config '{name}' = {value!r} has the wrong type: expected {inner.__name__}")


# Field metadata shared by the trainables' configs (their defaults differ, their meaning and ranges don't).
SEED = {"ge": 0, "help": "model init, data order and subset draw"}
EPOCHS = {"ge": 1, "le": 10_000, "help": "training epochs"}
BATCH_SIZE = {"ge": 1, "help": "SGD mini-batch size"}
LR = {"gt": 0, "le": 10, "help": "SGD learning rate"}
MOMENTUM = {"ge": 0, "lt": 1, "help": "SGD momentum"}
LR_STEP = {"ge": 0, "help": "StepLR step in epochs; 0 keeps the learning rate constant"}
GAMMA = {"gt": 0, "le": 1, "help": "StepLR decay factor"}
TRAIN_PER_CLASS = {"ge": 1, "help": "training images per digit (stratified, seeded); None = the whole training set"}
TEST_LIMIT = {"ge": 1, "help": "evaluate on the first N test images; None = the whole test set"}


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """Base for trial configs. Field metadata: gt/ge/lt/le bounds, choices, help."""

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        types_ = cls.field_types()
        unknown = sorted(set(values) - set(types_))
        if unknown:
            raise ConfigError(
                f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"for {cls.__name__}; known keys: {', '.join(sorted(types_))}"
            )
        kwargs = {k: _coerce(k, v, types_[k]) for k, v in values.items()}
        cfg = cls(**kwargs)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Range checks from field metadata, then the subclass's cross-field rules (`extra_checks`)."""
        ops = {"gt": (lambda v, b: v > b, ">"), "ge": (lambda v, b: v >= b, ">="),
               "lt": (lambda v, b: v < b, "<"), "le": (lambda v, b: v <= b, "<=")}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(
                    f"config '{f.name}' = {value!r} is not allowed: choose one of {', '.join(map(repr, choices))}"
                )
            for key, (ok, sym) in ops.items():
                if key in f.metadata and not ok(value, f.metadata[key]):
                    raise ConfigError(
                        f"config '{f.name}' = {value!r} is out of range: must be {sym} {f.metadata[key]}"
                    )
        self.extra_checks()

    def extra_checks(self) -> None:
        """Override for rules that involve several fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
