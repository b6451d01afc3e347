"""Command-line options generated from the config dataclasses, and their resolution into a sweep plan.

A study (sweeps/study.py: `Study`) names its config class; every field of that class becomes a flag
(`batch_size` → `--batch-size`, plus the field's `aliases` such as `--seeds`), with its type, help, range and
choices from the field's metadata and, in `--help`, the study's own default. A flag given several values is a grid
axis (`--lr 0.01 0.05` is `--set lr=[0.01,0.05]`); `--set KEY=VALUE` still sets any key. A search's settings
(`--num-samples`, `--asha`, ...) are generated the same way from `sweeps.search_space.SearchOptions`.

Precedence, for every key: an explicit option > `--smoke-test`'s value > the study's constant > the config's
default. Options are told apart from defaults by their absence (argparse.SUPPRESS), so an explicit `--asha 2,3`
is kept under `--smoke-test` even though it equals the default.

    parser = build_parser(study)                    # what `python sweeps/NAME.py --help` prints
    plan = resolve(study, parser.parse_args(argv))  # param space, validated configs, search settings
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any

from sweeps.search_space import Search, SearchOptions, SearchSpace
from sweeps.study import Study
from trainables.config import TrialConfig, UserError


NONE_WORDS = ("none", "all")  # `--test-limit all`: an optional field's None from the command line


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one `error:` line (and exit 2) instead of the usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


@dataclasses.dataclass(frozen=True)
class Plan:
    """A study resolved against its command line: what the runner runs. Built fresh; the Study is never changed."""

    param_space: dict[str, Any]  # Tune's param space: values, grid_search axes and (for searches) domains
    configs: list[TrialConfig]  # every grid configuration; for a search the baseline first, then samples
    num_samples: int
    search: Search | None
    values: dict[str, Any]  # the resolved study options as plain values (lists for grid axes)
    recipe: dict[str, Any]  # everything that decides the trials, as JSON (sweep.json): what --resume keeps


def add_sweep_options(p: argparse.ArgumentParser, name: str) -> None:
    """The options every sweep script shares (the contract in DESIGN.md)."""
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
    g.add_argument("--cpus-per-trial", type=float, default=None,
                   help="CPU cores per trial; torch threads are pinned to this (default: 1)")
    g.add_argument("--gpus-per-trial", default=None,
                   help="GPUs per trial, fractions allowed (0.25 packs 4 trials on a GPU); "
                        "default: auto = a per-study share when the cluster has GPUs, else 0")
    g.add_argument("--max-failures", type=int, default=2,
                   help="retries of a trial that raised, each from its last checkpoint (default: 2)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any trial config key, also one without a flag, e.g. --set momentum=0.9 (JSON values; "
                        "a list makes a grid axis; repeatable)")
    g.add_argument("--no-report", action="store_true",
                   help="skip writing RUN_DIR/report (at the end, and refreshed while the sweep runs)")
    g.add_argument("--verbose", action="store_true",
                   help="show Ray Tune's own output (per-trial boxes, status tables, worker messages) instead of "
                        "the progress view")


# -- flags from dataclass fields ---------------------------------------------------------------------------------
def _inner_type(tp: Any) -> tuple[Any, bool]:
    """(type, optional) for `X`, `X | None`, `Optional[X]`."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _converter(name: str, tp: Any):
    inner, optional = _inner_type(tp)

    def convert(text: str):
        if optional and text.lower() in NONE_WORDS:
            return None
        try:
            value = inner(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an' if inner is int else 'a'} {inner.__name__}"
                                             + (f" (or {'/'.join(NONE_WORDS)})" if optional else "")) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        return value

    convert.__name__ = inner.__name__  # argparse names the type in its messages
    return convert


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def shown(value: Any, meta: dict[str, Any]) -> str:
    """A default as `--help` shows it."""
    if value is None:
        return meta.get("none", "none")
    if isinstance(value, (list, tuple)):
        return " ".join(shown(v, meta) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_dataclass_options(group, cls: type, defaults: dict[str, Any], *, several: bool,
                          skip: tuple[str, ...] = (), notes: dict[str, str] | None = None) -> list[str]:
    """One flag per field of `cls` (a TrialConfig); returns the dests. `defaults` are what `--help` shows."""
    hints = typing.get_type_hints(cls)
    dests = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = cls.meta(f.name)
        inner, _ = _inner_type(hints[f.name])
        text = meta.get("help", "")
        if "choices" in meta:
            text += f"; one of {', '.join(map(str, meta['choices']))}"
        if notes and f.name in notes:
            text += f"; {notes[f.name]}"
        text += f" (default: {shown(defaults.get(f.name), meta)})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": text}
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=_converter(f.name, hints[f.name]), metavar=meta.get("metavar", inner.__name__.upper()))
            if several:
                kwargs["nargs"] = "+"
        group.add_argument(flag_name(f.name), *meta.get("aliases", ()), **kwargs)
        dests.append(f.name)
    return dests


def build_parser(study: Study) -> OneLineParser:
    """The script's whole command line: the sweep options every script has, the study options generated from its
    config class, the search options when it searches, and its own extras."""
    p = OneLineParser(prog=f"python sweeps/{study.name}.py", description=study.doc,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_options(p, study.name)
    defaults = {**study.config_cls().to_dict(), **study.defaults}
    if study.search is None:
        g = p.add_argument_group("study options (every option takes several values: each makes a grid axis)")
        add_dataclass_options(g, study.config_cls, defaults, several=True, skip=study.hidden, notes=study.notes)
    else:
        searched = ", ".join(study.search.space)
        g = p.add_argument_group(f"study options (the same for every trial; giving one of the searched keys "
                                 f"{searched} fixes it)")
        add_dataclass_options(g, study.config_cls, defaults, several=False, skip=study.hidden, notes=study.notes)
        s = p.add_argument_group("search options")
        add_dataclass_options(s, SearchOptions, {**SearchOptions().to_dict(), **study.search.options},
                              several=False)
        for key, domain in study.search.optional.items():
            s.add_argument(f"--tune-{key.replace('_', '-')}", action="store_true", dest=f"tune_{key}",
                           help=f"also search {key} ({domain})")
    if study.extra_options is not None:
        study.extra_options(p)
    return p


# -- resolution ---------------------------------------------------------------------------------------------------
def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items → {key: value}; values are JSON (a list is a grid axis), else a bare string."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=0.05")
        if key in out:
            raise UserError(f"--set {key}= is given twice: keep one (a list makes a grid axis: --set {key}=[a,b])")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            try:
                value = float(raw)  # inf, nan: numbers that JSON has no word for (validation rejects them)
            except ValueError:
                value = raw  # a bare word is a string
        if isinstance(value, list) and not value:
            raise UserError(f"--set {item}: an empty list runs nothing; give at least one value")
        out[key] = value
    return out


def _axis(value: Any) -> Any:
    """A list is a grid axis; a list of one is that value."""
    if isinstance(value, (list, tuple)):
        values = list(value)
        if len(values) == 1:
            return values[0]
        from ray.tune import grid_search  # Ray only once a grid is resolved: --help answers without it

        return grid_search(values)
    return value


def expand(param_space: dict[str, Any], num_samples: int = 1) -> list[dict[str, Any]]:
    """Every trial configuration of a grid (Tune's own variant generator), `num_samples` times."""
    from ray.tune.search.variant_generator import generate_variants

    return [spec for _ in range(num_samples) for _, spec in generate_variants(param_space)]


def _plain(value: Any) -> Any:
    """Flag values as stored: a list of one is that value; JSON-like (tuples → lists)."""
    if isinstance(value, (list, tuple)):
        return _plain(value[0]) if len(value) == 1 else [_plain(v) for v in value]
    return value


def resolve(study: Study, args: argparse.Namespace, stored: dict[str, Any] | None = None) -> Plan:
    """Merge defaults, study constants, --smoke-test and explicit options into a validated plan.

    `stored` is the recipe of the sweep being resumed (sweep.json's "recipe"): the sweep resumes as it started, so
    the plan comes from it, and an explicit option that disagrees with it is an error listing every difference."""
    cls = study.config_cls
    fields = [f.name for f in dataclasses.fields(cls)]
    flags = {k: _plain(getattr(args, k)) for k in fields if hasattr(args, k)}
    overrides = parse_overrides(getattr(args, "overrides", []))
    for key in sorted(flags.keys() & overrides.keys()):
        raise UserError(f"{flag_name(key)} and --set {key}=... both set {key}: keep one")
    explicit = {**flags, **overrides}
    smoke_test = bool(getattr(args, "smoke_test", False))
    search_given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SearchOptions) if hasattr(args, f.name)}
    tuned = [k for k in (study.search.optional if study.search else {}) if getattr(args, f"tune_{k}", False)]
    resources = {k: getattr(args, k) for k in ("cpus_per_trial", "gpus_per_trial") if getattr(args, k) is not None}

    if stored is not None:
        _check_unchanged(stored, explicit, smoke_test, search_given, tuned, resources)
        values = dict(stored["options"])
        search_options = (stored.get("search") or {}).get("options", {})
        tuned = (stored.get("search") or {}).get("tuned", [])
        resources = {"cpus_per_trial": stored["cpus_per_trial"], "gpus_per_trial": stored["gpus_per_trial"]}
    else:
        smoke = study.smoke if smoke_test else {}
        values = {k: _plain(v) for k, v in {**cls().to_dict(), **study.defaults, **smoke, **explicit}.items()}
        search_options = {**study.search.options, **(study.search.smoke if smoke_test else {}), **search_given} \
            if study.search else {}
        resources = {"cpus_per_trial": 1.0, "gpus_per_trial": "auto", **resources}
    # unknown keys (only --set can name them) get the config's own message from validation below
    order = fields + [k for k in values if k not in fields]
    values = {k: values[k] for k in order if k in values}
    recipe = {"options": values, "smoke_test": smoke_test if stored is None else stored.get("smoke_test", False),
              **resources, "search": None}

    search = None
    if study.search is None:
        # each value of each axis on its own first: a refused value answers before the grid's expansion loads Ray
        first = {k: v[0] if isinstance(v, list) else v for k, v in values.items()}
        for key, value in values.items():
            for item in value if isinstance(value, list) else [value]:
                cls.from_dict({**first, key: item})
        space = {k: _axis(v) for k, v in values.items()}
        configs = [cls.from_dict(v) for v in expand(space)]
        num_samples = 1
    else:
        search = _resolve_search(study.search, values, search_options, tuned, set(explicit) if stored is None
                                 else set(stored["search"].get("fixed", [])))
        fixed = {k: v for k, v in values.items() if k not in search.space}
        space = {**fixed, **search.space}
        configs = _validate_search(cls, fixed, search)
        num_samples = search.num_samples
        recipe["search"] = {"options": search_options, "tuned": tuned,
                            "fixed": sorted(set(study.search.space) - set(search.space))}
    return Plan(param_space=space, configs=configs, num_samples=num_samples, search=search, values=values,
                recipe=recipe)


def _check_unchanged(stored: dict[str, Any], explicit: dict[str, Any], smoke_test: bool,
                     search_given: dict[str, Any], tuned: list[str], resources: dict[str, Any]) -> None:
    """--resume continues a sweep as it started: every given option must agree with its recipe."""
    diffs = []
    for key, value in explicit.items():
        was = stored["options"].get(key, "(not set)")
        if value != was:
            diffs.append(f"{key} {json.dumps(was)} → {json.dumps(value)}")
    if smoke_test and not stored.get("smoke_test"):
        diffs.append("--smoke-test (the sweep started without it)")
    search = stored.get("search") or {}
    for key, value in search_given.items():
        was = search.get("options", {}).get(key, SearchOptions().to_dict()[key])
        if value != was:
            diffs.append(f"{flag_name(key)} {was} → {value}")
    diffs += [f"--tune-{k.replace('_', '-')} (not searched when the sweep started)"
              for k in tuned if k not in search.get("tuned", [])]
    for key, value in resources.items():
        if str(value) != str(stored.get(key)):
            diffs.append(f"{flag_name(key)} {stored.get(key)} → {value}")
    if diffs:
        raise UserError(f"--resume continues the sweep as it started, and these options differ from its "
                        f"sweep.json: {'; '.join(diffs)}. Resume without them, or start a new sweep with --out")


def _resolve_search(spec: SearchSpace, values: dict[str, Any], options: dict[str, Any], tuned: list[str],
                    fixed: set[str]) -> Search:
    for key, value in values.items():
        if isinstance(value, list):
            raise UserError(f"a search runs one configuration per trial: give {key} one value, not {value}")
    settings = SearchOptions.from_dict(options)
    space = {key: domain.tune() for key, domain in {**spec.space, **{k: spec.optional[k] for k in tuned}}.items()}
    for key in fixed & set(space):  # an explicit value fixes a searched key for every trial
        del space[key]
        print(f"note: {key} is fixed at {values[key]!r}, so it is not searched", file=sys.stderr)
    if not space:
        raise UserError(f"nothing left to search: every searched key ({', '.join(spec.space)}) was given a value")
    return Search(space=space, baseline={k: spec.baseline[k] for k in space}, num_samples=settings.num_samples,
                  max_concurrent=settings.max_concurrent, seed=settings.search_seed, asha=settings.asha_tuple,
                  plateau=settings.plateau, confirm=settings.confirm_tuple)


def _validate_search(cls: type[TrialConfig], fixed: dict[str, Any], search: Search) -> list[TrialConfig]:
    """The baseline, a few samples, and both ends of every searched range: all must be valid configs."""
    configs = [cls.from_dict({**fixed, **search.baseline})]
    configs += [cls.from_dict(v) for v in expand({**fixed, **search.space})]
    for key, domain in search.space.items():
        ends = list(getattr(domain, "categories", None) or [])
        if hasattr(domain, "lower"):
            upper = domain.upper - 1 if isinstance(domain.lower, int) else domain.upper  # randint: exclusive
            ends = [domain.lower, upper]
        for value in ends:
            cls.from_dict({**fixed, **search.baseline, key: value})
    return configs


def describe(study: Study, plan: Plan) -> list[str]:
    """What --dry-run prints: the trial count and resources, the search settings, then the configurations."""
    count = f"{plan.num_samples} searched trials" if plan.search else f"{len(plan.configs)} trial configuration(s)"
    gpus = plan.recipe["gpus_per_trial"]
    lines = [f"{study.name}: {count}; resources per trial: {plan.recipe['cpus_per_trial']:g} CPU, "
             f"{gpus if gpus == 'auto' else f'{float(gpus):g}'} GPU"]
    if plan.search is not None:
        s = plan.search
        lines.append(f"Optuna TPE search (seed {s.seed}): {s.num_samples} trials, {s.max_concurrent} at once; "
                     f"ASHA {'off' if s.asha is None else f'grace {s.asha[0]}, factor {s.asha[1]:g}'}; plateau "
                     f"{'off' if s.plateau is None else f'{s.plateau} epochs'}")
        declared = {**study.search.space, **study.search.optional}
        lines += [f"  search {key}: {declared[key]}" for key in s.space]
        if s.confirm is not None:
            k, seeds = s.confirm
            lines.append(f"then confirm: the {k} best configuration(s) by validation accuracy and the baseline, "
                         f"{seeds} fresh seed(s) each, whole budget (up to {(k + 1) * seeds} more trials)")
        lines.append("trial 1 is the baseline, then samples such as:")
    lines += [f"{i:4d}  {json.dumps(cfg.to_dict())}" for i, cfg in enumerate(plan.configs, 1)]
    return lines


def resolved_args(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed command line as JSON-able values (for sweep.json)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
